"""Experiment configuration: pydantic groups shaped by model family, YAML presets and dotted overrides.

Every knob lives in a group (`model`, `training`, `data`, `eval`, `logging`, `checkpoint`, and for
GASTeN `gasten` and `tune`). `model` and `training` are shared by all families and extended by each
family's own module (`genlab.config.gan`). Key names follow the seed notes (`training.lr_g`,
`model.latent_dim`, ...). Mistakes never surface as tracebacks: they become a `ConfigError` naming
the key, the value and what is allowed.
"""

from genlab.config import ddpm, gan, vae
from genlab.config.ddpm import DdpmConfig, DdpmModelConfig, DdpmTrainingConfig
from genlab.config.gan import GanConfig, GanModelConfig, GanTrainingConfig
from genlab.config.loading import (
    apply_overrides,
    default_config,
    describe_family,
    describe_schema,
    list_presets,
    load_config,
    parse_value,
    preset_dirs,
    read_yaml,
    resolve_preset,
    save_config,
    validate,
)
from genlab.config.schema import (
    DEFAULT_FAMILY,
    DEFAULT_PRESET,
    FAMILIES,
    CheckpointConfig,
    Config,
    DataConfig,
    EvalConfig,
    GastenConfig,
    LoggingConfig,
    ModelConfig,
    Section,
    TrainingConfig,
    TuneConfig,
    register_family,
    strict_number,
)
from genlab.config.vae import VaeConfig, VaeModelConfig, VaeTrainingConfig

__all__ = [
    "DdpmConfig", "DdpmModelConfig", "DdpmTrainingConfig", "ddpm",
    "DEFAULT_FAMILY", "DEFAULT_PRESET", "FAMILIES", "CheckpointConfig", "Config", "DataConfig", "EvalConfig",
    "GanConfig", "GanModelConfig", "GanTrainingConfig", "GastenConfig", "LoggingConfig", "ModelConfig", "Section",
    "TrainingConfig", "TuneConfig", "apply_overrides", "default_config", "describe_family", "describe_schema", "gan", "list_presets",
    "load_config", "parse_value", "preset_dirs", "read_yaml", "resolve_preset", "save_config", "register_family",
    "strict_number", "VaeConfig", "VaeModelConfig", "VaeTrainingConfig", "vae", "validate",
]
