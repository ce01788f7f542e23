"""Settings are frozen dataclasses; this checks them field by field.

Every settings class calls :func:`check_fields` in ``__post_init__`` with the range of each
number and the choices of each string, so a bad value — from a JSON file, the command line or
code — is refused with one line naming the field, before anything is allocated or trained.
:func:`from_dict` builds a settings object from JSON-like data: unknown keys are refused, left
out keys keep their defaults, nested settings are read recursively and lists become tuples.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from .errors import InputError


class ConfigError(InputError):
    """A setting is missing, of the wrong type or out of range (one line, names the field)."""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {int: "whole number", float: "number", str: "text", bool: "true/false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, where: str):
    """``value`` as type ``tp`` (ints accepted for floats, lists for tuples), else ConfigError."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r:.60}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r:.60}")
        if len(value) > 10_000:
            raise ConfigError(f"{where} has {len(value)} entries; that is not a setting")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r:.60}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                return int(value)
            raise ConfigError(f"{where} must be a whole number, got {value!r:.60}")
        return value
    if tp in (str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r:.60}")
    if dataclasses.is_dataclass(tp) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {tp.__name__} settings, got {type(value).__name__}")
    return value


def check_fields(obj, prefix: str = "", ranges: dict | None = None,
                 choices: dict | None = None) -> None:
    """Check (and coerce in place) every field of a frozen dataclass instance.

    Args:
        prefix: where the object sits (``"model.synth."``) for messages.
        ranges: {field: (low, high)} inclusive bounds; None leaves that side open.
        choices: {field: allowed values}.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        where = prefix + f.name
        value = _coerce(getattr(obj, f.name), hints[f.name], where)
        object.__setattr__(obj, f.name, value)
    for name, (low, high) in (ranges or {}).items():
        values = getattr(obj, name)
        for v in values if isinstance(values, tuple) else (values,):
            if (low is not None and v < low) or (high is not None and v > high):
                span = (f"between {low:g} and {high:g}" if low is not None and high is not None
                        else f"at least {low:g}" if low is not None else f"at most {high:g}")
                raise ConfigError(f"{prefix}{name} must be {span}, got {v!r}")
    for name, allowed in (choices or {}).items():
        value = getattr(obj, name)
        for v in value if isinstance(value, tuple) else (value,):
            if v not in allowed:
                raise ConfigError(f"{prefix}{name} must be one of {', '.join(map(str, allowed))}; "
                                  f"got {v!r:.60}")


def from_dict(cls, data, prefix: str = ""):
    """A ``cls`` settings object from a JSON object: unknown keys refused, missing keys at
    their defaults, nested settings read recursively, every value checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__} must be a JSON object "
                          f"({{\"name\": value, ...}}), got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown setting {prefix}{unknown[0]!s:.60} (known: "
                          f"{', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and not str(err).startswith(prefix):
            raise ConfigError(f"{prefix}{err}") from None
        raise


def read_json_file(path, max_bytes: int = 16 << 20, what: str = "JSON file"):
    """Parse a JSON file that must be a regular file of at most ``max_bytes`` (a FIFO, a
    device or a huge file is refused before reading). Errors are ConfigError, one line."""
    import json
    import os
    import stat

    try:
        st = os.stat(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file (a {what} is expected)")
    if st.st_size > max_bytes:
        raise ConfigError(f"{path}: {st.st_size / 2**20:.0f} MB is too large for a {what} "
                          f"(at most {max_bytes / 2**20:.0f} MB)")
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read(max_bytes + 1).decode("utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: damaged {what} (not text: an audio or other binary "
                          "file?)") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: damaged {what} ({err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: damaged {what} (nested too deeply)") from None
