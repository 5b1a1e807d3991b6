"""Reading configs: YAML presets, dotted `key=value` overrides, seed-note aliases, readable errors.

Validation is dispatched on `model.family`: each family's registered `Config` subclass checks the
keys, so a GAN-only key in a VAE run is an error that names the family it belongs to. Names backed
by registries (data sets, architectures, losses, metrics) are checked one layer up, by
`genlab.train.checks`, since those registries live in the packages that build the objects.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from genlab.config.schema import DEFAULT_FAMILY, FAMILIES, PRESET_DIR_NAME, Config, family_of
from genlab.errors import ConfigError
from genlab.registry import closest

# --------------------------------------------------------------------------------------------
# Aliases: spellings used by the seed notes that map onto one canonical key.
# --------------------------------------------------------------------------------------------

_LOSS_ARG_ALIASES = {"lambda": "gp_lambda", "gp_lambda": "gp_lambda", "lambda_gp": "gp_lambda",
                     "label_smoothing": "label_smoothing", "smoothing": "label_smoothing"}


def _normalise_aliases(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Rewrite seed-note spellings (e.g. `model.loss: {name, args}`) into canonical keys."""
    model = raw.get("model")
    if isinstance(model, dict) and "loss" in model:
        loss = model.pop("loss")
        training = raw.setdefault("training", {})
        if not isinstance(training, dict):
            raise ConfigError(f"In {source}: 'training' must be a mapping, got {training!r}.")
        if isinstance(loss, str):
            loss = {"name": loss}
        if not isinstance(loss, dict) or "name" not in loss:
            raise ConfigError(
                f"In {source}: model.loss must be a loss name or a mapping like "
                f"{{name: wgan-gp, args: {{lambda: 10}}}}, got {loss!r}."
            )
        extra = set(loss) - {"name", "args"}
        if extra:
            raise ConfigError(f"In {source}: model.loss accepts only 'name' and 'args', not {sorted(extra)}.")
        training["loss_type"] = loss["name"]
        for key, value in (loss.get("args") or {}).items():
            if key not in _LOSS_ARG_ALIASES:
                hint = closest(key, list(_LOSS_ARG_ALIASES))
                raise ConfigError(
                    f"In {source}: unknown model.loss.args key {key!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f". Valid: {', '.join(sorted(_LOSS_ARG_ALIASES))}."
                )
            training[_LOSS_ARG_ALIASES[key]] = value
    return raw


# --------------------------------------------------------------------------------------------
# Loading, overrides and error messages.
# --------------------------------------------------------------------------------------------

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)$")


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML (so `1e-4` is a float and `[7,1]` a list); never evaluates code."""
    if _FLOAT_RE.match(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _fix_yaml_floats(value: Any) -> Any:
    """YAML 1.1 reads `1e-4` as a string; turn such strings back into floats."""
    if isinstance(value, dict):
        return {k: _fix_yaml_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_yaml_floats(v) for v in value]
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings to a raw config mapping (a copy is returned)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} is not of the form key=value (for example training.lr_g=1e-4). "
                "Keys are dotted paths into the config; see `genlab config show` for all of them."
            )
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"Override {item!r} has an empty key segment; write e.g. training.lr_g=1e-4.")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"Override {item!r}: {where} is a value, not a group, so {key} cannot be set.")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


def _field_names(model_cls: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """Valid keys at `path` inside the schema (for "did you mean")."""
    cls: Any = model_cls
    for part in path:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return list(cls.model_fields)


def family_config(raw: dict[str, Any], source: str) -> type[Config]:
    """The Config subclass of the family named by raw `model.family` (default gan)."""
    model = raw.get("model")
    family = model.get("family", DEFAULT_FAMILY) if isinstance(model, dict) else DEFAULT_FAMILY
    if family not in FAMILIES:
        hint = closest(str(family), list(FAMILIES))
        raise ConfigError(
            f"Invalid configuration ({source}): 'model.family' = {family!r} is not known"
            + (f" — did you mean {hint!r}?" if hint else ".") + f" Available: {', '.join(sorted(FAMILIES))}."
        )
    return FAMILIES[family]


def _unknown_key(cls: type[Config], loc: tuple[str | int, ...]) -> str:
    """The message for a key the run's family does not have: another family's key, or a typo with a hint."""
    dotted = ".".join(str(p) for p in loc)
    family = cls.model_fields["model"].default_factory().family  # type: ignore[misc]
    owners = family_of(str(loc[0]), str(loc[-1])) if len(loc) == 2 else []
    if owners:
        return (f"'{dotted}' is a setting of the {' and '.join(owners)} {'families' if len(owners) > 1 else 'family'}, "
                f"but this run has "
                f"model.family={family}. Remove it, or set model.family={owners[0]}.")
    valid = _field_names(cls, loc[:-1])
    hint = closest(str(loc[-1]), valid)
    group = ".".join(str(p) for p in loc[:-1]) or "the top level"
    return (f"unknown key '{dotted}'"
            + (f" — did you mean '{'.'.join([*map(str, loc[:-1]), hint])}'?" if hint else ".")
            + f" Valid keys in {group}: {', '.join(valid)}.")


def _describe_errors(err: ValidationError, source: str, cls: type[Config]) -> str:
    """Turn pydantic's errors into one readable paragraph per problem."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(_unknown_key(cls, loc))
        else:
            value = e.get("input")
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if isinstance(value, dict):  # a rule across several keys of a group (or of the whole config)
                lines.append(f"{msg}." if not loc else f"in {dotted}: {msg}.")
            else:
                lines.append(f"'{dotted}' = {value!r}: {msg}.")
    body = "\n  - ".join(lines)
    return (
        f"Invalid configuration ({source}):\n  - {body}\n"
        "Fix the YAML file or the key=value override; `genlab config show` lists every key with its default."
    )


