"""Quality metrics of a model's resynthesis: spectral loss, loudness and pitch errors, speed.

Definitions (also used for validation during training and for the model cards):

* ``spectral_loss``: the multi-resolution STFT loss of the model's config, output vs input.
* ``loudness_l1_db``: mean |loudness(output) - loudness(input)| in dB over frames where the
  input is above ``-70 dB`` (quieter frames are silence; their level says nothing).
* ``f0_l1_cents``: CREPE (the model's pitch model unless told otherwise) on the output against
  the input's f0, mean absolute difference in cents over frames where the input is voiced
  with confidence >= 0.85; ``f0_outlier_ratio``: share of those frames off by > 50 cents.
  For audio files (unseen performances), input and output are both read by the tracker
  without its repairs after the harmonic check (:func:`ddsp_synth.pitch.decode_f0`): the
  model hears the repaired analysis, but the repairs assume an acoustic attack and would read
  a wrong pitch a model really plays at a note's start as right, so the ruler goes without
  them on both sides. A prepared dataset's frames (held-out part, validation) are read as
  they were prepared.
* ``rtf``: synthesis wall time / audio duration (features excluded).
* ``midi_truth`` (audio files rendered with MIDI sidecars, ``STEM.f0.csv`` and
  ``STEM.notes.csv``): the input's and the output's f0 (the model's tracker) against the MIDI
  that made the performance, per band of the true pitch (:func:`truth_metrics`, pooled over
  files): the input's figure is the measurement floor of the output's.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from .audio_io import AudioError, header_seconds
from .dsp.interpolation import n_frames_for
from .errors import UserError, one_line
from .features import FeatureConfig, compute_f0, compute_loudness
from .losses import multi_resolution_stft_loss
from .pitch import VOICED_CONFIDENCE

LOUDNESS_FLOOR_DB = -70.0
OUTLIER_CENTS = 50.0


def pitch_errors_cents(f0_out: np.ndarray, f0_in: np.ndarray, conf_in: np.ndarray) -> np.ndarray:
    """|cents| between output and input f0 on the input's confidently voiced frames."""
    voiced = conf_in >= VOICED_CONFIDENCE
    return np.abs(1200.0 * np.log2(np.maximum(f0_out[voiced], 1e-3) /
                                   np.maximum(f0_in[voiced], 1e-3)))


def loudness_errors_db(loud_out: np.ndarray, loud_in: np.ndarray) -> np.ndarray:
    active = loud_in > LOUDNESS_FLOOR_DB
    return np.abs(loud_out[active] - loud_in[active])


def summarize(pitch_err: np.ndarray, loud_err: np.ndarray, spectral: list[float],
              synth_s: float, audio_s: float) -> dict:
    return {
        "spectral_loss": float(np.mean(spectral)) if spectral else float("nan"),
        "loudness_l1_db": float(np.mean(loud_err)) if len(loud_err) else float("nan"),
        "f0_l1_cents": float(np.mean(pitch_err)) if len(pitch_err) else float("nan"),
        "f0_median_cents": float(np.median(pitch_err)) if len(pitch_err) else float("nan"),
        "f0_outlier_ratio": float(np.mean(pitch_err > OUTLIER_CENTS)) if len(pitch_err) else float("nan"),
        "voiced_frames": int(len(pitch_err)),
        "rtf": synth_s / max(audio_s, 1e-9),
        "seconds": audio_s,
    }


