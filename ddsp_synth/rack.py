"""The effects rack: an effect chain after the instrument, its settings a preset.

A preset is what ``match``, ``control apply`` and ``style`` write and what the app loads and
saves: ``{"chain": [{"device": NAME, "params": {PARAM: VALUE}, ["source": PATH]}, ...]}``
in natural units (pedalboard's names). :func:`read_preset` / :func:`check_preset` turn a
file or a dict into a checked :class:`Preset` (one-line :class:`PresetError` otherwise).

:class:`Rack` renders a preset on audio ([n] or [n, channels]; the same settings on each
channel): through the PyTorch twins (``engine="twins"``: what transfer, render, streaming
and live playing use; chunked and streamed rendering equal one call on the whole signal)
or through the real devices (``engine="real"``: pedalboard, plugins, commands in worker
processes; what ``ddsp-synth fx`` uses). :meth:`Rack.stream` gives a block-by-block player
that carries every device's state.

``RACK_LAYOUT`` is the app's rack: EQ (low shelf, peak, high shelf), compressor,
distortion and output gain, each switched on or off; the room's amount is the model's own
``reverb`` stage (``--amount reverb=...``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

PRESET_MAX_BYTES = 1 << 20
MAX_DEVICES = 64
# The app's rack, in order: (device, its knobs' neutral settings). A device is "on" when it
# is in the preset; the neutral settings are where a knob starts.
RACK_LAYOUT = (
    ("lowshelf", {"cutoff_frequency_hz": 120.0, "gain_db": 0.0, "q": 0.707}),
    ("peak", {"cutoff_frequency_hz": 1000.0, "gain_db": 0.0, "q": 1.0}),
    ("highshelf", {"cutoff_frequency_hz": 5000.0, "gain_db": 0.0, "q": 0.707}),
    ("compressor", {"threshold_db": 0.0, "ratio": 1.0, "attack_ms": 10.0,
                    "release_ms": 100.0}),
    ("distortion", {"drive_db": 0.0}),
    ("gain", {"gain_db": 0.0}),
)
ENGINES = ("twins", "real")


class PresetError(UserError):
    """A preset that cannot be used: unreadable, unknown device, a value out of range."""


@dataclass(frozen=True)
class Preset:
    """A checked preset: chain entries (names or device-file paths) and their settings.

    Attributes:
        entries: what make_chain is given, one per device (``peak``, ``/path/fx.json``).
        names: the devices' names (``peak``, a device file's ``name``).
        values: per device, its parameters' natural values in declaration order.
    """

    entries: tuple[str, ...]
    names: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]

    @property
    def empty(self) -> bool:
        return not self.entries

    def check_twins(self) -> "Preset":
        """PresetError unless every device has a PyTorch twin (the instrument's rack, the
        streaming engine and live playing run the twins)."""
        from .stages.registry import make_device

        for entry in self.entries:
            if make_device(entry, 48000).twin is None:
                raise PresetError(f"'{entry}' has no PyTorch twin: it runs only through the "
                                  "real device (ddsp-synth fx), not in the instrument's rack")
        return self

    def to_dict(self, sample_rate: int = 48000) -> dict:
        """The preset in ``match``'s format (``source`` for device files)."""
        from .stages.registry import make_device

        chain = []
        for entry, name, values in zip(self.entries, self.names, self.values):
            device = make_device(entry, sample_rate)
            item = {"device": name,
                    "params": {p.name: round(float(v), 6) for p, v in zip(device.params, values)}}
            if entry != name:
                item["source"] = entry
            chain.append(item)
        return {"chain": chain}

    def describe(self) -> str:
        """One line for people: ``peak 1000 Hz +3.0 dB q 1.0, gain -2.0 dB``."""
        from .stages.registry import make_device

        if self.empty:
            return "no effects"
        parts = []
        for entry, name, values in zip(self.entries, self.names, self.values):
            params = make_device(entry, 48000).params
            knobs = " ".join(f"{p.name}={v:g}{' ' + p.unit if p.unit else ''}"
                             for p, v in zip(params, values))
            parts.append(f"{name} {knobs}")
        return "; ".join(parts)


