"""The study file: a base preset, variants with one change each and a "because", phases, what to compare.

```yaml
name: gan_track                  # study/<name>/ holds one run directory per variant
description: Seed 003 phase 2.
base: faces_dcgan_64             # preset (or YAML path) of variants that name none
overrides: [training.num_epochs=100]   # applied to every variant, before its own
seeds: 1                         # runs per variant (data.seed, data.seed+1, ...): mean ± std in the tables
phases: {"2": GAN evolution}     # optional titles; a table per phase
variants:
  - name: "2.1_dcgan"
    phase: "2"
    because: Baseline.
  - name: "2.2_wgan_gp"
    preset: faces_wgan_gp_64
    overrides: {training.n_critic: 2}    # a mapping or a list of key=value strings
    because: DCGAN collapsed and oscillated.
    after: "2.1_dcgan"           # whose failure it answers (default: the variant before it in its phase; none
                                 # for an alternative compared side by side)
compare:                         # optional: score these variants under identical conditions at the end
  variants: ["2.1_dcgan", "2.2_wgan_gp"]
  metrics: [fid, kid, prdc, lpips]
  num_samples: 5000
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genlab.config.loading import read_yaml
from genlab.errors import ConfigError
from genlab.registry import closest

STUDY_DIR_NAME = "studies"
#: `after: none`: a variant tried side by side with the others of its phase, motivated by no earlier one.
NO_PREDECESSOR = "none"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _name(value: str, what: str) -> str:
    if not _NAME.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} must be usable as a folder name: letters, digits, '.', '_', '+', '-' "
                         "(starting with a letter or digit)")
    return value


def as_overrides(value: Any) -> list[str]:
    """Overrides given as a list of key=value strings or as a mapping of dotted keys."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{key}={_yaml_scalar(v)}" for key, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("overrides must be a list of key=value strings or a mapping of dotted keys to values")


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Named(Strict):
    """What a study and each of its variants have: a folder name and overrides."""

    name: str = Field(description="Folder name: study/<study>/<variant>/.")
    overrides: list[str] = Field(default_factory=list, description="key=value overrides (or a mapping).")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        return _name(value, f"{cls.__name__.lower()} name")

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides(cls, value: Any) -> list[str]:
        return as_overrides(value)


class Variant(Named):
    """One run of the study: a preset, its overrides and why this change is tried."""

    preset: str | None = Field(None, description="Preset or YAML path (default: the study's base).")
    because: str = Field("", description="The observed failure of an earlier variant that motivates this one.")
    phase: str | None = Field(None, description="Phase this variant belongs to (a table per phase).")
    after: str | None = Field(None, description="The earlier variant whose observed failure this one answers (the "
                              "tables' \"motivates\" column); default: the one before it in its phase. `none` for a "
                              "variant tried side by side with the others (a comparison), not as a fix.")

    @field_validator("phase", mode="before")
    @classmethod
    def _phase_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class CompareSpec(Strict):
    """What to compare at the end, under identical conditions (see `genlab compare`)."""

    variants: list[str] | None = Field(None, description="Variants to compare (default: all).")
    metrics: list[str] = Field(["fid", "kid", "is", "prdc", "lpips"], description="Metrics of the table.")
    num_samples: int = Field(1000, ge=2, description="Samples per run, from the same noise seed.")
    real_samples: int | None = Field(None, ge=2, description="Real images to score against (default: the run's).")
    seed: int = Field(0, description="Noise and metric seed.")
    checkpoint: str = Field("best", description="best (falls back to last), last or step_XXXXXXXX.")
    lpips_samples: int = Field(100, ge=2, description="Samples whose pairwise LPIPS distances are averaged.")
    lpips_weights: str | None = Field(None, description="LPIPS backbone weights (.pth), or random for tests.")
    sampler: str | None = Field(None, description="Diffusion sampler for every diffusion run (default: its own).")
    steps: int | None = Field(None, ge=1, description="Diffusion sampling steps.")
    fast: bool | str = Field(False, description="Reduced-precision Inception features (int8 on CPUs).")


