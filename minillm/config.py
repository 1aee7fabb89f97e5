"""Typed configuration from dataclasses: a JSON config file, then ``--key=value``
overrides, each checked against the field's type and range. Unknown keys list the valid
ones; a number that is not finite (nan, inf) is never an option's value."""
import dataclasses
import json
import math

from .fileio import read_text


class ConfigError(ValueError):
    pass


def option(default, help, *, at_least=None, above=None, at_most=None, below=None, choices=None):
    """A dataclass field with its --help text and the range its value must lie in
    (``at_least``/``above`` a lower bound, ``at_most``/``below`` an upper one, or ``choices``),
    checked by ``check_ranges`` whenever a config is parsed or validated."""
    bounds = {k: v for k, v in dict(at_least=at_least, above=above, at_most=at_most, below=below,
                                     choices=choices).items() if v is not None}
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


_BOUNDS = {"at_least": (lambda v, b: v >= b, ">="), "above": (lambda v, b: v > b, ">"),
           "at_most": (lambda v, b: v <= b, "<="), "below": (lambda v, b: v < b, "<")}


def check_ranges(config):
    """Raise ConfigError naming the first option outside its range (or not finite)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{f.name}: expected a finite number, got {value}")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"--{f.name}: expected one of {', '.join(map(str, choices))}; got {value!r}")
        for key, (holds, sign) in _BOUNDS.items():
            if key in f.metadata and not holds(value, f.metadata[key]):
                raise ConfigError(f"--{f.name}: must be {sign} {f.metadata[key]}; got {value}")
    return config


def _parse(field, text):
    kind = field.type if isinstance(field.type, type) else {"int": int, "float": float, "bool": bool,
                                                            "str": str}.get(str(field.type), str)
    if kind is bool:
        lowered = str(text).lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{field.name}: expected true or false, got {text!r}")
    if isinstance(text, kind) and not (kind is int and isinstance(text, bool)):
        return text
    try:
        if kind is int and isinstance(text, float) and text.is_integer():
            return int(text)
        if isinstance(text, (dict, list, bool, float) if kind is int else (dict, list, bool)) or text is None:
            raise TypeError(text)  # a JSON null, object or list, or 4.7 for an integer: never guessed
        value = kind(text)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"--{field.name}: expected {kind.__name__}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"--{field.name}: expected a finite number, got {text!r}")
    return value


def apply(config, values):
    """A copy of ``config`` with ``values`` (name → value or string) applied, type-checked."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"valid keys: {', '.join(fields)}")
    return check_ranges(dataclasses.replace(config, **{k: _parse(fields[k], v) for k, v in values.items()}))


def parse_args(config, argv):
    """``--config=file.json`` first (if given), then every other ``--key=value``."""
    values, file_values = {}, {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            if arg.startswith("--") and arg[2:] in {f.name for f in dataclasses.fields(config)} and \
                    _field(config, arg[2:]).type in (bool, "bool"):
                values[arg[2:]] = "true"  # a bare boolean flag
                continue
            raise ConfigError(f"expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        if key == "config":
            try:
                file_values = json.loads(read_text(value, "--config"))
            except (OSError, ValueError, RecursionError) as exc:  # bad JSON or UTF-8, digits or nesting past limits
                raise ConfigError(f"--config: cannot read {value}: {exc}") from None
            if not isinstance(file_values, dict):
                raise ConfigError(f"--config: {value} must hold a JSON object of options; "
                                  f"got {type(file_values).__name__}")
        else:
            values[key] = value
    return apply(apply(config, file_values), values)


def _field(config, name):
    return next(f for f in dataclasses.fields(config) if f.name == name)


def describe(config):
    """One line per field: name, type, default and help text (for --help)."""
    lines = []
    for f in dataclasses.fields(config):
        kind = f.type.__name__ if isinstance(f.type, type) else str(f.type)
        lines.append(f"  --{f.name}={getattr(config, f.name)!r:<16} ({kind}) {f.metadata.get('help', '')}")
    return "\n".join(lines)


def show(config):
    return " ".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config))
