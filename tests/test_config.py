"""Config parsing, presets, dotted overrides and every kind of config error."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from typer.testing import CliRunner

from genlab.cli import app
from genlab.config import (
    FAMILIES,
    Config,
    GanConfig,
    ModelConfig,
    TrainingConfig,
    apply_overrides,
    describe_schema,
    list_presets,
    load_config,
    parse_value,
)
from genlab.errors import ConfigError, NotSupportedYet
from genlab.train import check_config, load_experiment


def test_defaults_are_the_default_experiment():
    cfg = load_config()
    assert cfg.data.name == "fashion-mnist"
    assert cfg.model.architecture == "dcgan"
    assert (cfg.training.lr_g, cfg.training.beta1, cfg.training.batch_size) == (2e-4, 0.5, 64)


def test_preset_loads_by_name_and_path():
    assert "fashion_mnist_dcgan" in list_presets()
    by_name = load_config("fashion_mnist_dcgan")
    by_path = load_config(Path(__file__).parents[1] / "configs" / "fashion_mnist_dcgan.yaml")
    assert by_name == by_path
    assert by_name.model.latent_dim == 64 and by_name.model.num_blocks == 3


def test_overrides_parse_types():
    cfg = load_config(None, ["training.lr_g=1e-4", "training.num_epochs=3", "data.classes=[3, 0]",
                             "logging.tensorboard=false", "name=my-run", "training.max_steps=null"])
    assert cfg.training.lr_g == pytest.approx(1e-4) and isinstance(cfg.training.lr_g, float)
    assert cfg.training.num_epochs == 3
    assert cfg.data.classes == [3, 0]
    assert cfg.logging.tensorboard is False
    assert cfg.name == "my-run"
    assert cfg.training.max_steps is None


def test_yaml_scientific_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr_g: 1e-4\n  lr_d: 4e-4\n")
    cfg = load_config(path)
    assert cfg.training.lr_g == pytest.approx(1e-4) and cfg.training.lr_d == pytest.approx(4e-4)


def test_parse_value_never_evaluates():
    assert parse_value("__import__('os').system('true')") == "__import__('os').system('true')"
    assert parse_value("[1,2]") == [1, 2]


def test_unsafe_yaml_tags_are_rejected(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("training: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_unknown_key_names_nearest_valid_key():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.lr_gen=1e-4"])
    assert "training.lr_gen" in str(err.value) and "did you mean 'training.lr_g'" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        load_config(None, ["modle.latent_dim=3"])


def test_wrong_type_names_field_value_and_rule():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.batch_size=lots"])
    message = str(err.value)
    assert "training.batch_size" in message and "'lots'" in message and "valid integer" in message


def test_out_of_range_and_choices():
    with pytest.raises(ConfigError, match=r"training\.beta1.*less than 1"):
        load_config(None, ["training.beta1=1.5"])
    with pytest.raises(ConfigError, match=r"training\.lr_schedule"):
        load_config(None, ["training.lr_schedule=exponential"])
    with pytest.raises(ConfigError, match="did you mean 'hinge'"):
        load_experiment(None, ["training.loss_type=hing"])
    with pytest.raises(ConfigError, match="data.channels must be 1, 3 or null"):
        load_config(None, ["data.channels=2"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["training.lr_g"])
    with pytest.raises(ConfigError, match="is a value, not a group"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_seed_000_loss_spelling_parses():
    cfg = load_config(None, ["model.loss={name: wgan-gp, args: {lambda: 5}}"])
    assert cfg.training.loss_type == "wgan-gp" and cfg.training.gp_lambda == 5
    with pytest.raises(ConfigError, match="did you mean 'lambda'"):
        load_config(None, ["model.loss={name: wgan-gp, args: {lamda: 5}}"])


def test_not_yet_supported_values_say_so():
    with pytest.raises(NotSupportedYet, match="not supported yet"):
        load_experiment(None, ["model.condition=projection"])


def test_schema_description_covers_every_group():
    text = "\n".join(describe_schema())
    for key in ("latent_dim:", "lr_g:", "n_critic:", "r1_every:", "num_workers:", "log_every:", "keep:"):
        assert key in text


def test_cli_reports_config_errors_without_traceback():
    result = CliRunner().invoke(app, ["train", "training.lr_gen=1"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    result = CliRunner().invoke(app, ["config", "show", "fashion_mnist_dcgan"])
    assert result.exit_code == 0 and "lr_g: 0.0002" in result.output
    result = CliRunner().invoke(app, ["train", "--help"])
    assert "r1_gamma" in result.output and "training.lr_g=1e-4" in result.output


class ToyModel(ModelConfig):
    family: Literal["toy"] = "toy"
    architecture: str = "toynet"
    width: int = Field(8, ge=1)


class ToyTraining(TrainingConfig):
    toy_weight: float = 1.0


class ToyConfig(Config):
    model: ToyModel = Field(default_factory=ToyModel)
    training: ToyTraining = Field(default_factory=ToyTraining)


@pytest.fixture
def toy_family(monkeypatch):
    """A second family registered for the test only."""
    monkeypatch.setitem(FAMILIES, "toy", ToyConfig)


def test_each_family_validates_its_own_keys(toy_family):
    cfg = load_config(None, ["model.family=toy", "model.width=3", "training.toy_weight=0.5", "training.lr_g=1e-3"])
    assert isinstance(cfg, ToyConfig) and cfg.model.width == 3 and cfg.training.toy_weight == 0.5
    assert cfg.training.lr_g == 1e-3 and cfg.model.architecture == "toynet"
    assert isinstance(load_config(None, []), GanConfig)


def test_a_key_of_another_family_names_that_family(toy_family):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.family=toy", "training.n_critic=5"])
    message = str(err.value)
    assert "'training.n_critic' is a setting of the gan family" in message and "model.family=toy" in message
    with pytest.raises(ConfigError, match="'model.width' is a setting of the toy family.*model.family=gan"):
        load_config(None, ["model.width=3"])
    with pytest.raises(ConfigError, match="'training.loss_type' is a setting of the gan and vae families"):
        load_config(None, ["model.family=toy", "model.loss={name: hinge}"])  # seed 000's spelling maps, then refuses


def test_unknown_family_names_the_known_ones():
    with pytest.raises(ConfigError, match="'model.family' = 'gann' is not known — did you mean 'gan'"):
        load_config(None, ["model.family=gann"])


def test_a_registered_config_family_without_a_method_is_refused_before_training(toy_family):
    cfg = load_config(None, ["model.family=toy"])
    with pytest.raises(ConfigError, match="'model.family' = 'toy' is not known"):
        check_config(cfg)


def test_seed_004_spellings_are_the_gan_keys():
    cfg = load_config(None, ["training.n_critic=2", "training.d_noise_std=0.15", "training.r1_gamma=10",
                             "training.d_noise_decay_epochs=50"])
    assert (cfg.training.n_critic, cfg.training.d_noise_std, cfg.training.r1_gamma) == (2, 0.15, 10)
