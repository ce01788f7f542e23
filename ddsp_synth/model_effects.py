"""Effect stages inside the instrument model: where their settings come from, how their
gradient crosses them, and what they learned.

A model's chain (``synth.processors``) may list built-in effect devices after its first
source, before or after the room, in the chain syntax: ``harmonic, noise, reverb,
compressor@spsa, distortion, highshelf:q=0.707``. ``@method`` is the device's gradient method
(``autodiff``: its PyTorch twin; ``spsa`` or ``hybrid``: the real device in worker processes;
``proxy``: its neural proxy), ``:param=value`` fixes a parameter. The model's ``effects``
section (:class:`EffectsConfig`) gives each effect device the source of its other settings:

* ``frame``: per frame, by the decoder: one more output head beside the harmonic amplitudes
  (``decoder.effect_heads.DEVICE``), mapped onto the declared ranges like every device
  (sigmoid, log ranges geometrically);
* ``once``: once for the whole model: a trainable vector (``effects.once.DEVICE``), mapped
  the same way;
* ``fixed``: its ``:param=value`` values, the others at their declared defaults.

Device labels are the devices' names made unique (``peak``, ``peak_2``): heads and vectors
keep their names whichever gradient method groups the devices into stages, so
:func:`ddsp_synth.model.switch_method` moves a trained model to other methods (a model trained by SPSA renders
and exports through its twins). Consecutive real-device entries with one method form one
stage (one pool call, SPSA perturbs them together), as in :func:`ddsp_synth.make_chain`.

The parameters of a stage set once are constant, ``[batch, P]``: an SPSA or hybrid stage then
runs each item with one setting and SPSA perturbs the setting, not every frame of it. Real
devices open their worker pools on first use; :meth:`DDSPModel.close` closes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ConfigError, check_fields
from .stages.chain import Chain, unique_labels
from .stages.params import DeviceError, Param, denormalise, normalise
from .stages.registry import make_device, parse_entry
from .stages.synth import SynthConfig

SOURCES = ("frame", "once", "fixed")
# learned parameters start at most this close to their range's ends (sigmoid's flat tails
# would give them no gradient)
INIT_MARGIN = 1e-3


@dataclass(frozen=True)
class EffectsConfig:
    """Where the settings of a model's effect devices come from, and their gradients' settings.

    Attributes:
        sources: one per effect entry of ``synth.processors``, in order: ``"frame"`` (a decoder
            head), ``"once"`` (a trainable vector) or ``"fixed"``.
        init: starting values of learned settings, ``"DEVICE.PARAM=VALUE"`` in natural units
            (``"compressor.threshold_db=-12"``; DEVICE is the device label: ``peak_2`` for a
            second peak); the others start at their declared defaults.
        n_workers: worker processes of each real-device stage (``spsa``, ``hybrid``).
        spsa_epsilon: SPSA perturbation in normalised units (share of each range).
        spsa_pairs: SPSA perturbation pairs averaged per estimate (2 device runs each).
        seed: seed of the SPSA perturbations.
    """

    sources: tuple[str, ...] = ()
    init: tuple[str, ...] = ()
    n_workers: int = 1
    spsa_epsilon: float = 0.02
    spsa_pairs: int = 1
    seed: int = 0

    def __post_init__(self):
        check_fields(self, "effects.", ranges={
            "n_workers": (0, 64), "spsa_epsilon": (1e-4, 0.49), "spsa_pairs": (1, 64),
            "seed": (0, 2**63 - 1)}, choices={"sources": SOURCES})

    def check(self, synth: SynthConfig) -> None:
        """ConfigError (one line) unless the sources and starting values fit the chain."""
        entries = synth.effect_entries
        if len(self.sources) != len(entries):
            raise ConfigError(f"effects.sources needs one source ({', '.join(SOURCES)}) per "
                              f"effect device of synth.processors ({len(entries)}: "
                              f"{', '.join(entries) or 'none'}), got {len(self.sources)}")
        devices = device_table(synth)
        for item in self.init:
            parse_init(item, devices)


def device_table(synth: SynthConfig) -> dict[str, tuple[Param, ...]]:
    """{device label: declared parameters} of the chain's effect devices, in order."""
    entries = [parse_entry(e) for e in synth.effect_entries]
    labels = unique_labels([e.name for e in entries])
    return {label: make_device(e, synth.sample_rate).params for label, e in zip(labels, entries)}