class Study(Named):
    """A study file (see the module doc)."""

    description: str = ""
    base: str | None = None
    seeds: int = Field(1, ge=1, le=100)
    output_dir: str = "study"
    phases: dict[str, str] = Field(default_factory=dict)
    variants: list[Variant] = Field(min_length=1)
    compare: CompareSpec | None = None

    @field_validator("phases", mode="before")
    @classmethod
    def _phase_keys(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self) -> Study:
        names = [v.name for v in self.variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variant names must be unique; {', '.join(twice)} appear more than once")
        for index, variant in enumerate(self.variants):
            if variant.preset is None and self.base is None:
                raise ValueError(f"variant {variant.name!r} names no preset and the study has no base preset")
            if variant.phase is not None and self.phases and variant.phase not in self.phases:
                raise ValueError(f"variant {variant.name!r} is in phase {variant.phase!r}, which `phases` does not "
                                 f"list ({', '.join(self.phases)})")
            if variant.after not in (None, NO_PREDECESSOR) and variant.after not in names[:index]:
                hint = closest(variant.after, names[:index])
                raise ValueError(f"variant {variant.name!r} comes after {variant.after!r}, which is no earlier variant"
                                 + (f" — did you mean {hint!r}?" if hint else "")
                                 + f"; `after` names a variant listed before it, or is {NO_PREDECESSOR!r}")
        for name in (self.compare.variants or []) if self.compare else []:
            if name not in names:
                hint = closest(name, names)
                raise ValueError(f"compare.variants names {name!r}, which is no variant"
                                 + (f" — did you mean {hint!r}?" if hint else ""))
        return self

    def predecessor(self, index: int) -> str | None:
        """The variant whose failure motivates variant `index`: its `after`, else the one before it in its phase."""
        variant = self.variants[index]
        if variant.after is not None:
            return None if variant.after == NO_PREDECESSOR else variant.after
        earlier = [v.name for v in self.variants[:index] if v.phase == variant.phase]
        return earlier[-1] if earlier else None

    def variant(self, name: str) -> Variant:
        """The variant called `name` (a ConfigError naming the nearest one otherwise)."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = [v.name for v in self.variants]
        hint = closest(name, names)
        raise ConfigError(f"Study {self.name} has no variant {name!r}" + (f" — did you mean {hint!r}?" if hint else ".")
                          + f" Its variants: {', '.join(names)}.")


def study_dirs() -> list[Path]:
    """Where shipped studies are looked up: the package's copy, then the source tree's studies/."""
    package = Path(__file__).resolve().parent.parent
    return [d for d in (package / STUDY_DIR_NAME, package.parent / STUDY_DIR_NAME) if d.is_dir()]


def list_studies() -> list[str]:
    """Names of the shipped studies."""
    return sorted({p.stem for d in study_dirs() for p in d.glob("*.yaml")})


def resolve_study(name_or_path: str | Path) -> Path:
    """A study YAML path, or the name of a shipped study."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    for folder in study_dirs():
        if (folder / f"{stem}.yaml").is_file():
            return folder / f"{stem}.yaml"
    studies = list_studies()
    hint = closest(stem, studies)
    raise ConfigError(f"No study file or shipped study named {str(name_or_path)!r}"
                      + (f" — did you mean {hint!r}?" if hint else ".")
                      + f" Give a YAML path or one of: {', '.join(studies) or '(none found)'}.")


def _describe(err: ValidationError, source: Path, raw: dict[str, Any]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = _where(loc, raw)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            valid = list(_model_at(loc[:-1]).model_fields)
            hint = closest(str(loc[-1]), valid)
            lines.append(f"{where}: unknown key {loc[-1]!r}" + (f" — did you mean {hint!r}?" if hint else "")
                         + f". Valid keys: {', '.join(valid)}.")
        else:
            lines.append(f"{where}: {msg}.")
    return (f"Invalid study file {source}:\n  - " + "\n  - ".join(lines)
            + "\nFix the study file; its keys are described in `genlab study --help`.")


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """`variant '2.2_wgan' (variants[1]).overrides`, or the dotted location for the rest of the file."""
    if len(loc) >= 2 and loc[0] == "variants" and isinstance(loc[1], int):
        variants = raw.get("variants") or []
        item = variants[loc[1]] if loc[1] < len(variants) else {}
        name = item.get("name") if isinstance(item, dict) else None
        rest = ".".join(str(p) for p in loc[2:])
        return f"variant {name!r} (variants[{loc[1]}])" + (f", key {rest!r}" if rest else "")
    return ".".join(str(p) for p in loc) or "the top level"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: type[BaseModel] = Study
    for part in loc:
        if part == "variants":
            model = Variant
        elif part == "compare":
            model = CompareSpec
    return model


def load_study(source: str | Path) -> tuple[Study, Path]:
    """Read and validate a study file (keys, names, phases; the variants' configs are checked by `plan_study`)."""
    path = resolve_study(source)
    raw = read_yaml(path)
    try:
        return Study.model_validate(raw), path
    except ValidationError as err:
        raise ConfigError(_describe(err, path, raw)) from None