def validate(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw mapping into its family's Config, raising ConfigError with readable messages.

    This checks keys, types and ranges; `genlab.train.check_config` also checks registry-backed names.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a YAML mapping of groups (model:, training:, ...), got {type(raw).__name__}.")
    raw = _normalise_aliases(_fix_yaml_floats(copy.deepcopy(raw)), source)
    cls = family_config(raw, source)
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe_errors(err, source, cls)) from None


def default_config(family: str = DEFAULT_FAMILY) -> Config:
    """Every key at its default, for a run of `family`."""
    return validate({"model": {"family": family}}, "defaults")


def preset_dirs() -> list[Path]:
    """Where presets are looked up: the package's own copy, then the source tree's configs/."""
    package = Path(__file__).resolve().parent.parent
    return [d for d in (package / PRESET_DIR_NAME, package.parent / PRESET_DIR_NAME) if d.is_dir()]


def list_presets() -> list[str]:
    """Names of the shipped presets (nested ones as dir/name)."""
    names: set[str] = set()
    for d in preset_dirs():
        names.update(str(p.relative_to(d).with_suffix("")) for p in d.rglob("*.yaml"))
    return sorted(names)


def resolve_preset(name_or_path: str) -> Path:
    """A YAML path, or a preset name such as `fashion_mnist_dcgan`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
    for d in preset_dirs():
        candidate = d / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    presets = list_presets()
    hint = closest(stem, presets)
    raise ConfigError(
        f"No config file or preset named {name_or_path!r}"
        + (f" — did you mean {hint!r}?" if hint else ".")
        + f" Give a path to a YAML file or one of: {', '.join(presets) or '(none found)'}."
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load, explaining syntax errors."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}. Fix the file and try again.") from None
    except OSError as err:
        raise ConfigError(f"Cannot read config file {path}: {err.strerror}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of groups (model:, training:, ...), not {type(data).__name__}.")
    return data


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a preset or YAML file (default: the built-in defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    label = "defaults"
    if source is not None:
        path = resolve_preset(str(source))
        raw = read_yaml(path)
        label = str(path)
    if overrides:
        raw = apply_overrides(_normalise_aliases(_fix_yaml_floats(raw), label), overrides)
        label += " + overrides"
    return validate(raw, label)


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML (every key, defaults included)."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_schema(model_cls: type[BaseModel] | None = None, values: BaseModel | None = None,
                    prefix: str = "") -> list[str]:
    """Lines `key: value  # description` for every key (of `values`' family, else the default one), for `config show`."""
    if model_cls is None:
        model_cls = type(values) if values is not None else FAMILIES[DEFAULT_FAMILY]
    lines: list[str] = []
    for name, field in model_cls.model_fields.items():
        annotation = field.annotation
        current = getattr(values, name) if values is not None else field.get_default(call_default_factory=True)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{prefix}{name}:")
            lines.extend(describe_schema(annotation, current, prefix + "  "))
            continue
        shown = yaml.safe_dump(current, default_flow_style=True, width=10_000).strip()
        if shown.endswith("..."):
            shown = shown[:-3].strip()
        lines.append(f"{prefix}{name}: {shown}  # {field.description or ''}".rstrip())
    return lines


def describe_family(family: str) -> list[str]:
    """Lines for the keys `family` adds to (or whose defaults it changes in) `model` and `training`, for the reference."""
    cls = FAMILIES[family]
    lines: list[str] = []
    for group in ("model", "training"):
        family_cls = cls.model_fields[group].annotation
        base_fields = Config.model_fields[group].annotation.model_fields
        own = [name for name, spec in family_cls.model_fields.items()
               if name not in base_fields or name in ("family", "architecture") or spec.default != base_fields[name].default]
        described = describe_schema(family_cls)
        lines.append(f"{group}:")
        lines.extend("  " + line for line in described if line.split(":", 1)[0] in own)
    return lines
