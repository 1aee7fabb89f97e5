"""Typed configuration from dataclasses: a JSON config file, then ``--key=value``
overrides, each checked against the field's type. Unknown keys list the valid ones."""
import dataclasses
import json
from pathlib import Path


class ConfigError(ValueError):
    pass


def option(default, help):
    """A dataclass field with its --help text."""
    return dataclasses.field(default=default, metadata={"help": help})


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
        return kind(text) if not isinstance(text, (dict, list)) else text
    except (TypeError, ValueError):
        raise ConfigError(f"--{field.name}: expected {kind.__name__}, got {text!r}") from None


def apply(config, values):
    """A copy of ``config`` with ``values`` (name → value or string) applied, type-checked."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"valid keys: {', '.join(fields)}")
    return dataclasses.replace(config, **{k: _parse(fields[k], v) for k, v in values.items()})


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
                file_values = json.loads(Path(value).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"--config: cannot read {value}: {exc}") from None
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