def evaluate_batches(model, batches, pitch_model: str | None = None, seed: int = 0,
                     outputs: list | None = None) -> dict:
    """Resynthesize batches of examples and measure them.

    Args:
        model: a :class:`ddsp_synth.model.DDSPModel`.
        batches: iterable of dicts with ``audio`` [B, N], ``f0_hz``, ``confidence``,
            ``loudness_db`` [B, T] (as from :class:`ddsp_synth.data.DDSPDataset`).
        pitch_model: CREPE model for measuring the output (default: the model's own).
        outputs: if a list, the output audio [N] arrays are appended to it.
    """
    cfg = model.config
    fc: FeatureConfig = cfg.features
    if pitch_model is not None:
        fc = FeatureConfig(**{**fc.__dict__, "crepe_model": pitch_model})
    gen = torch.Generator().manual_seed(seed)
    pitch_err, loud_err, spectral = [], [], []
    synth_s = audio_s = 0.0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in batches:
            audio = batch["audio"].to(device)
            t = time.perf_counter()
            out = model(batch["f0_hz"][..., None].to(device),
                        batch["loudness_db"][..., None].to(device), audio=audio, generator=gen
                        if device.type == "cpu" else None)
            synth_s += time.perf_counter() - t
            audio_s += out.numel() / cfg.synth.sample_rate
            spectral.append(float(multi_resolution_stft_loss(out, audio, cfg.loss)))
            out_np = out.cpu().numpy()
            for i in range(out_np.shape[0]):
                f0_out, _ = compute_f0(out_np[i], fc)  # the ruler of the prepared input
                loud_out = compute_loudness(out_np[i], fc)
                # Loudness of the input audio itself, on the same grid and settings.
                loud_in = compute_loudness(batch["audio"][i].numpy(), fc)
                pitch_err.append(pitch_errors_cents(f0_out, batch["f0_hz"][i].numpy(),
                                                    batch["confidence"][i].numpy()))
                loud_err.append(loudness_errors_db(loud_out, loud_in))
                if outputs is not None:
                    outputs.append(out_np[i])
    model.train(was_training)
    return summarize(np.concatenate(pitch_err) if pitch_err else np.zeros(0),
                     np.concatenate(loud_err) if loud_err else np.zeros(0),
                     spectral, synth_s, audio_s)


# Spectral loss of a long recording: the mean over segments of this length.
SEGMENT_SECONDS = 10.0


def evaluate_audio(model, audio: np.ndarray, pitch_model: str | None = None,
                   seed: int = 0, progress=None) -> tuple[tuple, np.ndarray, dict]:
    """Resynthesize one recording of any length in bounded memory and measure it.

    ``progress`` (a tqdm bar, or None) advances by the seconds of audio each analysis pass
    has read: :func:`analysis_passes` of them.

    Features are analysed block by block, the model renders chunk by chunk with its state
    carried (:func:`ddsp_synth.transfer.render`, no adjustment), and the output is analysed
    block by block again; the spectral loss is averaged over 10 s segments.

    Returns:
        (pitch errors, loudness errors, spectral losses, synthesis s, audio s) for
        :func:`summarize`, the output [n_samples], and the f0 of input and output
        ``{"input": [n_frames], "output": [n_frames]}``.
    """
    from .features import features_in_blocks
    from .transfer import TransferOptions, render

    cfg = model.config
    fc = cfg.features if pitch_model is None else FeatureConfig(
        **{**cfg.features.__dict__, "crepe_model": pitch_model})
    # the model hears the repaired analysis; input and output are measured with one ruler,
    # the tracker without its repairs (see the docstring): one CREPE pass gives both
    feats = features_in_blocks(audio, cfg.features, progress=progress,
                               as_read=fc == cfg.features)
    t = time.perf_counter()
    out = render(model, feats["f0_hz"], feats["loudness_db"],
                 TransferOptions(auto_adjust=False, seed=seed))[: len(audio)]
    synth_s = time.perf_counter() - t
    heard = ({"f0_hz": feats["f0_hz_as_read"], "confidence": feats["confidence"]}
             if "f0_hz_as_read" in feats else
             features_in_blocks(audio, fc, progress=progress, repairs=False))
    measured = features_in_blocks(out, fc, progress=progress, repairs=False)
    seg = int(SEGMENT_SECONDS * cfg.synth.sample_rate)
    spectral, weights = [], []
    with torch.no_grad():
        for i in range(0, len(audio), seg):
            a, o = audio[i : i + seg], out[i : i + seg]
            spectral.append(float(multi_resolution_stft_loss(
                torch.from_numpy(np.ascontiguousarray(o))[None],
                torch.from_numpy(np.ascontiguousarray(a))[None], cfg.loss)))
            weights.append(len(a))
    spectral = [float(np.average(spectral, weights=weights))] if spectral else []
    return (pitch_errors_cents(measured["f0_hz"], heard["f0_hz"], heard["confidence"]),
            loudness_errors_db(measured["loudness_db"], feats["loudness_db"]),
            spectral, synth_s, len(audio) / cfg.synth.sample_rate), out, \
        {"input": heard["f0_hz"], "output": measured["f0_hz"]}