def parse_init(item: str, devices: dict[str, tuple[Param, ...]]) -> tuple[str, str, float]:
    """``"DEVICE.PARAM=VALUE"`` -> (device label, parameter, value), checked."""
    head, sep, value = item.partition("=")
    label, dot, name = head.strip().partition(".")
    if not sep or not dot:
        raise ConfigError(f"effects.init: write DEVICE.PARAM=VALUE, got {item!r:.60}")
    if label not in devices:
        raise ConfigError(f"effects.init: no effect device {label!r} in the chain (devices: "
                          f"{', '.join(devices) or 'none'})")
    params = {p.name: p for p in devices[label]}
    if name not in params:
        raise ConfigError(f"effects.init: {label} has no parameter {name!r} ({', '.join(params)})")
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"effects.init: {item!r:.60}: the value must be a number") from None
    p = params[name]
    if not (math.isfinite(v) and p.min <= v <= p.max):
        raise ConfigError(f"effects.init: {label}.{name} = {value.strip()} is outside "
                          f"[{p.min:g}, {p.max:g}] {p.unit}".rstrip())
    return label, name, v


# ----------------------------------------------------------------------------- the chain
def model_chain(synth: SynthConfig, effects: EffectsConfig) -> Chain:
    """The chain of a model with effect devices: the synthesizer's stages and each effect
    as the stage of its gradient method. Effect stages hold no trainable weights (a proxy's
    are frozen: the model learns settings, not a new device). A real device that needs
    pedalboard where it is missing is one DeviceError line."""
    from .chains import make_chain
    from .gradients.spsa import SPSAConfig

    spsa = SPSAConfig(effects.spsa_epsilon, effects.spsa_pairs)
    chain = make_chain(list(synth.processors), synth.sample_rate, synth.hop, synth=synth,
                       n_workers=effects.n_workers, spsa=spsa, seed=effects.seed)
    for label, stage in zip(chain.labels, chain.stages()):
        if stage.devices:
            stage.requires_grad_(False)
            _check_real_device(label, stage)
    return chain


def _check_real_device(label: str, stage) -> None:
    real = getattr(stage, "real", None)
    if real is None:
        return
    from .blackbox.specs import import_pedalboard, needs_pedalboard

    if needs_pedalboard(real.spec):
        try:
            import_pedalboard()
        except DeviceError as err:
            raise DeviceError(f"effect stage '{label}' ({stage.method}) runs the real device: "
                              f"{err}; or render it through its twin "
                              "(ddsp_synth.model.switch_method(model, 'autodiff'))"
                              ) from None


def is_effect(stage) -> bool:
    return bool(getattr(stage, "devices", None))


# ----------------------------------------------------------------------------- settings
@dataclass
class _Device:
    """One effect device of the model: where its settings come from."""

    label: str
    name: str
    stage: str  # label of the chain stage that runs it
    params: tuple[Param, ...]
    source: str
    learned: list[int]  # indices of the parameters the source sets
    values: list[float]  # every parameter's fixed / starting value (natural units)


