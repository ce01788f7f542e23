"""Timbre transfer: auto-adjust, pitch and loudness shift, chunked long-file synthesis.

A trained model turns any f0 and loudness curve into its instrument. ``auto_adjust`` moves the
input's curves toward what the model was trained on (magenta's timbre-transfer recipe, from
the dataset statistics in the model file); :class:`ChunkedRenderer` synthesises block by
block carrying every state across chunks (GRU, oscillator phase, noise and reverb tails), so
long files run in bounded memory and the joins are inaudible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio_io import check_input_signal
from .config import check_fields
from .dsp.units import hz_to_midi
from .errors import InputError
from .stages.chain import check_amounts
from .features import advance_progress, analyse
from .melodic import harmonic_share, melody_warning
from .rack import Preset, Rack, check_preset
from .pitch import (PITCHED_CONFIDENCE, STEADY_CENTS, STEADY_MIN_CONFIDENCE, STEADY_MS,
                    VOICED_CONFIDENCE)


@dataclass(frozen=True)
class TransferOptions:
    """User controls of a transfer.

    Attributes:
        auto_adjust: octave-shift toward the model's pitch range, quantile-map loudness onto
            the model's, mute quiet frames.
        pitch_shift_semitones: added to the input's pitch (fractional allowed); auto-adjust
            then adds the whole octaves that bring the shifted melody nearest the model's
            mean pitch, so under it only the shift within an octave counts.
        loudness_shift_db: added after auto-adjust.
        quiet_db: with auto-adjust, frames more than this many dB below the input's loud
            level (95th percentile), and unpitched frames (CREPE confidence < 0.5), are muted.
        bridge_ms: an unpitched stretch at most this long between pitched frames (a legato
            note change, a bow or breath change: pitch confidence dips while the sound goes
            on) is not muted; its pitch is bridged from the frames around it.
        amounts: {stage label: live amount} of the model's chain (1 = as trained): a
            source's linear gain (``harmonic``, ``noise``), an effect's wet/dry mix
            (``reverb``: 0 = dry).
        chunk_seconds: synthesis chunk length; memory scales with it, not with the file.
        seed: seed of the noise generator.
        effects: the effects rack after the instrument: a :class:`~ddsp_synth.rack.Preset`
            or a preset dict (``{"chain": [{"device", "params"}]}``, as ``match`` writes),
            played by the PyTorch twins; None: no rack.
    """

    auto_adjust: bool = True
    pitch_shift_semitones: float = 0.0
    loudness_shift_db: float = 0.0
    quiet_db: float = 40.0
    bridge_ms: float = 80.0
    amounts: dict = field(default_factory=dict)
    chunk_seconds: float = 10.0
    seed: int = 0
    effects: object = None

    def __post_init__(self):
        check_fields(self, ranges={
            "pitch_shift_semitones": (-48.0, 48.0), "loudness_shift_db": (-60.0, 60.0),
            "quiet_db": (0.0, 200.0), "bridge_ms": (0.0, 1000.0), "chunk_seconds": (0.05, 3600.0),
            "seed": (0, 2**63 - 1)})
        check_amounts(self.amounts)
        if self.effects is not None and not isinstance(self.effects, Preset):
            if not isinstance(self.effects, dict):
                raise InputError(f"effects must be a preset (a dict or a rack.Preset), got "
                                 f"{type(self.effects).__name__}")
            object.__setattr__(self, "effects", check_preset(self.effects))
        if self.effects is not None:
            self.effects.check_twins()


def check_auto_adjust_stats(meta: dict) -> None:
    """The model's dataset statistics hold what auto-adjust needs (finite numbers), else a
    one-line ModelFileError that says to use --no-auto-adjust. Cheap: call it before any
    analysis."""
    from .model import check_stats

    stats = meta.get("dataset_stats")
    keys = ["pitch_midi_mean", "loudness_db_quantiles"]
    if isinstance(stats, dict) and stats.get("loudness_db_voiced_quantiles"):
        keys.append("loudness_db_voiced_quantiles")
    check_stats(stats, keys, ", which auto-adjust needs; use --no-auto-adjust")


class NoPitchError(InputError):
    """The input has no voiced frame to transfer."""


def interior_runs(mask: np.ndarray, max_len: int) -> np.ndarray:
    """The runs of True in ``mask`` at most ``max_len`` long with False on both sides."""
    out = np.zeros_like(mask)
    i, n = 0, len(mask)
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j < n and mask[j]:
            j += 1
        if i > 0 and j < n and j - i <= max_len:
            out[i:j] = True
        i = j
    return out


# The last frames of an unpitched stretch before a note (its attack, before CREPE is sure)
# sound at the note's pitch: at most this long.
ONSET_MS = 40.0


def steady_runs(f0_hz: np.ndarray, confidence: np.ndarray, min_frames: int) -> np.ndarray:
    """[n] bool: frames in runs of at least ``min_frames`` whose pitch moves less than
    STEADY_CENTS per frame, each with confidence >= STEADY_MIN_CONFIDENCE."""
    f0 = np.maximum(np.asarray(f0_hz, np.float64), 1e-3)
    cents = 1200.0 * np.abs(np.diff(np.log2(f0)))
    ok = np.asarray(confidence) >= STEADY_MIN_CONFIDENCE
    link = np.zeros(len(f0), bool)  # frame t continues frame t - 1
    link[1:] = (cents < STEADY_CENTS) & ok[1:] & ok[:-1]
    out = np.zeros(len(f0), bool)
    t = 0
    while t < len(f0):
        u = t + 1
        while u < len(f0) and link[u]:
            u += 1
        if u - t >= min_frames and ok[t]:
            out[t:u] = True
        t = u
    return out


def onset_frames(pitched: np.ndarray, max_len: int) -> np.ndarray:
    """[n] bool: the last ``max_len`` unpitched frames before each pitched run."""
    out = np.zeros_like(pitched)
    starts = np.where(pitched[1:] & ~pitched[:-1])[0] + 1
    for start in starts:
        t = start
        while t > 0 and not pitched[t - 1] and start - t < max_len:
            t -= 1
        out[t:start] = True
    return out


def onset_pitch(f0_hz: np.ndarray, onsets: np.ndarray, pitched: np.ndarray) -> np.ndarray:
    """``f0_hz`` with each onset frame at the pitch of the note it leads into."""
    if not onsets.any():
        return f0_hz
    out = f0_hz.copy()
    nxt = np.where(pitched, np.arange(len(f0_hz)), len(f0_hz))
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]  # the first pitched frame at or after t
    idx = np.where(onsets & (nxt < len(f0_hz)))[0]
    out[idx] = f0_hz[nxt[idx]]
    return out


def bridge_pitch(f0_hz: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """``f0_hz`` with the frames of ``gaps`` interpolated in log frequency from the frames
    around them (a note change glides instead of following the tracker's guesses)."""
    if not gaps.any():
        return f0_hz
    keep = ~gaps & (f0_hz > 0)
    idx = np.arange(len(f0_hz))
    out = f0_hz.copy()
    out[gaps] = np.exp(np.interp(idx[gaps], idx[keep], np.log(f0_hz[keep])))
    return out


def _auto_octave(f0_hz, voiced, stats, manual_semitones: float) -> int:
    """Whole octaves that bring the input, shifted by hand, to the model's mean pitch: a
    manual shift that already lands in the instrument's range gets none on top."""
    mean_midi = float(np.mean(hz_to_midi(f0_hz[voiced]))) + manual_semitones
    return int(np.round((stats["pitch_midi_mean"] - mean_midi) / 12.0))


# The quietest share of voiced frames (note ends, decays) is left out of the loudness map:
# below it an input keeps its distance in dB. Mapping those tails onto each other turned a
# soft but ordinary input note into the model's faintest decays (30-40 dB down).
LOUDNESS_MAP_TAIL = 0.05


def _mapped_loudness(loud, voiced, stats) -> np.ndarray:
    """Quantile transform of the input's loudness onto the model's, fitted on the voiced
    frames above their quietest ``LOUDNESS_MAP_TAIL`` and applied to every frame (quieter
    frames: their distance below the fitted range kept)."""
    target_q = np.asarray(stats.get("loudness_db_voiced_quantiles")
                          or stats["loudness_db_quantiles"])
    levels = np.linspace(0, 100, len(target_q))
    first = int(np.searchsorted(levels, 100 * LOUDNESS_MAP_TAIL))
    target_q, levels = target_q[first:], levels[first:]
    src_q = np.percentile(loud[voiced], levels)
    src_q = np.maximum.accumulate(src_q + np.arange(len(src_q)) * 1e-9)
    mapped = np.interp(loud, src_q, target_q)
    below = loud < src_q[0]
    mapped[below] = target_q[0] - (src_q[0] - loud[below])
    return mapped


def adjust_features(f0_hz: np.ndarray, loudness_db: np.ndarray, confidence: np.ndarray,
                    stats: dict, options: TransferOptions, frame_rate_hz: float = 100.0) -> dict:
    """Auto-adjust and shift the input's curves for a model.

    Args:
        f0_hz, loudness_db, confidence: [n_frames] input features.
        stats: the model's dataset statistics.
        frame_rate_hz: frames per second of the curves.

    Returns:
        dict with ``f0_hz`` and ``loudness_db`` [n_frames] float32 for the model; the
        ``octave_shift`` auto-adjust chose and the ``pitch_shift_semitones`` applied in all
        (octaves and the manual shift); ``voiced_fraction`` (CREPE confidence >= 0.85),
        ``muted_fraction``, ``sounding_fraction`` (frames the instrument plays: not muted
        and within ``quiet_db`` of the input's loud level, with or without auto-adjust) and
        ``bridged_fraction`` (unpitched frames kept sounding between pitched ones).
    """
    f0_hz = np.asarray(f0_hz, np.float64)
    loud = np.asarray(loudness_db, np.float64)
    confidence = np.asarray(confidence)
    voiced = confidence >= VOICED_CONFIDENCE
    if not voiced.any():
        voiced = confidence >= PITCHED_CONFIDENCE
    if not voiced.any():
        raise NoPitchError("no pitch found: no frame is voiced (CREPE confidence < 0.5 "
                           "everywhere); is the input monophonic and pitched?")
    pitched = (confidence >= PITCHED_CONFIDENCE) | steady_runs(
        f0_hz, confidence, max(2, int(round(STEADY_MS * frame_rate_hz / 1000.0))))
    onsets = onset_frames(pitched, int(round(ONSET_MS * frame_rate_hz / 1000.0)))
    f0_hz = onset_pitch(f0_hz, onsets, pitched)
    bridged = interior_runs(~pitched, int(options.bridge_ms * frame_rate_hz / 1000.0))
    f0_hz = bridge_pitch(f0_hz, bridged & ~onsets)
    bridged |= onsets
    octave_shift, muted = 0, np.zeros(len(loud), bool)
    quiet = loud < np.percentile(loud, 95) - options.quiet_db
    if options.auto_adjust:
        check_auto_adjust_stats({"dataset_stats": stats})
        octave_shift = _auto_octave(f0_hz, voiced, stats, options.pitch_shift_semitones)
        # Quiet frames, and unpitched ones (breaths, consonants: CREPE confidence < 0.5)
        # longer than a note change, would make the instrument play noise bursts between
        # notes: mute them.
        muted = quiet | (~pitched & ~bridged)
        silence_db = float(np.min(stats["loudness_db_quantiles"])) - 20.0
        loud = np.where(muted, np.minimum(_mapped_loudness(loud, voiced, stats), silence_db),
                        _mapped_loudness(loud, voiced, stats))
    shift = 12.0 * octave_shift + options.pitch_shift_semitones
    f0_hz = f0_hz * 2.0 ** (shift / 12.0)
    loud = loud + options.loudness_shift_db
    return {"f0_hz": f0_hz.astype(np.float32), "loudness_db": loud.astype(np.float32),
            "octave_shift": octave_shift, "pitch_shift_semitones": shift,
            "voiced_fraction": float(voiced.mean()), "muted_fraction": float(muted.mean()),
            "sounding_fraction": float((~muted & ~quiet).mean()),
            "bridged_fraction": float(bridged.mean())}


class ChunkedRenderer:
    """Renders f0/loudness frames chunk by chunk with all state carried across chunks: the
    decoder's GRU state and the chain's (the pending last frame, oscillator phase, noise and
    reverb tails, effect memories). Output equals one whole-signal render up to float
    rounding."""

    def __init__(self, model, options: TransferOptions = TransferOptions()):
        self.model = model
        self.amounts = check_amounts(options.amounts, model.synth.labels)
        self.gen = torch.Generator().manual_seed(options.seed)
        self.gru_state = None
        self.chain_state = model.synth.initial_state(1)
        self.rack = None  # the effects rack, its state carried from chunk to chunk
        if options.effects is not None and not options.effects.empty:
            self.rack = Rack(options.effects, model.config.synth.sample_rate).stream()

    @torch.no_grad()
    def process(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor,
                final: bool = False) -> torch.Tensor:
        """Parameters for [1, n, 1] frames -> the audio that is complete so far [1, m]; with
        ``final`` the signal ends with these frames (the last one is held)."""
        params, self.gru_state = self.model.controls(f0_hz, loudness_db, state=self.gru_state)
        audio, self.chain_state = self.model.synth(None, params, self.chain_state, final=final,
                                                   amounts=self.amounts, generator=self.gen)
        if final:
            self.model.synth.end_state(self.chain_state)
        if self.rack is not None:
            audio = torch.from_numpy(self.rack.process(audio[0].numpy()))[None]
        return audio


def render(model, f0_hz: np.ndarray, loudness_db: np.ndarray,
           options: TransferOptions = TransferOptions(), progress=None) -> np.ndarray:
    """Synthesize [n_frames] f0/loudness in chunks: [n_frames * hop] float32."""
    if model.encoder is not None:
        raise InputError("models with a z encoder need the input audio; use the model directly")
    hop = model.config.synth.hop
    chunk = max(2, int(options.chunk_seconds * model.config.synth.frame_rate_hz))
    renderer = ChunkedRenderer(model, options)
    f0 = torch.as_tensor(np.asarray(f0_hz, np.float32))[None, :, None]
    ld = torch.as_tensor(np.asarray(loudness_db, np.float32))[None, :, None]
    out = []
    for t0 in range(0, f0.shape[1], chunk):
        final = t0 + chunk >= f0.shape[1]
        out.append(renderer.process(f0[:, t0 : t0 + chunk], ld[:, t0 : t0 + chunk],
                                    final)[0].numpy())
        if progress is not None:
            advance_progress(progress, min(chunk, f0.shape[1] - t0) * hop
                             / model.config.synth.sample_rate)
    return np.concatenate(out).astype(np.float32)


def transfer_features(model, features: dict, options: TransferOptions = TransferOptions(),
                      stats: dict | None = None, progress=None) -> tuple[np.ndarray, dict]:
    """Adjust input features for ``model`` and render them.

    Args:
        features: ``f0_hz``, ``loudness_db``, ``confidence`` [n_frames] of the input.
        stats: the model's dataset statistics (needed for auto-adjust).

    Returns:
        audio [n_frames * hop] float32, and the adjusted curves and adjustment info.
    """
    if not np.any(np.asarray(features["loudness_db"]) > -100.0):
        raise InputError("the input is silent")
    adjusted = adjust_features(features["f0_hz"], features["loudness_db"],
                               features["confidence"], stats or {}, options,
                               model.config.synth.frame_rate_hz)
    audio = render(model, adjusted["f0_hz"], adjusted["loudness_db"], options, progress)
    return audio, adjusted



# What silence_warning tells people to do, in the command line's words; a front end with
# controls of its own (the app) passes its words for the same four actions.
CLI_ADVICE = {"quieter": "raise --quiet-db (the quiet threshold)",
              "auto_off": "use --no-auto-adjust", "auto_on": "drop --no-auto-adjust",
              "louder": "raise --loudness-shift"}


# The share of a transfer's time its analysis takes (the rest: the render and the melody
# check), by which one progress bar over the input's seconds moves (measured 2026-12-07:
# 0.88-0.90 on three 60 s files, two threads)
ANALYSIS_SHARE = 0.89


class _Share:
    """A part of a progress bar: ``update(n)`` moves ``bar`` by ``share * n``."""

    def __init__(self, bar, share: float):
        self.bar, self.share = bar, share

    def update(self, n: float) -> None:
        advance_progress(self.bar, self.share * n)


def _share(bar, share: float):
    return None if bar is None else _Share(bar, share)


def transfer_audio(model, meta: dict, audio: np.ndarray, options: TransferOptions = TransferOptions(),
                   progress=None, cache: bool = True, pitch_model: str | None = None,
                   advice: dict = CLI_ADVICE) -> tuple[np.ndarray, dict]:
    """Transfer a signal at the model's sample rate: (output [n_samples], info).

    ``info`` holds the input features and the adjusted curves (for plots), the adjustment
    summary and, when the output is (almost) silent, a ``warning`` that says which setting
    to change. ``pitch_model`` overrides the model's CREPE size for the input (``"full"``:
    slower, for quality); ``advice`` words the warning's advice (:data:`CLI_ADVICE`). Raises
    ValueError (silent input) or NoPitchError.
    """
    audio = check_input_signal(audio)
    if options.auto_adjust:
        check_auto_adjust_stats(meta)
    fc = model.config.features
    if pitch_model is not None and pitch_model != fc.crepe_model:
        import dataclasses

        fc = dataclasses.replace(fc, crepe_model=pitch_model)
    features = analyse(audio, fc, _share(progress, ANALYSIS_SHARE), cache=cache)
    out, adjusted = transfer_features(model, features, options, meta.get("dataset_stats"),
                                      _share(progress, 1.0 - ANALYSIS_SHARE))
    out = out[: len(audio)]
    adjusted["harmonic_share"] = harmonic_share(audio, features["f0_hz"],
                                                features["confidence"], features["loudness_db"],
                                                fc.sample_rate, fc.hop)
    warning = (silence_warning(out, adjusted, options, advice)
               or melody_warning(adjusted["harmonic_share"]))
    return out, {"input": features, "adjusted": adjusted, "warning": warning}


# An output whose peak is this far below full scale is reported as (almost) silent.
SILENT_OUTPUT_DB = -50.0
def shift_summary(adjusted: dict, options: TransferOptions) -> str:
    """What was done to the pitch, for people: the total and where it came from."""
    parts = []
    if options.auto_adjust:
        parts.append(f"octave shift {adjusted['octave_shift']:+d} by auto-adjust")
    if options.pitch_shift_semitones:
        parts.append(f"{options.pitch_shift_semitones:+g} asked")
    how = f" ({', '.join(parts)})" if parts else ""
    return f"pitch shift {adjusted['pitch_shift_semitones']:+g} semitones{how}"


def silence_warning(out: np.ndarray, adjusted: dict, options: TransferOptions,
                    advice: dict = CLI_ADVICE) -> str | None:
    """Why an (almost) silent output is silent and what to change (``advice``: the words
    for each action), or None."""
    peak_db = 20.0 * np.log10(max(float(np.abs(out).max(initial=0.0)), 1e-12))
    if peak_db > SILENT_OUTPUT_DB:
        return None
    amounts = options.amounts or {}
    if amounts and all(amounts.get(s, 1.0) == 0 for s in ("harmonic", "noise")):
        return (f"the output is almost silent (peak {peak_db:.0f} dBFS): the harmonic and "
                "noise sources are at amount 0")
    if options.auto_adjust and adjusted["muted_fraction"] > 0.5:
        return (f"the output is almost silent (peak {peak_db:.0f} dBFS): auto-adjust muted "
                f"{adjusted['muted_fraction']:.0%} of the frames as unpitched or more than "
                f"{options.quiet_db:g} dB below the input's loud level; {advice['quieter']} "
                f"or {advice['auto_off']}")
    todo = advice["louder"] if options.auto_adjust else \
        f"{advice['auto_on']} or {advice['louder']}"
    return (f"the output is almost silent (peak {peak_db:.0f} dBFS): the input is too quiet "
            f"for this model; {todo}")


def transfer(audio, model="violin", sample_rate: int | None = None,
             options: TransferOptions = TransferOptions(), cache: bool = True,
             pitch_model: str | None = None) -> tuple[np.ndarray, int]:
    """Play a recording with a trained instrument: the library's one-call timbre transfer.

    Args:
        audio: a path to an audio file (any format, rate, channels), or samples
            ([n_samples] or [n_samples, channels]) at ``sample_rate``.
        model: a shipped model's name, a model folder, or a model from
            :func:`~ddsp_synth.model.load_model` (its dataset statistics drive auto-adjust).
        sample_rate: Hz of ``audio`` when it is samples.
        options: auto-adjust, shifts, gains (see :class:`TransferOptions`).

    Returns:
        the output [n_samples] float32 (scaled down only if it would clip) and its sample
        rate (the model's).
    """
    from .audio_io import check_sample_rate, limit_peak, load_audio, resample_audio
    from .model import DDSPModel, load_model

    if isinstance(model, (str, Path)):
        model, meta = load_model(model)
    elif not isinstance(model, DDSPModel):
        raise InputError(f"model must be a shipped model's name, a model folder or a loaded "
                         f"model, got {type(model).__name__}")
    else:
        meta = getattr(model, "meta", {})
    sr = model.config.synth.sample_rate
    if isinstance(audio, (str, Path)):
        samples = load_audio(audio, sr)
    else:
        sample_rate = check_sample_rate(sample_rate)
        samples = np.asarray(audio, np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        samples = resample_audio(samples, int(sample_rate), sr)
    out, _ = transfer_audio(model, meta, samples, options, cache=cache, pitch_model=pitch_model)
    return limit_peak(out), sr