def audio_as_batch(audio: np.ndarray, model, features: dict) -> dict:
    """A whole signal as a one-item batch, padded to whole frames."""
    hop = model.config.synth.hop
    n_frames = n_frames_for(len(audio), hop)
    padded = np.zeros(n_frames * hop, np.float32)
    padded[: len(audio)] = audio
    return {"audio": torch.from_numpy(padded)[None],
            **{k: torch.from_numpy(np.asarray(features[k], np.float32))[None]
               for k in ("f0_hz", "confidence", "loudness_db")}}


def analysis_passes(model, pitch_model: str | None) -> int:
    """Analysis passes :func:`evaluate_audio` makes over each recording's length: the input
    (the model's analysis and the ruler's at once) and the output, and one more for the
    input when the ruler is another CREPE model."""
    same = pitch_model is None or pitch_model == model.config.features.crepe_model
    return 2 if same else 3


class NothingMeasured(AudioError):
    """No audio file of the source could be measured (each one was reported to
    ``on_error``)."""


def evaluate_source(model, source: str | Path, split: str = "val", max_examples: int | None = None,
                    pitch_model: str | None = None, keep_outputs: bool = False,
                    batch_size: int = 8, progress: bool = False, on_error=None,
                    seed: int = 0) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """Resynthesize and measure a prepared dataset's ``split`` or audio files.

    Args:
        source: a prepared dataset folder (its examples are used), an audio file or a folder
            of audio files (each resynthesized whole from its own features).
        keep_outputs: also return the resynthesized audio.
        progress: a bar on stderr over the seconds of audio analysed (audio files; it shows
            after a second, so a quick run or an early error prints nothing else).
        on_error: ``on_error(path, err)`` for an audio file that cannot be measured (a
            :class:`~ddsp_synth.errors.UserError`: unreadable, empty, silent): the file is
            left out, listed in the metrics' ``failed`` and the others are measured. Without
            it, the first such file raises its error.
        seed: of the noise generator (training's validation uses the run's seed, its first
            ``val_examples`` examples and its batch size).

    Returns:
        the metrics (see the module docstring, plus ``examples``, the number measured, and
        ``failed``, ``[{"path", "reason"}]``, when some audio files failed) and a list of
        (name, output audio [n_samples]) — empty unless ``keep_outputs``.

    Raises:
        NothingMeasured: with ``on_error``, when every audio file failed.
    """
    from .audio_io import find_audio_files
    from .data import DDSPDataset, collate

    source = Path(source)
    failed = []
    if (source / "manifest.json").exists():
        ds = DDSPDataset(source, split)
        if not len(ds):
            raise AudioError(f"{source}: no {split} examples")
        n = len(ds) if max_examples is None else min(len(ds), max_examples)
        batches = (collate([ds[j] for j in range(i, min(n, i + batch_size))])
                   for i in range(0, n, batch_size))
        names, outputs = [f"{split}-{j:04d}" for j in range(n)], []
        metrics = evaluate_batches(model, batches, pitch_model=pitch_model, seed=seed,
                                   outputs=outputs if keep_outputs else None)
    else:
        files = find_audio_files([source])[:max_examples]

        def failure(path: Path, err: UserError) -> None:
            if on_error is None:
                raise err
            failed.append({"path": str(path), "reason": one_line(err).removeprefix(f"{path}: ")})
            on_error(path, err)

        evaluate = _evaluate_files if model.encoder is None else _evaluate_files_whole
        metrics, names, outputs = evaluate(model, files, pitch_model, keep_outputs, progress,
                                           failure, seed)
        if not names:
            raise NothingMeasured(f"{source}: none of its {len(files)} audio files could be "
                                  "measured")
    if not metrics["voiced_frames"] or not np.isfinite(metrics["loudness_l1_db"]):
        raise AudioError(f"{source}: nothing to measure (no voiced frames above "
                         f"{LOUDNESS_FLOOR_DB:g} dB: is it silent or unpitched?)")
    metrics["examples"] = len(names)
    if failed:
        metrics["failed"] = failed
    return metrics, list(zip(names, outputs)) if keep_outputs else []