def _devices(chain: Chain, config: EffectsConfig) -> list[_Device]:
    out, sources = [], iter(config.sources)
    names = [d.name for s in chain.stages() for d in getattr(s, "devices", [])]
    labels = iter(unique_labels(names))
    for stage_label, stage in zip(chain.labels, chain.stages()):
        for device in getattr(stage, "devices", []):
            label, source = next(labels), next(sources)
            values = [p.default for p in device.params]
            for i, v in device.fixed.items():
                values[i] = v
            learned = [] if source == "fixed" else \
                [i for i in range(len(device.params)) if i not in device.fixed]
            out.append(_Device(label, device.name, stage_label, device.params, source,
                               learned, values))
    table = {d.label: d.params for d in out}
    for item in config.init:
        label, name, v = parse_init(item, table)
        d = next(d for d in out if d.label == label)
        d.values[[p.name for p in d.params].index(name)] = v
    return out


def _raw_start(params: tuple[Param, ...], values: list[float]) -> torch.Tensor:
    """Raw outputs whose mapping (sigmoid onto the ranges) gives ``values``."""
    # on the CPU explicitly, also where a model file's shapes are checked on the meta device
    # (tensor ops there import torch's compiler: about a second)
    u = normalise(params, torch.tensor(values, dtype=torch.float64, device="cpu")[None])[0]
    u = u.clamp(INIT_MARGIN, 1.0 - INIT_MARGIN)
    return torch.logit(u).float()


class EffectSettings(nn.Module):
    """The settings of a model's effect devices: learned-once vectors, the decoder heads'
    sizes and starting biases, fixed values; assembled per chain stage.

    Attributes:
        devices: every effect device in chain order (:class:`_Device`).
        once: {device label: raw vector [n_learned]}, the settings learned for the model.
    """

    def __init__(self, chain: Chain, config: EffectsConfig):
        super().__init__()
        self.devices = _devices(chain, config)
        self.once = nn.ParameterDict({
            d.label: nn.Parameter(self._start(d)) for d in self.devices if d.source == "once"})
        for d in self.devices:  # fixed and starting values, natural units (not saved)
            self.register_buffer(f"values_{d.label}", torch.tensor(d.values, device="cpu"),
                                 persistent=False)

    @staticmethod
    def _start(d: _Device) -> torch.Tensor:
        return _raw_start(tuple(d.params[i] for i in d.learned), [d.values[i] for i in d.learned])

    def head_sizes(self) -> dict[str, torch.Tensor]:
        """{device label: starting bias [n_learned]} of the devices set per frame: the
        decoder's extra heads."""
        return {d.label: self._start(d) for d in self.devices if d.source == "frame"}

    def device_params(self, d: _Device, head_raw: torch.Tensor | None,
                      batch: int) -> torch.Tensor:
        """One device's natural settings: [batch, n_frames, P] from its head's raw outputs
        [batch, n_frames, n_learned], else constant [batch, P]."""
        fixed = getattr(self, f"values_{d.label}")
        if d.source == "fixed" or not d.learned:
            return fixed[None].expand(batch, -1)
        raw = head_raw if d.source == "frame" else self.once[d.label][None].expand(batch, -1)
        learned = denormalise(tuple(d.params[i] for i in d.learned), torch.sigmoid(raw))
        full = fixed.expand(*learned.shape[:-1], -1)
        index = torch.tensor(d.learned, device=raw.device)
        return full.index_copy(-1, index, learned)

    def stage_params(self, stage_label: str, heads: dict, batch: int) -> torch.Tensor:
        """A chain stage's settings: its devices' side by side ([batch, n_frames, P] when one
        of them is set per frame; the others are held over the frames)."""
        parts = [self.device_params(d, heads.get(d.label), batch) for d in self.devices
                 if d.stage == stage_label]
        frames = next((p.shape[1] for p in parts if p.dim() == 3), None)
        if frames is not None:
            parts = [p if p.dim() == 3 else p[:, None].expand(-1, frames, -1) for p in parts]
        return torch.cat(parts, -1)

    def constant_stages(self) -> set[str]:
        """Labels of the chain stages whose settings are constant ([batch, P]): none of
        their devices is set per frame."""
        frame = {d.stage for d in self.devices if d.source == "frame"}
        return {d.stage for d in self.devices} - frame

    def learned_settings(self) -> list[dict]:
        """Every effect device in chain order: ``{"device", "label", "source", "params"}``;
        ``params`` in natural units for settings set once or fixed (per-frame settings are
        the decoder's and have no single value: their entry lists the parameter names)."""
        out = []
        with torch.no_grad():
            for d in self.devices:
                entry = {"device": d.name, "label": d.label, "source": d.source}
                if d.source == "frame":
                    entry["params"] = {p.name: ("per frame" if i in d.learned else d.values[i])
                                       for i, p in enumerate(d.params)}
                else:
                    values = self.device_params(d, None, 1)[0].tolist()
                    entry["params"] = {p.name: round(float(v), 6)
                                       for p, v in zip(d.params, values)}
                out.append(entry)
        return out


