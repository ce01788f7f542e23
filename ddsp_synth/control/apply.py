"""Applying a controller: predict the settings from a whole input (and a reference), render
it through the real devices, and say what the settings were.

The controller listens at its own rate (the input's channels mixed to mono, resampled); the
settings it predicts are in natural units, so the input is rendered at its own rate and
channel count (every channel with the same settings) through devices made at that rate, in
chunks that carry the devices' state, so a whole song costs little memory and equals one
pass. A per-frame controller's automation (10 ms frames) is moved onto the frame grid of
the input's rate. The settings come back as a preset in ``match``'s format
(``{"chain": [{"device", "params"}...]}``); a per-frame controller's preset holds the median
of each curve as ``params`` and the curves themselves under ``"automation"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio_io import check_input_signal, resample_audio
from ..errors import InputError
from ..stages.params import denormalise, normalise
from ..stages.registry import entry_file
from ..stages.twins import default_hop
from .config import ControlError
from .controller import Controller
from .devices import check_same_chain, clip_to, render_chain
from .files import chain_text, load_controller

CHUNK_SECONDS = 30.0  # rendering block; the devices' state carries across blocks
SILENT_RMS_DB = -70.0  # a reference quieter than this has no style to take


@dataclass
class Applied:
    """What :func:`apply_controller` returns.

    Attributes:
        audio: [channels, n_samples] (or [n_samples] for a mono array given as one) float32,
            at the input's rate.
        preset: the settings in natural units (``match``'s format).
        settings: [P] natural settings, or [n_frames, P] per 10 ms frame, at the input's rate.
        rendered_by: ``"real"`` (the real devices) or ``"twins"``.
        notes: what was done that the user should know (resampling, a level cut).
    """

    audio: np.ndarray
    preset: dict
    settings: np.ndarray
    rendered_by: str
    notes: list[str] = field(default_factory=list)


def _mono_at(audio: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    mono = audio.mean(0) if audio.ndim == 2 else audio
    return resample_audio(np.ascontiguousarray(mono, dtype=np.float32), sample_rate, rate)


def _check_reference(reference: np.ndarray, seconds_min: float, rate: int) -> None:
    seconds = len(reference) / rate
    if seconds < seconds_min:
        raise ControlError(f"the reference is {seconds:.2f} s long; this controller needs at "
                           f"least {seconds_min:g} s of it")
    rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    if 20 * np.log10(rms + 1e-30) < SILENT_RMS_DB:
        raise ControlError(f"the reference is silent (RMS below {SILENT_RMS_DB:g} dBFS): it "
                           "has no sound to match")


def predict_settings(controller: Controller, audio: np.ndarray, sample_rate: int,
                     reference: np.ndarray | None = None, reference_rate: int | None = None
                     ) -> np.ndarray:
    """Natural settings at the controller's rate: [P], or [n_frames, P] per frame.

    Args:
        audio: [n_samples] or [channels, n_samples] at ``sample_rate``.
        reference: the same for the reference, at ``reference_rate`` (default the input's).
    """
    cfg = controller.config
    x = _mono_at(audio, sample_rate, cfg.sample_rate)
    if len(x) < cfg.n_fft:
        raise ControlError(f"the input is {len(x) / cfg.sample_rate:.3f} s long; the "
                           f"controller analyses at least {cfg.n_fft / cfg.sample_rate:.3f} s")
    ref = None
    if cfg.reference:
        if reference is None:
            raise ControlError("this controller matches a reference: give one (--reference)")
        ref = _mono_at(reference, reference_rate or sample_rate, cfg.sample_rate)
        _check_reference(ref, cfg.min_reference_seconds, cfg.sample_rate)
        ref = torch.from_numpy(ref)[None]
    elif reference is not None:
        raise ControlError("this controller takes no reference; it was trained on pairs")
    with torch.no_grad():
        return controller.predict(torch.from_numpy(x)[None], ref)[0].double().numpy()


def regrid(settings: np.ndarray, declared, hop_s: float, new_hop_s: float,
           n_frames: int) -> np.ndarray:
    """Per-frame settings [T, P] (frames ``hop_s`` apart) on another grid of ``n_frames``
    frames ``new_hop_s`` apart, interpolated in the normalised domain (log ranges
    geometrically), the last frame held."""
    u = normalise(declared, settings)
    t_old = np.arange(len(settings)) * hop_s
    t_new = np.arange(n_frames) * new_hop_s
    cols = [np.interp(t_new, t_old, u[:, i]) for i in range(u.shape[1])]
    return denormalise(declared, np.stack(cols, -1))


def render_settings(entries: list[str], audio: np.ndarray, sample_rate: int,
                    settings: np.ndarray, n_workers: int = 2, real: bool = True,
                    chunk_seconds: float = CHUNK_SECONDS) -> tuple[np.ndarray, str]:
    """[channels, n] through the chain at ``sample_rate`` with ``settings`` ([P] or
    [n_frames + 1, P] on that rate's frame grid), in chunks carrying the devices' state (in
    one call over the whole signal where a device cannot continue from one chunk to the
    next: a command-line effect, as ``fx`` runs it). Returns (output [channels, n],
    ``"real"`` or ``"twins"``)."""
    chain, kind = render_chain(entries, sample_rate, n_workers, real)
    hop = chain.hop
    per_frame = settings.ndim == 2
    channels, n = audio.shape
    streams = getattr(chain, "streamable", True)
    chunk = max(1, int(chunk_seconds * sample_rate) // hop) * hop if streams else max(n, 1)
    params = torch.from_numpy(settings).float()
    try:
        state = chain.initial_state(channels) if streams else None
        outs = []
        for s0 in range(0, n, chunk):
            final = s0 + chunk >= n
            x = torch.from_numpy(np.ascontiguousarray(audio[:, s0 : s0 + chunk]))
            if per_frame:
                p = params[s0 // hop :] if final else params[s0 // hop : (s0 + chunk) // hop]
            else:
                p = params
            p = p[None].expand(channels, *p.shape)
            with torch.no_grad():
                y, state = chain(x, p, state, final=final)
            outs.append(y.numpy())
        if streams:
            chain.end_state(state)
    finally:
        chain.close()
    return np.concatenate(outs, -1).astype(np.float32), kind


def settings_preset(meta: dict, settings: np.ndarray) -> dict:
    """``match``'s preset format from natural settings ([P], or per frame [T, P]: the median
    of each curve as ``params``, the curves under ``automation``)."""
    flat = np.median(settings, 0) if settings.ndim == 2 else settings
    entries, i = [], 0
    for device in meta["chain"]:
        names = [p["name"] for p in device["params"]]
        entry = {"device": device["device"],
                 "params": {k: round(float(v), 6) for k, v in zip(names, flat[i : i + len(names)])}}
        path = entry_file(device["source"])
        if path is not None:  # the file only: a preset sets every value, and has no method
            entry["source"] = path
        if settings.ndim == 2:
            entry["automation"] = {k: [round(float(v), 4) for v in settings[:, i + j]]
                                   for j, k in enumerate(names)}
        entries.append(entry)
        i += len(names)
    out = {"chain": entries, "controller": meta.get("name", "controller")}
    if settings.ndim == 2:
        out["automation_hop_s"] = 0.01
    return out


def apply_controller(controller, audio: np.ndarray, sample_rate: int,
                     reference: np.ndarray | None = None, reference_rate: int | None = None,
                     chain=None, n_workers: int = 2, real: bool = True) -> Applied:
    """Predict the settings for ``audio`` (and ``reference``) and render it with them.

    Args:
        controller: a controller folder, a shipped controller's name (``"style"``), or a
            loaded ``(Controller, meta)`` pair.
        audio: [n_samples] or [channels, n_samples] float, at ``sample_rate``.
        reference: [n_samples] or [channels, n_samples], at ``reference_rate`` (default
            ``sample_rate``).
        chain: the chain the caller expects (refused unless it is the controller's).
        real: render through the real devices where they exist (else the twins).

    Raises:
        ControlError, InputError: a missing, silent or too short reference, a chain that is
            not the controller's, an input the controller cannot analyse (one line).
    """
    net, meta = controller if isinstance(controller, tuple) else load_controller(controller)
    audio = np.asarray(audio, np.float32)
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise InputError(f"audio must be [n_samples] or [channels, n_samples], got {audio.shape}")
    check_input_signal(audio.reshape(-1))
    if chain is not None:
        check_same_chain(meta["chain"], chain, net.config.sample_rate)
    if reference is not None:
        reference = np.asarray(reference, np.float32)
        if reference.size == 0 or not np.all(np.isfinite(reference)):
            raise ControlError("the reference is empty or holds NaN or infinite samples")
    natural = predict_settings(net, audio, sample_rate, reference, reference_rate)
    entries = chain_text(meta).split(",")
    declared = render_chain_declared(entries, sample_rate)
    hop = default_hop(sample_rate)
    channels = np.atleast_2d(audio)
    if natural.ndim == 2:
        n_frames = -(-channels.shape[1] // hop) + 1
        natural = regrid(natural, net.declared, net.hop / net.config.sample_rate,
                         hop / sample_rate, n_frames)
    natural = clip_to(declared, natural)
    out, kind = render_settings(entries, channels, sample_rate, natural, n_workers, real)
    notes = [] if kind == "real" else ["rendered by the PyTorch twins (the real devices are "
                                       "not available here)"]
    return Applied(out if audio.ndim == 2 else out[0], settings_preset(meta, natural), natural,
                   kind, notes)


def render_chain_declared(entries: list[str], sample_rate: int):
    """The chain's declared parameters at ``sample_rate`` (no workers started)."""
    from ..stages.registry import make_device, parse_chain

    return tuple(p for e in parse_chain(entries) for p in make_device(e, sample_rate).params)

