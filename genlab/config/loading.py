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
        if training is None:
            training = raw["training"] = {}
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
        args = loss.get("args") or {}
        if not isinstance(args, dict):
            raise ConfigError(f"In {source}: model.loss.args must be a mapping like {{lambda: 10}}, got {_short(args)}.")
        for key, value in args.items():
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
#: Deepest nesting and most values (aliases expanded) a config may hold: far above any real config,
#: far below what would exhaust the stack or memory while copying, validating or printing it.
MAX_DEPTH = 32
MAX_VALUES = 100_000


class StrictLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader (nothing evaluated), also refusing duplicate keys and binary/date/set tags."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping, or a ConstructorError naming a key given twice and both of its lines."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: the base class explains it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def refuse_tag(self, node: yaml.Node) -> None:
        """Constructor of the standard tags a config has no use for (`!!binary`, `!!timestamp`, `!!set`, ...)."""
        raise yaml.constructor.ConstructorError(None, None, f"the tag {node.tag!r} is not allowed", node.start_mark)


for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", StrictLoader.refuse_tag)
# An unquoted date such as `name: 2024-05-01` stays text instead of becoming a datetime.date.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: `line L, column C: problem`."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(err.problem or err.context or "syntax error").split())
        if "could not determine a constructor" in problem or "is not allowed" in problem:
            problem += " (genlab reads plain YAML only: Python, custom, binary, date and set tags are refused, nothing is evaluated)"
        return where + problem
    return " ".join(str(err).split())


def _check_size(value: Any, source: str) -> Any:
    """`value`, or a ConfigError when it nests deeper than MAX_DEPTH or holds more than MAX_VALUES values."""
    stack = [(value, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source} nests lists or mappings more than {MAX_DEPTH} levels deep; a genlab config "
                              "has groups of keys with plain values. Remove the extra nesting.")
        if count > MAX_VALUES:
            raise ConfigError(f"{source} holds more than {MAX_VALUES} values (YAML aliases included); a genlab "
                              "config is a few groups of keys. Remove the repeated or aliased data.")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return value


def _load_yaml(text: str, source: str) -> Any:
    """Parse YAML text with StrictLoader; too deep a nesting is a ConfigError, not a RecursionError."""
    try:
        return _check_size(yaml.load(text, Loader=StrictLoader), source)
    except RecursionError:
        raise ConfigError(f"{source} nests lists or mappings too deeply to read; a genlab config has groups of "
                          "keys with plain values. Remove the extra nesting.") from None


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML (so `1e-4` is a float and `[7,1]` a list); never evaluates code.

    Text that is not valid YAML stays a string; a tag (`!!python/...`) or a duplicate key is a ConfigError.
    """
    if _FLOAT_RE.match(text.strip()):
        return float(text)
    try:
        return _load_yaml(text, f"The override value {_short(text)}") if text.strip() else ""
    except yaml.constructor.ConstructorError as err:
        raise ConfigError(f"The override value {_short(text)} is refused: {_yaml_problem(err)}.") from None
    except yaml.YAMLError:
        return text


def _short(value: Any, limit: int = 200) -> str:
    """repr(value), cut to `limit` characters so that a huge value cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


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
    if not isinstance(family, str) or family not in FAMILIES:
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
                lines.append(f"'{dotted}' = {_short(value)}: {msg}.")
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
    """Read a YAML mapping with StrictLoader (safe_load without duplicate keys), explaining any problem in one paragraph.

    Numbers such as `1e-4`, which YAML 1.1 leaves as text, come back as floats.
    """
    try:
        data = _load_yaml(path.read_text(encoding="utf-8"), str(path))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(err)}. Fix the file and try again.") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not a YAML text file: byte {err.object[err.start]:#04x} at offset {err.start} "
                          "is not UTF-8 text. Give --config a .yaml file or a preset name "
                          "(`genlab config list`).") from None
    except OSError as err:
        raise ConfigError(f"Cannot read config file {path}: {err.strerror}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of groups (model:, training:, ...), not {type(data).__name__}.")
    return _fix_yaml_floats(data)


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