def chain_params(model, raw: torch.Tensor, heads: dict, f0_hz: torch.Tensor):
    """The chain's parameters from the decoder's outputs: the synthesizer's stages from
    ``raw`` [batch, n_frames, n_synth_raw], the effect stages from ``heads`` ({device label:
    [batch, n_frames, n]}) and the learned-once vectors. A flat [batch, n_frames, P] tensor
    when every stage is set per frame, else one tensor per stage."""
    parts, i, batch = [], 0, raw.shape[0]
    for label, stage in zip(model.synth.labels, model.synth.stages()):
        if is_effect(stage):
            parts.append(model.effects.stage_params(label, heads, batch))
        else:
            parts.append(stage.params_from_raw(raw[..., i : i + stage.n_raw], f0_hz))
            i += stage.n_raw
    if all(p.dim() == 3 for p in parts):
        return torch.cat(parts, -1)
    return parts


def synth_raw_size(chain: Chain) -> int:
    """Raw decoder outputs of the synthesizer's own stages (the main head)."""
    return sum(s.n_raw for s in chain.stages() if not is_effect(s))


# ----------------------------------------------------------------------------- methods
def entry_with_method(text: str, method: str | None) -> str:
    """A chain entry with its ``@method`` replaced (None: removed)."""
    entry = parse_entry(text)
    fixed = "".join(f":{k}={v!r}" for k, v in entry.fixed.items())
    return entry.name + fixed + (f"@{method}" if method else "")


def describe_chain(model) -> list[dict]:
    """The model's chain for its file and card: every stage in order with its kind, its
    gradient method and, for effect devices, the source and values of their settings."""
    out, settings = [], {}
    if model.effects is not None:
        settings = {d["label"]: d for d in model.effects.learned_settings()}
    devices = iter(settings.values())
    for label, stage in zip(model.synth.labels, model.synth.stages()):
        if not is_effect(stage):
            out.append({"stage": label, "kind": stage.kind})
            continue
        for _ in stage.devices:
            d = next(devices)
            out.append({"stage": label, "kind": "effect", "method": stage.method,
                        "device": d["device"], "label": d["label"], "source": d["source"],
                        "params": d["params"]})
    return out


def chain_markdown(chain: list[dict]) -> str:
    """A model card's table of its chain (:func:`describe_chain`'s entries): every stage in
    order, with each effect device's gradient method and settings (natural units)."""
    rows = ["| # | stage | device | gradient | settings from | settings |",
            "|---|---|---|---|---|---|"]
    for i, e in enumerate(chain, 1):
        if "device" not in e:  # the synthesizer's own stages
            rows.append(f"| {i} | {e['stage']} | synthesizer ({e['kind']}) | autodiff | "
                        "decoder, per frame / learned | |")
            continue
        params = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                           for k, v in e["params"].items())
        source = {"frame": "decoder, per frame", "once": "learned once",
                  "fixed": "fixed"}[e["source"]]
        rows.append(f"| {i} | {e['stage']} | {e['device']} | {e['method']} | {source} | "
                    f"{params} |")
    return "\n".join(rows) + "\n"