def sources_relative_to(preset: dict, folder: str | os.PathLike) -> dict:
    """``preset`` with each device file given by a relative path (relative to the working
    folder, as typed after ``--chain``) written relative to ``folder``, where the preset is
    saved: :func:`read_preset` then finds the file from any working folder. Absolute paths
    (an installed plugin) stay as they are; so does a path that cannot be made relative
    (another drive: then absolute)."""
    chain = []
    for item in preset.get("chain", []):
        source = item.get("source") if isinstance(item, dict) else None
        if isinstance(source, str):
            item = {**item, "source": file_relative_to(source, folder)}
        chain.append(item)
    return {**preset, "chain": chain}


def _relative_file(entry: str) -> str | None:
    """The relative device-file path chain entry ``entry`` names, or None (a built-in name,
    an absolute path, an entry that does not parse: left as it is)."""
    from .stages.params import DeviceError
    from .stages.registry import entry_file

    try:
        path = entry_file(entry)
    except DeviceError:
        return None
    return None if path is None or os.path.isabs(path) else path


def file_relative_to(entry: str, folder: str | os.PathLike) -> str:
    """Chain entry ``entry`` with the device file it names (relative to the working folder)
    written relative to ``folder``; a built-in name, an absolute path or a file not found
    stays as it is (a path that cannot be made relative, on another drive: absolute)."""
    from .stages.registry import with_file

    path = _relative_file(entry)
    if path is None or not Path(path).exists():
        return entry
    try:
        return with_file(entry, os.path.relpath(Path(path).resolve(), Path(folder).resolve()))
    except ValueError:
        return with_file(entry, str(Path(path).resolve()))


def file_found_from(entry: str, folder: str | os.PathLike) -> str:
    """Chain entry ``entry`` with a relative device file that lies in ``folder`` (where a
    preset or a controller was saved, :func:`file_relative_to`) given by that path; otherwise
    as it is (found from the working folder)."""
    from .stages.registry import with_file

    path = _relative_file(entry)
    if path is None or not (Path(folder) / path).exists():
        return entry
    return with_file(entry, str(Path(folder) / path))


def _entry_of(item: dict, i: int, base: Path | None) -> str:
    """The make_chain entry of one preset item: the device's name, or its file's path (a
    relative path is found beside the preset first, as :func:`sources_relative_to` writes
    it, then in the working folder)."""
    source = item.get("source")
    name = item.get("device")
    if not isinstance(name, str) or not name.strip():
        raise PresetError(f"entry {i}: 'device' must be a device name")
    if source is None:
        return name
    if not isinstance(source, str) or not source.strip():
        raise PresetError(f"entry {i} ({name}): 'source' must be a path")
    return source if base is None else file_found_from(source, base)