def _load_measurable(path: Path, sample_rate: int) -> np.ndarray:
    """A recording [n_samples] at ``sample_rate``; AudioError (naming the file) when it
    cannot be read or holds nothing to measure (silence: said before any analysis)."""
    from .audio_io import check_input_signal, load_audio

    audio = load_audio(path, sample_rate)
    try:
        check_input_signal(audio)
    except ValueError as err:
        raise AudioError(f"{path}: {err}; nothing to measure") from None
    return audio


def _evaluate_files(model, files: list[Path], pitch_model: str | None, keep_outputs: bool,
                    progress: bool, failure, seed: int = 0
                    ) -> tuple[dict, list[str], list[np.ndarray]]:
    """Each file resynthesized whole in bounded memory (:func:`evaluate_audio`), measures
    pooled; a file that cannot be measured goes to ``failure(path, err)``. Returns the
    metrics, the names of the files measured and their outputs (if ``keep_outputs``)."""
    from tqdm import tqdm

    parts, names, outputs, truth = [], [], [], {"input": [], "output": []}
    passes = analysis_passes(model, pitch_model)
    bar = tqdm(total=round(passes * sum(header_seconds(path) for path in files), 1),
               disable=not progress, desc="eval", unit="s audio", delay=1.0, leave=False)
    with bar:  # closed (and its line cleared) on the way out, error or not
        for path in files:
            try:
                audio = _load_measurable(path, model.config.synth.sample_rate)
                part, out, f0s = evaluate_audio(model, audio, pitch_model, seed, progress=bar)
            except UserError as err:
                with _above(bar):
                    failure(path, err)
                bar.update(passes * header_seconds(path))  # what it would have taken
                continue
            parts.append(part)
            names.append(path.stem)
            ref = midi_truth(path, len(f0s["input"]), model.config.features.frame_rate_hz)
            for side in truth if ref is not None else ():
                truth[side].append(truth_metrics(f0s[side], *ref))
            if keep_outputs:
                outputs.append(out)
    if not parts:
        return {}, [], []
    metrics = summarize(*(np.concatenate([p[i] for p in parts]) for i in (0, 1)),
                        [s for p in parts for s in p[2]], sum(p[3] for p in parts),
                        sum(p[4] for p in parts))
    if truth["input"]:
        metrics["midi_truth"] = {side: pool_truth(rows) for side, rows in truth.items()}
    return metrics, names, outputs


@contextlib.contextmanager
def _above(bar):
    """What is printed within the block goes above ``bar`` where it shows (a delayed bar
    that has not shown yet stays hidden: tqdm.write would show it). tqdm sets
    ``last_print_t`` past ``start_t`` when it first draws the bar; a disabled bar has
    neither."""
    shown = getattr(bar, "last_print_t", 0.0) > getattr(bar, "start_t", 0.0)
    if shown:
        bar.clear()
    try:
        yield
    finally:
        if shown:
            bar.refresh()


def _evaluate_files_whole(model, files: list[Path], pitch_model: str | None,
                          keep_outputs: bool, progress: bool, failure, seed: int = 0
                          ) -> tuple[dict, list[str], list[np.ndarray]]:
    """As :func:`_evaluate_files`, for a model with a z encoder, which needs each whole
    signal at once (``progress`` is not shown)."""
    from .features import compute_features

    batches, names, outputs = [], [], []
    for path in files:
        try:
            audio = _load_measurable(path, model.config.synth.sample_rate)
            features = compute_features(audio, model.config.features)
        except UserError as err:
            failure(path, err)
            continue
        batches.append(audio_as_batch(audio, model, features))
        names.append(path.stem)
    if not batches:
        return {}, [], []
    metrics = evaluate_batches(model, batches, pitch_model=pitch_model, seed=seed,
                               outputs=outputs if keep_outputs else None)
    return metrics, names, outputs


