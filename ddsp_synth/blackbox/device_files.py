"""JSON device files: a command line or a plugin with declared parameters.

Command device (``--chain my_fx.json``)::

    {"name": "sox_overdrive",
     "command": ["sox", "{input}", "{output}", "overdrive", "{gain_db:.2f}", "20"],
     "params": [{"name": "gain_db", "unit": "dB", "min": 0, "max": 40, "default": 10}],
     "timeout_s": 30}

``{input}`` / ``{output}`` are WAV paths (float32, mono), ``{sample_rate}`` the rate in Hz,
``{NAME}`` (with an optional format spec) each declared parameter. The command runs without a
shell, in its own process group. Its output is read back as mono, cut or zero-padded to the
input's length. A plugin file is ``{"type": "plugin", "path": "x.vst3", "plugin_name": null,
"params": [...]}`` (params optional: then every numeric parameter the plugin reports is used).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..config import ConfigError, read_json_file
from ..stages.params import DeviceError, Param, device_params
from .specs import CommandSpec, PluginSpec

MAX_DEVICE_FILE_BYTES = 1 << 20
FIELDS = {"command": {"type", "name", "command", "params", "timeout_s"},
          "plugin": {"type", "name", "path", "plugin_name", "params"}}


def _read(path: Path) -> dict:
    """The JSON object of a device file (a regular file of at most 1 MiB)."""
    try:
        data = read_json_file(path, MAX_DEVICE_FILE_BYTES, "device file")
    except ConfigError as err:
        raise DeviceError(str(err)) from None
    if not isinstance(data, dict):
        raise DeviceError(f"{path}: a device file must hold a JSON object")
    return data


def _params(data: dict, path: Path) -> tuple[Param, ...]:
    return device_params(data.get("params", []), str(path))


def load_device_file(path: str | os.PathLike):
    """A CommandSpec or PluginSpec from a JSON device file; DeviceError on any problem."""
    path = Path(path)
    data = _read(path)
    kind = data.get("type", "plugin" if "path" in data else "command")
    if kind not in FIELDS:
        raise DeviceError(f"{path}: 'type' must be 'command' or 'plugin', got {kind!r:.40}")
    unknown = set(data) - FIELDS[kind]
    if unknown:
        raise DeviceError(f"{path}: unknown field(s) {sorted(unknown)[:5]}; allowed: "
                          f"{sorted(FIELDS[kind])}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise DeviceError(f"{path}: 'name' must be a non-empty string")
    params = _params(data, path)
    if kind == "plugin":
        plugin_path = data.get("path")
        if not isinstance(plugin_path, str):
            raise DeviceError(f"{path}: 'path' must be a string")
        if not os.path.isabs(plugin_path):
            plugin_path = str(path.parent / plugin_path)
        return PluginSpec(name, plugin_path, data.get("plugin_name"), params)
    if "command" not in data:
        raise DeviceError(f"{path}: a device file needs 'command' (a command-line effect) or "
                          "'path' (a plugin); see the README, section Effects")
    if not params:
        raise DeviceError(f"{path}: a command device needs at least one parameter in 'params'")
    timeout = data.get("timeout_s", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise DeviceError(f"{path}: 'timeout_s' must be a positive number, got {timeout!r}")
    command = data["command"]
    return CommandSpec(name, tuple(command) if isinstance(command, list) else command, params,
                       float(timeout), str(path))