def check_preset(data, sample_rate: int = 48000, base: Path | None = None) -> Preset:
    """A :class:`Preset` from a preset dict, every device known and every value in range
    (parameters it leaves out take their defaults). PresetError (one line) otherwise."""
    from .stages.params import DeviceError, from_dict
    from .stages.registry import make_device

    if not isinstance(data, dict) or not isinstance(data.get("chain"), list):
        hint = ("; this is a device file: name it in a chain (match --chain FILE) or in a "
                "preset's 'source'" if isinstance(data, dict) and ("command" in data
                                                                     or "path" in data) else "")
        raise PresetError("a preset is a JSON object with a 'chain' list of {device, params}"
                          + hint)
    items = data["chain"]
    if len(items) > MAX_DEVICES:
        raise PresetError(f"{len(items)} devices; a rack holds at most {MAX_DEVICES}")
    entries, names, values = [], [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PresetError(f"entry {i}: expected {{\"device\": ..., \"params\": {{...}}}}")
        entry = _entry_of(item, i, base)
        params = item.get("params", {})
        if not isinstance(params, dict):
            raise PresetError(f"entry {i} ({item['device']}): 'params' must be an object")
        try:
            device = make_device(entry, sample_rate)
            natural = from_dict(device.params, params, device.name)
        except DeviceError as err:
            raise PresetError(f"entry {i}: {err}") from None
        entries.append(entry)
        names.append(device.name)
        values.append(tuple(float(v) for v in natural))
    return Preset(tuple(entries), tuple(names), tuple(values))


def read_preset(path: str | os.PathLike, sample_rate: int = 48000) -> Preset:
    """A checked preset from a JSON file; PresetError naming the file once."""
    from .config import ConfigError, read_json_file

    path = Path(path)
    try:
        data = read_json_file(path, PRESET_MAX_BYTES, "preset")
        return check_preset(data, sample_rate, base=path.parent)
    except (ConfigError, PresetError) as err:
        text = str(err)
        raise PresetError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def layout_preset(settings: dict[str, dict | None]) -> Preset:
    """A preset from the app's rack: {device of RACK_LAYOUT: its knobs, or None (off)}."""
    chain = [{"device": name, "params": settings[name]} for name, _ in RACK_LAYOUT
             if settings.get(name) is not None]
    return check_preset({"chain": chain})


def layout_settings(preset: Preset) -> dict[str, dict | None] | None:
    """The app's rack settings of a preset, or None when its chain is not the rack's
    layout (another order, a device twice, a device the rack lacks)."""
    order = [name for name, _ in RACK_LAYOUT]
    if len(set(preset.entries)) != len(preset.entries) \
            or any(e not in order for e in preset.entries) \
            or [order.index(e) for e in preset.entries] != sorted(order.index(e)
                                                                   for e in preset.entries):
        return None
    out: dict[str, dict | None] = {name: None for name in order}
    for entry, values in zip(preset.entries, preset.values):
        knobs = dict(RACK_LAYOUT)[entry]
        out[entry] = dict(zip(knobs, values))
    return out


class Rack:
    """A preset's chain, ready to render at ``sample_rate``.

    Args:
        preset: a :class:`Preset` (or a preset dict, checked here).
        sample_rate: Hz of the audio it will process.
        engine: ``twins`` (PyTorch, every device needs a twin) or ``real`` (the real
            devices in ``n_workers`` worker processes).
    """

    def __init__(self, preset, sample_rate: int, engine: str = "twins", n_workers: int = 1):
        from .chains import make_chain, real_chain

        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        # a Preset checked at another rate is checked again at this one: a 12 kHz shelf set
        # for 48 kHz audio is out of range for 16 kHz audio (its filter would be unstable)
        try:
            self.preset = check_preset(preset.to_dict(int(sample_rate)) if isinstance(
                preset, Preset) else preset, sample_rate)
        except PresetError as err:  # valid at another rate, not at this one: say which
            raise PresetError(f"the preset does not play at {int(sample_rate)} Hz: {err}") \
                from None
        self.sample_rate, self.engine = int(sample_rate), engine
        self.chain = None
        if self.preset.empty:
            return
        if engine == "twins":
            self.preset.check_twins()
            self.chain = make_chain(list(self.preset.entries), sample_rate, method="autodiff")
        else:
            gradient_chain = make_chain(list(self.preset.entries), sample_rate, method="spsa",
                                        n_workers=n_workers)
            self.chain = real_chain(gradient_chain, n_workers)
        self.params = torch.tensor([v for values in self.preset.values for v in values],
                                   dtype=torch.float32)[None]

    def _params(self, batch: int) -> torch.Tensor:
        return self.params.expand(batch, -1)

    @torch.inference_mode()
    def process(self, audio: np.ndarray) -> np.ndarray:
        """The whole signal through the rack: [n] or [n, channels] float32, same shape."""
        audio = np.asarray(audio, np.float32)
        if self.chain is None or audio.size == 0:
            return audio
        x = torch.from_numpy(np.ascontiguousarray(audio.T if audio.ndim == 2 else audio[None]))
        y, _ = self.chain(x, self._params(x.shape[0]))
        y = y.numpy()
        return y.T.copy() if audio.ndim == 2 else y[0]

    def stream(self, channels: int = 1) -> "RackStream":
        """A block-by-block player of this rack (state carried from block to block)."""
        return RackStream(self, channels)

    def close(self) -> None:
        if self.chain is not None:
            self.chain.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RackStream:
    """Blocks of one signal through a :class:`Rack`: the concatenated output equals
    :meth:`Rack.process` on the whole signal."""

    def __init__(self, rack: Rack, channels: int = 1):
        self.rack, self.channels = rack, channels
        self.state = rack.chain.initial_state(channels) if rack.chain is not None else None

    @torch.inference_mode()
    def process(self, block: np.ndarray) -> np.ndarray:
        """[n] or [n, channels] float32 -> the same shape."""
        block = np.asarray(block, np.float32)
        if self.rack.chain is None or block.size == 0:
            return block
        x = torch.from_numpy(np.ascontiguousarray(block.T if block.ndim == 2 else block[None]))
        y, self.state = self.rack.chain(x, self.rack._params(x.shape[0]), self.state)
        y = y.numpy()
        return y.T.copy() if block.ndim == 2 else y[0]

    def close(self) -> None:
        if self.rack.chain is not None and self.state is not None:
            self.rack.chain.end_state(self.state)
            self.state = None