# --------------------------------------------------------------------------------------
# Pitch against the MIDI that made a performance
# --------------------------------------------------------------------------------------
# Note edges left out of MIDI-truth measures: the attack (a tracker needs a window of the new
# note) and the last moments before the note-off (the release has already begun).
TRUTH_SKIP_ONSET_S = 0.05
TRUTH_SKIP_OFFSET_S = 0.03
# Pitch bands of the MIDI-truth tables (Hz): [lo, hi).
TRUTH_BANDS = {"all": (0.0, np.inf), "below_100": (0.0, 100.0), "100_400": (100.0, 400.0),
               "above_400": (400.0, np.inf)}
# Reading at these multiples of the true pitch (within 50 cents) counts as a harmonic error.
TRUTH_RATIOS = {"x2": 2.0, "x3": 3.0, "half": 0.5}


def midi_truth(audio_path: str | Path, n_frames: int,
               frame_rate_hz: float = 100.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The generator's reference pitch of a render, and the frames to score.

    Reads the sidecars ``STEM.f0.csv`` (``time_s,f0_hz,voiced``: MIDI pitch + bend) and
    ``STEM.notes.csv`` (``start_s,end_s,midi_pitch,...``) beside ``audio_path``.

    Returns:
        f0_true_hz: [n_frames] (0 outside notes), and keep: [n_frames] bool, frames inside a
        note with its first 50 ms and last 30 ms left out; None when there are no sidecars.
    """
    stem = Path(audio_path).with_suffix("")
    f0_csv, notes_csv = Path(f"{stem}.f0.csv"), Path(f"{stem}.notes.csv")
    if not (f0_csv.exists() and notes_csv.exists()):
        return None
    ref = np.loadtxt(f0_csv, delimiter=",", skiprows=1, ndmin=2)
    notes = np.loadtxt(notes_csv, delimiter=",", skiprows=1, usecols=(0, 1), ndmin=2)
    t = np.arange(n_frames) / frame_rate_hz
    idx = np.round(t / np.median(np.diff(ref[:, 0]))).astype(np.int64)
    inside = idx < len(ref)
    f0_true = np.where(inside, ref[np.minimum(idx, len(ref) - 1), 1], 0.0)
    keep = np.zeros(n_frames, bool)
    for start, end in notes:
        keep |= (t >= start + TRUTH_SKIP_ONSET_S) & (t <= end - TRUTH_SKIP_OFFSET_S)
    return f0_true, keep & (f0_true > 0)


def truth_metrics(f0_hz: np.ndarray, f0_true_hz: np.ndarray, keep: np.ndarray) -> dict:
    """Pitch against MIDI truth, per band of the true pitch.

    Returns:
        ``{band: {"frames", "off_50c" (share > 50 cents off), "x2", "x3", "half" (shares at
        those multiples of the true pitch), "median_cents"}}`` for the bands of
        :data:`TRUTH_BANDS` that hold frames (shares in [0, 1]).
    """
    true = np.asarray(f0_true_hz, np.float64)[keep]
    err = 1200.0 * np.log2(np.maximum(np.asarray(f0_hz, np.float64)[keep], 1e-3) / true)
    out = {}
    for band, (lo, hi) in TRUTH_BANDS.items():
        sel = (true >= lo) & (true < hi)
        if not sel.any():
            continue
        e = err[sel]
        row = {"frames": int(sel.sum()), "off_50c": float(np.mean(np.abs(e) > OUTLIER_CENTS))}
        for name, ratio in TRUTH_RATIOS.items():
            row[name] = float(np.mean(np.abs(e - 1200.0 * np.log2(ratio)) < OUTLIER_CENTS))
        row["median_cents"] = float(np.median(np.abs(e)))
        out[band] = row
    return out


def pool_truth(rows: list[dict]) -> dict:
    """:func:`truth_metrics` of several files pooled per band (shares weighted by frames;
    the median is the frames-weighted mean of the files' medians)."""
    out = {}
    for band in TRUTH_BANDS:
        parts = [r[band] for r in rows if band in r]
        n = sum(p["frames"] for p in parts)
        if n:
            out[band] = {"frames": n, **{k: sum(p[k] * p["frames"] for p in parts) / n
                                         for k in ("off_50c", *TRUTH_RATIOS, "median_cents")}}
    return out
