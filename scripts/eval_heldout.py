"""Held-out figures of the shipped models on unseen performances, and why the outliers happen.

    python scripts/render_heldout.py          # the renders (data/heldout/, data/heldout_extra/)
    python scripts/eval_heldout.py            # five models, CREPE tiny and full on the output
    python scripts/eval_heldout.py --pitch-models tiny --names cello          # quicker
    python scripts/eval_heldout.py --sets heldout heldout_extra --pitch-models tiny \
        --ir-cuts-ms 200 --minphase-ms --calibrate-gain                    # 15 performances

For every shipped model NAME and each of its held-out files ``data/SET/NAME_SEED.flac`` this
measures exactly what ``ddsp-synth eval models/NAME data/SET/NAME_SEED.flac [--pitch-model
full]`` reports (features of the input by the model's CREPE, the whole file resynthesized by
the model, CREPE on the output; :mod:`ddsp_synth.evaluate`'s definitions), checks that its own
per-frame arrays reproduce that figure, and adds per-frame diagnostics:

* the input's f0 by CREPE full, the generator's reference f0 (``.f0.csv``, MIDI pitch + bend)
  and note boundaries (``.notes.csv``);
* variants of the synthesis: ``render_mix1`` / ``render_mix0`` (``transfer.render`` from the
  input features, learned reverb as trained / off), ``ir_<T>ms`` (the model with its learned
  impulse response cut after T ms, through the eval path) and ``minphase_<T>ms`` (the eval's dry
  output through a smoothed minimum-phase version of the response, T ms long);
* every outlier frame (|error| > 50 cents) classified by cause (:func:`classify_outliers`), the
  share of each cause, and the f0 L1 with each fixable cause's frames removed;
* where the loudness error comes from (input level, position relative to the notes), and with
  ``--calibrate-gain`` the loudness L1 after a level correction measured on each model's
  training data.

Per-frame arrays are cached in ``data/SET/eval/NAME_SEED.npz`` after every stage, so an
interrupted run continues where it stopped (``--force`` recomputes). The report goes to
``--out`` (default ``data/heldout/eval``): ``heldout_eval[_SETS].json`` and ``.md``.
CREPE full costs about 5 s per second of audio on one core (three passes per file with the
default ``--full-stages``: output, input, output without reverb): about 15 minutes per 60 s
file on a quiet core.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.signal
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # render_heldout
from ddsp_synth import evaluate  # noqa: E402
from ddsp_synth.audio_io import atomic_write_bytes, load_audio  # noqa: E402
from ddsp_synth.features import FeatureConfig, compute_f0, compute_features, compute_loudness  # noqa: E402
from ddsp_synth.model import load_model  # noqa: E402
from ddsp_synth.transfer import TransferOptions, render  # noqa: E402
from render_heldout import RENDERS, SHIPPED  # noqa: E402

OUTLIER_CENTS = evaluate.OUTLIER_CENTS
VOICED = evaluate.VOICED_CONFIDENCE
LOUD_FLOOR_DB = evaluate.LOUDNESS_FLOOR_DB
#: Truncation points of the learned impulse response tried without training (ms).
IR_CUTS_MS = (0, 10, 20, 50, 100, 200, 300, 500)
#: Raised-cosine fade at a truncation point, so the cut adds no click of its own.
IR_FADE_MS = 2.0
#: Lengths of the cepstrally smoothed minimum-phase versions of the learned response (ms).
#: The learned response's broad spectral shape (the instrument body the dry training data
#: asks for) is kept, its narrow resonances (what rings) are smoothed away.
MINPHASE_MS = (20, 50)
#: FFT size of the cepstral smoothing (a power of two well above the response length).
CEPSTRUM_N_FFT = 1 << 16
#: A frame counts as "at a note change" when a note boundary is within this many ms.
BOUNDARY_MS = 60.0
#: Frequency ratios output/input treated as harmonic confusions (octaves, twelfths, fifths).
HARMONIC_RATIOS = (2.0, 0.5, 3.0, 1.0 / 3.0, 1.5, 2.0 / 3.0, 4.0, 0.25)
LEVEL_BINS_DB = (-70, -60, -50, -40, -30, -20, 0)
ONSET_PROFILE_FRAMES = (-5, 15)
TRAIN_DATA = ROOT.parent / "shared" / "data" / "train"
#: Seconds of the training file used to calibrate a model's level (training data only).
CALIBRATION_S = 60.0


def cents(a_hz: np.ndarray, b_hz: np.ndarray) -> np.ndarray:
    """Signed cents of ``a`` relative to ``b`` (elementwise, both floored at 1 mHz)."""
    return 1200.0 * np.log2(np.maximum(a_hz, 1e-3) / np.maximum(b_hz, 1e-3))


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)


# ----------------------------------------------------------------------------- model access
def reverb_module(model) -> torch.nn.Module:
    """The model's learned reverb (found by class name, so a restructured chain still works)."""
    for mod in model.modules():
        if type(mod).__name__ == "Reverb":
            return mod
    raise ValueError("model has no Reverb module")


def learned_ir(model) -> np.ndarray:
    """The full learned impulse response, direct path included: [ir_samples] float64."""
    rev = reverb_module(model)
    with torch.no_grad():
        ir = rev.impulse_response()
    return ir[0].detach().double().numpy()


def ir_summary(ir: np.ndarray, sample_rate: int) -> dict:
    """Energy and decay of a learned response (tap 0 = direct path, the rest = tail).

    Returns: tail energy re the direct path (dB), the times the Schroeder energy-decay curve
    of the tail falls 10/20/30 dB (ms), T60 extrapolated from its -5..-25 dB slope (ms), the
    tail energy in time bands (dB re the whole tail) and the magnitude response range (dB).
    """
    tail = ir.copy()
    tail[0] = 0.0
    e = tail**2
    total = float(e.sum())
    edc = np.cumsum(e[::-1])[::-1]
    edc_db = 10.0 * np.log10(edc / edc[0] + 1e-30)

    def fall_ms(db: float) -> float:
        return float(np.argmax(edc_db <= -db) / sample_rate * 1000.0)

    i5, i25 = np.argmax(edc_db <= -5.0), np.argmax(edc_db <= -25.0)
    t60_ms = 60.0 / (20.0 / ((i25 - i5) / sample_rate)) * 1000.0 if i25 > i5 else float("nan")
    bands = {}
    for a, b in ((0, 5), (5, 20), (20, 50), (50, 200), (200, 1000)):
        seg = e[int(a * sample_rate / 1000): int(b * sample_rate / 1000)].sum()
        bands[f"{a}-{b}ms_db"] = float(10.0 * np.log10(seg / total + 1e-30))
    mag_db = 20.0 * np.log10(np.abs(np.fft.rfft(ir, sample_rate)) + 1e-12)
    return {"tail_re_direct_db": float(10.0 * np.log10(total)), "edc_10db_ms": fall_ms(10),
            "edc_20db_ms": fall_ms(20), "edc_30db_ms": fall_ms(30), "t60_ms": t60_ms,
            "tail_energy_bands": bands, "response_min_db": float(mag_db.min()),
            "response_max_db": float(mag_db.max())}


def truncated_model(model, cut_ms: float):
    """A copy of ``model`` whose learned reverb tail ends at ``cut_ms`` (raised-cosine fade)."""
    m = copy.deepcopy(model)
    rev = reverb_module(m)
    if not hasattr(rev, "tail"):
        raise ValueError("only a 'free' reverb can be truncated")
    sr = rev.sample_rate
    n = int(round(cut_ms * sr / 1000.0))
    fade = int(round(IR_FADE_MS * sr / 1000.0))
    with torch.no_grad():
        w = torch.zeros(rev.tail.shape[1])
        if n > 0:
            w[:n] = 1.0
            k = min(fade, n)
            w[n - k: n] = 0.5 * (1.0 + torch.cos(torch.linspace(0, np.pi, k)))
        rev.tail.mul_(w)
    return m


def minimum_phase_ir(ir: np.ndarray, length: int, n_fft: int = CEPSTRUM_N_FFT) -> np.ndarray:
    """Minimum-phase response with the learned one's log magnitude smoothed to ``length`` taps.

    The real cepstrum of ``ir`` is liftered to its first ``length`` quefrencies (a smoothing
    of the log magnitude over about ``sample_rate / length`` Hz) and folded onto positive
    quefrencies (minimum phase); the result is cut to ``length`` taps with a raised-cosine
    fade over its last quarter. Returns [length] float64.
    """
    log_mag = np.log(np.maximum(np.abs(np.fft.rfft(ir, n_fft)), 1e-9))
    cep = np.fft.irfft(log_mag, n_fft)
    fold = np.zeros(n_fft)
    fold[0] = cep[0]
    fold[1:length] = 2.0 * cep[1:length]
    h = np.fft.irfft(np.exp(np.fft.rfft(fold)), n_fft)[:length]
    k = max(1, length // 4)
    h[-k:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, k)))
    return h


def dry_output(model, batch: dict) -> np.ndarray:
    """The eval's resynthesis with the learned reverb removed (same noise): [n_samples]."""
    m = truncated_model(model, 0.0)
    gen = torch.Generator().manual_seed(0)  # as evaluate.evaluate_batches
    with torch.no_grad():
        y = m(batch["f0_hz"][..., None], batch["loudness_db"][..., None], audio=batch["audio"],
              generator=gen)
    return y[0].numpy().astype(np.float64)


# ----------------------------------------------------------------------------- reference data
@dataclass(frozen=True)
class Reference:
    """The generator's ground truth on the frame grid.

    Attributes:
        f0_ref_hz: [n_frames] MIDI pitch + bend (0 where no note is held).
        starts_s, ends_s, pitches: [n_notes] note onsets, note-offs and MIDI pitches.
    """

    f0_ref_hz: np.ndarray
    starts_s: np.ndarray
    ends_s: np.ndarray
    pitches: np.ndarray


def load_reference(audio_path: Path, n_frames: int, frame_rate_hz: float) -> Reference:
    stem = str(audio_path.with_suffix(""))
    ref = np.loadtxt(stem + ".f0.csv", delimiter=",", skiprows=1, ndmin=2)
    t_ref = ref[:, 0]
    t = np.arange(n_frames) / frame_rate_hz
    idx = np.clip(np.round(t * (1.0 / np.median(np.diff(t_ref)))).astype(int), 0, len(ref) - 1)
    notes = np.loadtxt(stem + ".notes.csv", delimiter=",", skiprows=1, usecols=(0, 1, 2), ndmin=2)
    return Reference(ref[idx, 1], notes[:, 0], notes[:, 1], notes[:, 2].astype(int))


def frame_context(ref: Reference, n_frames: int, frame_rate_hz: float) -> dict:
    """Where every frame sits relative to the notes.

    Returns dict of [n_frames] arrays: ``in_note`` (a note is held), ``note`` (index of the
    held note, else of the last note that ended: the one whose release may be sounding; -1
    before the first), ``since_onset_ms`` (from that note's onset), ``since_offset_ms``
    (from its note-off; negative while held), ``boundary_ms`` (distance to the nearest onset or
    note-off), ``sounding_hz`` (the held note's reference f0, else the last note's MIDI pitch:
    a release still sounds it), ``prev_hz`` (the pitch of the note before ``note``).
    """
    t = np.arange(n_frames) / frame_rate_hz
    note = np.searchsorted(ref.starts_s, t, side="right") - 1
    valid = note >= 0
    nz = np.maximum(note, 0)
    in_note = valid & (t < ref.ends_s[nz])
    bounds = np.sort(np.concatenate([ref.starts_s, ref.ends_s]))
    j = np.clip(np.searchsorted(bounds, t), 1, len(bounds) - 1)
    boundary = np.minimum(np.abs(t - bounds[j - 1]), np.abs(bounds[j] - t))
    sounding = np.where(in_note & (ref.f0_ref_hz > 0), ref.f0_ref_hz, midi_to_hz(ref.pitches[nz]))
    prev = np.where(nz > 0, midi_to_hz(ref.pitches[np.maximum(nz - 1, 0)]), np.nan)
    return {"in_note": in_note, "note": np.where(valid, note, -1),
            "since_onset_ms": np.where(valid, (t - ref.starts_s[nz]) * 1000.0, np.inf),
            "since_offset_ms": np.where(valid, (t - ref.ends_s[nz]) * 1000.0, -np.inf),
            "boundary_ms": boundary * 1000.0,
            "sounding_hz": np.where(valid, sounding, np.nan), "prev_hz": prev}


# ----------------------------------------------------------------------------- measurement
@dataclass(frozen=True)
class RunConfig:
    pitch_models: tuple[str, ...] = ("tiny", "full")
    ir_cuts_ms: tuple[float, ...] = IR_CUTS_MS
    render_variants: bool = True
    minphase_ms: tuple[float, ...] = MINPHASE_MS
    full_stages: tuple[str, ...] = ("base", "input", "render_mix0")


def heldout_files(folder: str, names, data_root: Path) -> list[tuple[str, Path]]:
    """(instrument, audio path) of every render in ``data_root/folder`` for ``names``."""
    return [(r.instrument, data_root / r.folder / f"{r.stem}.flac")
            for r in RENDERS if r.folder == folder and r.instrument in names]


class FrameCache:
    """Per-frame arrays of one instrument in ``NAME.npz``, saved after every stage."""

    def __init__(self, path: Path, force: bool):
        self.path = path
        self.data: dict = {}
        if path.exists() and not force:
            with np.load(path, allow_pickle=False) as z:
                self.data = {k: z[k] for k in z.files}

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str) -> np.ndarray:
        return self.data[key]

    def put(self, **arrays) -> None:
        self.data.update({k: np.asarray(v) for k, v in arrays.items()})
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **self.data)

        atomic_write_bytes(self.path, write)


def measure(name: str, path: Path, cache_path: Path, cfg: RunConfig, force: bool) -> dict:
    """Run every stage still missing for model ``name`` on ``path``; returns the eval's metrics."""
    model, _ = load_model(ROOT / "models" / name)
    fc: FeatureConfig = model.config.features
    audio = load_audio(path, fc.sample_rate)
    cache = FrameCache(cache_path, force)
    log = lambda msg: print(f"[{path.stem}] {msg}", flush=True)  # noqa: E731

    if "f0_in" not in cache:
        log("input features (CREPE %s)" % fc.crepe_model)
        feats = compute_features(audio, fc)
        cache.put(f0_in=feats["f0_hz"], conf_in=feats["confidence"], loud_in=feats["loudness_db"])
    feats = {"f0_hz": cache["f0_in"], "confidence": cache["conf_in"], "loudness_db": cache["loud_in"]}
    batch = evaluate.audio_as_batch(audio, model, feats)
    official = {}
    variants = {"base": model}
    variants.update({f"ir_{c:g}ms": None for c in cfg.ir_cuts_ms})
    if cfg.render_variants:
        variants.update({"render_mix1": None, "render_mix0": None})
    variants.update({f"minphase_{ms:g}ms": None for ms in cfg.minphase_ms})
    dry = None
    for v in variants:
        if f"loud_out_{v}" in cache and (v != "base" or "official_tiny" in cache):
            continue
        t0 = time.perf_counter()
        if v == "base" or v.startswith("ir_"):
            m = model if v == "base" else truncated_model(model, float(v[3:-2]))
            outs: list = []
            metrics = evaluate.evaluate_batches(m, [batch], outputs=outs)
            y = outs[0]
            if v == "base":
                cache.put(official_tiny=json.dumps(metrics))
        elif v.startswith("minphase_"):
            if dry is None:
                dry = dry_output(model, batch)
            length = int(round(float(v[9:-2]) * fc.sample_rate / 1000.0))
            h = minimum_phase_ir(learned_ir(model), length)
            y = scipy.signal.fftconvolve(dry, h)[: len(dry)].astype(np.float32)
        else:
            mix = 0.0 if v == "render_mix0" else 1.0
            y = render(model, feats["f0_hz"], feats["loudness_db"],
                       TransferOptions(auto_adjust=False, reverb_mix=mix))[: len(batch["audio"][0])]
        f0_out, conf_out = compute_f0(y, fc)
        cache.put(**{f"f0_out_{v}": f0_out, f"conf_out_{v}": conf_out,
                     f"loud_out_{v}": compute_loudness(y, fc)})
        if v in ("base", "render_mix0"):
            cache.put(**{f"audio_{v}": y.astype(np.float32)})
        log(f"{v}: synthesized and measured (tiny) in {time.perf_counter() - t0:.0f} s")

    official["tiny"] = json.loads(str(cache["official_tiny"]))
    if "full" in cfg.pitch_models:
        full = replace(fc, crepe_model="full")
        for v in cfg.full_stages:
            if v == "input":
                if "f0_in_full" not in cache:
                    log("input f0 by CREPE full (slow)")
                    f0, conf = compute_f0(audio, full)
                    cache.put(f0_in_full=f0, conf_in_full=conf)
            elif f"f0_out_{v}_full" not in cache:
                log(f"{v}: output f0 by CREPE full (slow)")
                f0, conf = compute_f0(cache[f"audio_{v}"], full)
                cache.put(**{f"f0_out_{v}_full": f0, f"conf_out_{v}_full": conf})
    # The per-frame arrays must give exactly the eval's figures.
    err = evaluate.pitch_errors_cents(cache["f0_out_base"], cache["f0_in"], cache["conf_in"])
    mine = float(np.mean(err))
    if abs(mine - official["tiny"]["f0_l1_cents"]) > 1e-4:
        raise RuntimeError(f"{name}: per-frame f0 L1 {mine} != eval's {official['tiny']['f0_l1_cents']}")
    if "f0_out_base_full" in cache:
        official["full"] = metrics_of(cache, "base", "full")
    return official


# ----------------------------------------------------------------------------- analysis
def metrics_of(cache, variant: str, pitch: str = "tiny", drop: np.ndarray | None = None) -> dict:
    """f0 and loudness L1 of a variant as the eval defines them (``drop``: frames left out)."""
    n = len(cache["f0_in"])
    keep = np.ones(n, bool) if drop is None else ~drop
    key = f"f0_out_{variant}" + ("_full" if pitch == "full" else "")
    voiced = (cache["conf_in"] >= VOICED) & keep
    pe = np.abs(cents(cache[key][voiced], cache["f0_in"][voiced]))
    active = (cache["loud_in"] > LOUD_FLOOR_DB) & keep
    le = np.abs(cache[f"loud_out_{variant}"][active] - cache["loud_in"][active])
    return {"f0_l1_cents": float(pe.mean()), "f0_median_cents": float(np.median(pe)),
            "f0_outlier_ratio": float(np.mean(pe > OUTLIER_CENTS)),
            "loudness_l1_db": float(le.mean()), "voiced_frames": int(voiced.sum()),
            "loudness_frames": int(active.sum())}


def near_ratio(ratio: np.ndarray, targets, tol_cents: float = OUTLIER_CENTS) -> np.ndarray:
    c = np.abs(cents(ratio[:, None], np.asarray(targets)[None, :]))
    return (c < tol_cents).any(axis=1)


CAUSES = (
    "input_silent",            # input below the eval's own silence floor (-70 dB)
    "input_f0_off_reference",  # the input's own f0 (CREPE tiny) is off the sounding note
    "octave_or_harmonic",      # output read an octave / twelfth / fifth off the input f0
    "previous_note",           # output read at the previous note's pitch (ringing or lag)
    "output_tracker_tiny",     # CREPE full on the same output agrees with the input
    "reverb_other",            # gone with the learned reverb off
    "other",
)


def classify_outliers(cache, ctx: dict) -> dict:
    """Attributes and one exclusive cause for every outlier frame of the base resynthesis.

    The harmonic synthesizer plays the input f0 itself, so an output read elsewhere is either
    another pitch added to it (the learned reverb still sounding an earlier note), a timbre
    that the tracker reads at another harmonic, or a tracker error. Causes are tested in the
    order of :data:`CAUSES`; the first that holds is the frame's:

    0. ``input_silent``: the input is below -70 dB, the level under which the eval itself
       calls a frame silence (loudness L1 skips it), yet CREPE is confident there: it
       normalises every frame, so a release tail at -95 dB still reads as a pitch;
    1. ``input_f0_off_reference``: the input's f0 is > 50 cents from the note that sounds there
       (reference ``.f0.csv`` in a note, the last note's pitch in its release): the frame asks
       the model for a pitch the performance does not have (a tracker transition or slip);
    2. ``octave_or_harmonic``: output/input is an octave, twelfth, fifth or two octaves (±50 c);
    3. ``previous_note``: the output is read within 50 cents of the previous note's pitch
       (which differs from the current one by more than that);
    4. ``output_tracker_tiny``: CREPE full on the same output is within 50 cents of the input;
    5. ``reverb_other``: through ``transfer.render`` the frame is an outlier with the reverb
       and not without it;
    6. ``other``.

    Non-exclusive attributes (``attrs``) are reported for every cause as well: at a note
    boundary, onset, release tail, CREPE full agreeing, reverb off / late tail cut fixing it.
    """
    n = len(cache["f0_in"])
    voiced = cache["conf_in"] >= VOICED
    err = cents(cache["f0_out_base"], cache["f0_in"])
    out = voiced & (np.abs(err) > OUTLIER_CENTS)
    in_vs_ref = cents(cache["f0_in"], ctx["sounding_hz"])

    def fixed_by(variant: str) -> np.ndarray:
        if f"f0_out_{variant}" not in cache:
            return np.zeros(n, bool)
        return np.abs(cents(cache[f"f0_out_{variant}"], cache["f0_in"])) <= OUTLIER_CENTS

    if "f0_out_render_mix1" in cache:  # reverb on / off through the same rendering path
        reverb_fix = (np.abs(cents(cache["f0_out_render_mix1"], cache["f0_in"])) > OUTLIER_CENTS) \
            & fixed_by("render_mix0")
    else:
        reverb_fix = fixed_by("ir_0ms")
    attrs = {
        "input_silent": cache["loud_in"] <= LOUD_FLOOR_DB,
        "at_boundary": ctx["boundary_ms"] <= BOUNDARY_MS,
        "onset": ctx["in_note"] & (ctx["since_onset_ms"] <= BOUNDARY_MS),
        "release_tail": ~ctx["in_note"] & (ctx["note"] >= 0),
        "input_off_ref": np.abs(np.nan_to_num(in_vs_ref, nan=0.0)) > OUTLIER_CENTS,
        "out_is_prev_note": (np.abs(np.nan_to_num(cents(cache["f0_out_base"], ctx["prev_hz"]),
                                                  nan=1e9)) < OUTLIER_CENTS)
                            & (np.abs(np.nan_to_num(cents(ctx["prev_hz"], ctx["sounding_hz"]),
                                                    nan=0.0)) > OUTLIER_CENTS),
        "harmonic": near_ratio(cache["f0_out_base"] / np.maximum(cache["f0_in"], 1e-3),
                               HARMONIC_RATIOS),
        "reverb_off_fixes": reverb_fix,
        "ir_cut_50ms_fixes": fixed_by("ir_50ms"),
        "ir_cut_200ms_fixes": fixed_by("ir_200ms"),
    }
    if "f0_out_base_full" in cache:
        attrs["full_agrees"] = fixed_by("base_full")
    if "f0_in_full" in cache:
        attrs["input_full_off_ref"] = np.abs(np.nan_to_num(
            cents(cache["f0_in_full"], ctx["sounding_hz"]), nan=0.0)) > OUTLIER_CENTS
    cause = np.full(n, "", dtype=object)
    order = [("input_silent", attrs["input_silent"]),
             ("input_f0_off_reference", attrs["input_off_ref"]),
             ("octave_or_harmonic", attrs["harmonic"]),
             ("previous_note", attrs["out_is_prev_note"]),
             ("output_tracker_tiny", attrs.get("full_agrees", np.zeros(n, bool))),
             ("reverb_other", attrs["reverb_off_fixes"]),
             ("other", np.ones(n, bool))]
    for label, mask in order:
        cause[out & (cause == "") & mask] = label
    return {"outlier": out, "err_cents": err, "attrs": attrs, "cause": cause}


def cause_table(cache, ctx: dict, cls: dict) -> dict:
    """Share of outlier frames per cause (with its attributes), and f0 L1 without them."""
    out = cls["outlier"]
    n_out = int(out.sum())
    voiced = cache["conf_in"] >= VOICED
    err = np.abs(cls["err_cents"])
    res = {"outlier_frames": n_out, "voiced_frames": int(voiced.sum()),
           "outlier_share_of_f0_l1": float(err[out].sum() / max(err[voiced].sum(), 1e-9)),
           "causes": {}, "attributes": {}}
    for c in CAUSES:
        sel = out & (cls["cause"] == c)
        k = max(int(sel.sum()), 1)
        res["causes"][c] = {
            "frames": int(sel.sum()), "share": float(sel.sum() / max(n_out, 1)),
            "share_of_f0_l1": float(err[sel].sum() / max(err[voiced].sum(), 1e-9)),
            "f0_l1_without": metrics_of(cache, "base", drop=sel)["f0_l1_cents"],
            "attributes": {a: float((sel & m).sum() / k) for a, m in cls["attrs"].items()}}
    for a, mask in cls["attrs"].items():
        res["attributes"][a] = float((out & mask).sum() / max(n_out, 1))
    res["f0_l1_without_all_outliers"] = metrics_of(cache, "base", drop=out)["f0_l1_cents"]
    res["f0_l1_voiced_above_floor"] = metrics_of(
        cache, "base", drop=cls["attrs"]["input_silent"])["f0_l1_cents"]
    res["f0_l1_without_boundary_frames"] = metrics_of(
        cache, "base", drop=cls["attrs"]["at_boundary"])["f0_l1_cents"]
    res["f0_l1_if_fixed"] = fixed_estimates(cache, cls)
    return res


def fixed_estimates(cache, cls: dict) -> dict:
    """f0 L1 (CREPE tiny) with the frames of each fixable cause removed, cumulatively.

    * ``eval_floor``: voiced frames also above the eval's -70 dB silence floor;
    * ``+tiny_octave``: and without the octave/harmonic readings that CREPE full does not
      share (where CREPE full was run; else those inside held notes): a better tracker on the
      output;
    * ``+reverb_tail``: and without the other outliers that the learned reverb causes outside
      steady notes (gone with the reverb off, in a release tail or within 60 ms of a note
      boundary): a reverb that does not ring.
    """
    a, out = cls["attrs"], cls["outlier"]
    drop = a["input_silent"].copy()
    res = {"base": metrics_of(cache, "base")["f0_l1_cents"],
           "eval_floor": metrics_of(cache, "base", drop=drop)["f0_l1_cents"]}
    octave = out & (cls["cause"] == "octave_or_harmonic")
    octave &= a["full_agrees"] if "full_agrees" in a else ~a["release_tail"]
    drop |= octave
    res["+tiny_octave"] = metrics_of(cache, "base", drop=drop)["f0_l1_cents"]
    drop |= out & a["reverb_off_fixes"] & (a["release_tail"] | a["at_boundary"])
    res["+reverb_tail"] = metrics_of(cache, "base", drop=drop)["f0_l1_cents"]
    if "f0_out_base_full" in cache:  # the output measured by CREPE full, eval floor applied
        res["full_eval_floor"] = metrics_of(cache, "base", "full", drop=a["input_silent"])["f0_l1_cents"]
    return res


def loudness_breakdown(cache, ctx: dict, variant: str = "base") -> dict:
    """Where the loudness L1 comes from: by input level and by position relative to notes.

    Each row: frames, share of all active frames, mean |error| (dB), mean signed error
    (output - input, dB) and the share of the total L1 that the row carries.
    """
    active = cache["loud_in"] > LOUD_FLOOR_DB
    d = cache[f"loud_out_{variant}"] - cache["loud_in"]
    total = np.abs(d[active]).sum()

    def row(mask):
        m = active & mask
        return {"frames": int(m.sum()), "share_frames": float(m.sum() / active.sum()),
                "l1_db": float(np.abs(d[m]).mean()) if m.any() else float("nan"),
                "bias_db": float(d[m].mean()) if m.any() else float("nan"),
                "share_of_l1": float(np.abs(d[m]).sum() / total)}

    level = {}
    for lo, hi in zip(LEVEL_BINS_DB[:-1], LEVEL_BINS_DB[1:]):
        level[f"{lo}..{hi} dB"] = row((cache["loud_in"] > lo) & (cache["loud_in"] <= hi))
    on = ctx["in_note"] & (ctx["since_onset_ms"] <= BOUNDARY_MS)
    rel = ~ctx["in_note"] & (ctx["note"] >= 0)
    position = {
        f"onset (first {BOUNDARY_MS:g} ms of a note)": row(on),
        "sustain (rest of the note)": row(ctx["in_note"] & ~on),
        f"release (first {BOUNDARY_MS:g} ms after note-off)": row(rel & (ctx["since_offset_ms"] <= BOUNDARY_MS)),
        "release tail / gap (later)": row(rel & (ctx["since_offset_ms"] > BOUNDARY_MS)),
        "before the first note": row(ctx["note"] < 0),
        "voiced (conf >= 0.85)": row(cache["conf_in"] >= VOICED),
        "unvoiced (conf < 0.85)": row(cache["conf_in"] < VOICED),
    }
    return {"by_level": level, "by_position": position}


def onset_profiles(cache, ctx: dict, ref: Reference, frame_rate_hz: float,
                   variant: str = "base") -> dict:
    """Mean signed loudness error (dB) around note onsets and note-offs, frame by frame."""
    d = cache[f"loud_out_{variant}"] - cache["loud_in"]
    lo, hi = ONSET_PROFILE_FRAMES
    res = {}
    for label, times in (("onset", ref.starts_s), ("note_off", ref.ends_s)):
        rows = []
        for k in range(lo, hi):
            idx = np.round(times * frame_rate_hz).astype(int) + k
            idx = idx[(idx >= 0) & (idx < len(d))]
            idx = idx[cache["loud_in"][idx] > LOUD_FLOOR_DB]
            rows.append(float(d[idx].mean()) if len(idx) else float("nan"))
        res[label] = rows
    return res


def training_gain_db(name: str, out_dir: Path) -> float:
    """Median loudness offset (input - output, dB) of a model on its own training data.

    The first 60 s of the shared training file (inside the part every shipped model trained
    on), resynthesized as the eval does; cached in ``out_dir/NAME_train60.json``. A gain by
    this much is a correction of the model's level bias that uses no held-out data.
    """
    path = out_dir / f"{name}_train60.json"
    if path.exists():
        return json.loads(path.read_text())["gain_db"]
    model, _ = load_model(ROOT / "models" / name)
    fc = model.config.features
    audio = load_audio(TRAIN_DATA / f"{name}.flac", fc.sample_rate)
    audio = audio[: int(CALIBRATION_S * fc.sample_rate)]
    feats = compute_features(audio, fc)
    outs: list = []
    metrics = evaluate.evaluate_batches(model, [evaluate.audio_as_batch(audio, model, feats)],
                                        outputs=outs)
    loud_out = compute_loudness(outs[0], fc)
    active = feats["loudness_db"] > LOUD_FLOOR_DB
    gain = float(-np.median(loud_out[active] - feats["loudness_db"][active]))
    text = json.dumps({"gain_db": gain, "seconds": CALIBRATION_S, "metrics": metrics}, indent=2)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text + "\n"))
    return gain


def analyse(name: str, path: Path, cache_path: Path, official: dict, gain_db: float | None) -> dict:
    cache = FrameCache(cache_path, force=False)
    model, _ = load_model(ROOT / "models" / name)
    fr = model.config.synth.frame_rate_hz
    n = len(cache["f0_in"])
    ref = load_reference(path, n, fr)
    ctx = frame_context(ref, n, fr)
    cls = classify_outliers(cache, ctx)
    variants = {}
    for k in cache.data:
        if k.startswith("loud_out_"):
            v = k[len("loud_out_"):]
            variants[v] = {"tiny": metrics_of(cache, v)}
            if f"f0_out_{v}_full" in cache:
                variants[v]["full"] = metrics_of(cache, v, "full")
    voiced = cache["conf_in"] >= VOICED
    in_err = np.abs(np.nan_to_num(cents(cache["f0_in"], ctx["sounding_hz"]), nan=0.0))
    inputs = {"tiny_vs_reference_median_cents": float(np.median(in_err[voiced & ctx["in_note"]])),
              "tiny_off_reference_share": float(np.mean(in_err[voiced] > OUTLIER_CENTS))}
    if "f0_in_full" in cache:
        full_err = np.abs(np.nan_to_num(cents(cache["f0_in_full"], ctx["sounding_hz"]), nan=0.0))
        inputs["full_vs_reference_median_cents"] = float(np.median(full_err[voiced & ctx["in_note"]]))
        inputs["full_off_reference_share"] = float(np.mean(full_err[voiced] > OUTLIER_CENTS))
    return {"model": name, "file": str(path), "official": official,
            "variants": variants, "ir": ir_summary(learned_ir(model), model.config.synth.sample_rate),
            "outliers": cause_table(cache, ctx, cls), "input_f0": inputs,
            "loudness": loudness_breakdown(cache, ctx),
            "loudness_calibrated": None if gain_db is None else {
                "gain_db": gain_db, "loudness_l1_db": float(np.mean(np.abs(
                    cache["loud_out_base"][cache["loud_in"] > LOUD_FLOOR_DB] + gain_db
                    - cache["loud_in"][cache["loud_in"] > LOUD_FLOOR_DB])))},
            "loudness_profiles": onset_profiles(cache, ctx, ref, fr)}


# ----------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    """The tables of ``heldout_eval.json`` as Markdown."""
    lines = ["# Held-out resynthesis (unseen performances)", "",
             "f0 L1 in cents over frames with input confidence >= 0.85 (as `ddsp-synth eval`); "
             "'above floor': the same frames without those whose input is below -70 dB.", "",
             "| model | file | f0 L1 tiny (median) | outliers tiny | f0 L1 full (median) | "
             "outliers full | loudness L1 | f0 L1 tiny above floor |",
             "|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        t, f = r["official"]["tiny"], r["official"].get("full")
        full = (f"{f['f0_l1_cents']:.1f} ({f['f0_median_cents']:.1f})",
                f"{100 * f['f0_outlier_ratio']:.2f} %") if f else ("-", "-")
        lines.append(f"| {r['model']} | {Path(r['file']).name} | {t['f0_l1_cents']:.1f} "
                     f"({t['f0_median_cents']:.1f}) | {100 * t['f0_outlier_ratio']:.2f} % | "
                     f"{full[0]} | {full[1]} | {t['loudness_l1_db']:.2f} dB | "
                     f"{r['outliers']['f0_l1_voiced_above_floor']:.1f} |")
    by_model: dict = {}
    for r in results.values():
        by_model.setdefault(r["model"], []).append(r)
    if any(len(v) > 1 for v in by_model.values()):
        lines += ["", "Per model over its files (mean, and the worst file in brackets):", "",
                  "| model | files | f0 L1 tiny | above floor | loudness L1 |", "|---|---|---|---|---|"]
        for name, rs in by_model.items():
            f0 = [r["official"]["tiny"]["f0_l1_cents"] for r in rs]
            fl = [r["outliers"]["f0_l1_voiced_above_floor"] for r in rs]
            ld = [r["official"]["tiny"]["loudness_l1_db"] for r in rs]
            lines.append(f"| {name} | {len(rs)} | {np.mean(f0):.1f} ({max(f0):.1f}) | "
                         f"{np.mean(fl):.1f} ({max(fl):.1f}) | {np.mean(ld):.2f} ({max(ld):.2f}) dB |")
    lines += ["", "## What fixing each cause would give (estimates, cumulative)", "",
              "f0 L1 (CREPE tiny) without the frames of each cause (see `fixed_estimates`); "
              "loudness L1 as measured and after a gain calibrated on 60 s of the model's "
              "training data.", "",
              "| model | file | f0 L1 | eval floor | + tiny octave | + reverb tail | f0 L1 full | "
              "full, eval floor | loudness L1 | calibrated (gain) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        e = r["outliers"]["f0_l1_if_fixed"]
        full = r["official"].get("full")
        cal = r.get("loudness_calibrated")
        full_cell = f"{full['f0_l1_cents']:.1f} | {e['full_eval_floor']:.1f}" if full else "- | -"
        cal_cell = f"{cal['loudness_l1_db']:.2f} dB ({cal['gain_db']:+.2f})" if cal else "-"
        lines.append(f"| {r['model']} | {Path(r['file']).name} | {e['base']:.1f} | "
                     f"{e['eval_floor']:.1f} | {e['+tiny_octave']:.1f} | {e['+reverb_tail']:.1f} | "
                     f"{full_cell} | {r['official']['tiny']['loudness_l1_db']:.2f} dB | {cal_cell} |")
    lines += ["", "## Outlier causes", "",
              "Share of outlier frames (|error| > 50 cents, CREPE tiny) per cause, and the f0 L1 "
              "with that cause's frames left out.", "",
              "| model | outliers | share of f0 L1 | " + " | ".join(CAUSES) + " |",
              "|---|---|---|" + "---|" * len(CAUSES)]
    for key, r in results.items():
        o = r["outliers"]
        cells = [f"{100 * o['causes'][c]['share']:.0f} % → {o['causes'][c]['f0_l1_without']:.1f}"
                 if o["causes"][c]["frames"] else "-" for c in CAUSES]
        lines.append(f"| {r['model']} | {o['outlier_frames']} / {o['voiced_frames']} | "
                     f"{100 * o['outlier_share_of_f0_l1']:.0f} % | " + " | ".join(cells) + " |")
    attrs = sorted({a for r in results.values() for a in r["outliers"]["attributes"]})
    lines += ["", "Attributes of the outlier frames (not exclusive):", "",
              "| model | " + " | ".join(attrs) + " |", "|---|" + "---|" * len(attrs)]
    for key, r in results.items():
        a = r["outliers"]["attributes"]
        lines.append(f"| {r['model']} | " + " | ".join(
            f"{100 * a[k]:.0f} %" if k in a else "-" for k in attrs) + " |")
    lines += ["", "## Learned impulse responses", "",
              "| model | tail re direct | EDC -10 / -20 / -30 dB | T60 | tail energy after 50 ms | "
              "after 200 ms | response range |", "|---|---|---|---|---|---|---|"]
    seen = set()
    for r in results.values():
        if r["model"] in seen:
            continue
        seen.add(r["model"])
        ir = r["ir"]
        b = ir["tail_energy_bands"]
        late = 10 * np.log10(10 ** (b["50-200ms_db"] / 10) + 10 ** (b["200-1000ms_db"] / 10))
        lines.append(f"| {r['model']} | {ir['tail_re_direct_db']:+.1f} dB | {ir['edc_10db_ms']:.0f} / "
                     f"{ir['edc_20db_ms']:.0f} / {ir['edc_30db_ms']:.0f} ms | {ir['t60_ms']:.0f} ms | "
                     f"{late:.1f} dB | {b['200-1000ms_db']:.1f} dB | {ir['response_min_db']:.0f} to "
                     f"{ir['response_max_db']:+.0f} dB |")
    lines += ["", "## Loudness error by position and level", "",
              "L1 (bias = mean output - input) and the share of the total L1 each row carries.", "",
              "| model | total L1 | bias (all) | sustain | onset | release <= 60 ms | "
              "later release / gap | input -70..-50 dB |", "|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        pos, lev = r["loudness"]["by_position"], r["loudness"]["by_level"]
        rows = [next(v for k, v in pos.items() if k.startswith(prefix))
                for prefix in ("sustain", "onset", "release (", "release tail")]
        low = {k: lev[k] for k in lev if k.startswith(("-70..", "-60.."))}
        low_share = sum(v["share_of_l1"] for v in low.values())
        bias = sum(v["bias_db"] * v["frames"] for v in lev.values() if v["frames"]) / max(
            sum(v["frames"] for v in lev.values()), 1)
        cells = [f"{x['l1_db']:.2f} ({x['bias_db']:+.2f}), {100 * x['share_of_l1']:.0f} %" for x in rows]
        lines.append(f"| {r['model']} | {r['official']['tiny']['loudness_l1_db']:.2f} dB | "
                     f"{bias:+.2f} dB | " + " | ".join(cells) + f" | {100 * low_share:.0f} % |")
    lines += ["", "## Variants (CREPE tiny on the output; full where measured)", "",
              "| model | variant | f0 L1 (median) | outliers | loudness L1 | f0 L1 full |",
              "|---|---|---|---|---|---|"]
    for r in results.values():
        for v, m in r["variants"].items():
            t = m["tiny"]
            f = f"{m['full']['f0_l1_cents']:.1f}" if "full" in m else "-"
            lines.append(f"| {r['model']} | {v} | {t['f0_l1_cents']:.1f} ({t['f0_median_cents']:.1f}) | "
                         f"{100 * t['f0_outlier_ratio']:.2f} % | {t['loudness_l1_db']:.2f} dB | {f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", nargs="+", default=list(SHIPPED), choices=SHIPPED)
    ap.add_argument("--sets", nargs="+", default=["heldout"],
                    choices=sorted({r.folder for r in RENDERS if r.folder != "new"}),
                    help="which renders of scripts/render_heldout.py (default: heldout)")
    ap.add_argument("--data-root", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path,
                    help="folder of the JSON and Markdown report (default: DATA_ROOT/heldout/eval)")
    ap.add_argument("--calibrate-gain", action="store_true",
                    help="also report loudness L1 after a level correction measured on 60 s of "
                         "each model's training data")
    ap.add_argument("--pitch-models", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    ap.add_argument("--full-stages", nargs="+", default=list(RunConfig.full_stages),
                    choices=list(RunConfig.full_stages),
                    help="what CREPE full measures: the base output (the eval's --pitch-model "
                         "full figure), the input, the output without reverb")
    ap.add_argument("--ir-cuts-ms", nargs="*", type=float, default=list(IR_CUTS_MS),
                    help="truncations of the learned response to try (none: skip)")
    ap.add_argument("--minphase-ms", nargs="*", type=float, default=list(MINPHASE_MS),
                    help="lengths of smoothed minimum-phase responses to try (none: skip)")
    ap.add_argument("--no-render-variants", action="store_true",
                    help="skip transfer.render with the reverb on / off")
    ap.add_argument("--force", action="store_true", help="recompute cached stages")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or args.data_root / "heldout" / "eval"
    files = [(n, p, s) for s in args.sets for n, p in heldout_files(s, args.names, args.data_root)]
    missing = [str(p) for _, p, _ in files if not p.exists()]
    if missing:
        print(f"error: missing {', '.join(missing)}: run scripts/render_heldout.py", file=sys.stderr)
        return 1
    cfg = RunConfig(pitch_models=tuple(args.pitch_models), full_stages=tuple(args.full_stages),
                    ir_cuts_ms=tuple(args.ir_cuts_ms), minphase_ms=tuple(args.minphase_ms),
                    render_variants=not args.no_render_variants)
    results = {}
    gains = {n: training_gain_db(n, out) for n in args.names} if args.calibrate_gain else {}
    for name, path, set_name in files:
        cache_path = args.data_root / set_name / "eval" / f"{path.stem}.npz"
        official = measure(name, path, cache_path, cfg, args.force)
        results[path.stem] = analyse(name, path, cache_path, official, gains.get(name))
        t = official["tiny"]
        print(f"{path.stem}: f0 L1 {t['f0_l1_cents']:.2f} cents (median {t['f0_median_cents']:.2f}, "
              f"outliers {100 * t['f0_outlier_ratio']:.2f} %), loudness L1 {t['loudness_l1_db']:.3f} dB"
              + (f"; CREPE full: {official['full']['f0_l1_cents']:.2f} cents" if "full" in official
                 else ""), flush=True)
    results = dict(sorted(results.items(), key=lambda kv: (SHIPPED.index(kv[1]["model"]), kv[0])))
    text = json.dumps(results, indent=2)
    stem = "heldout_eval" + ("" if args.sets == ["heldout"] else "_" + "+".join(args.sets))
    atomic_write_bytes(out / f"{stem}.json", lambda tmp: Path(tmp).write_text(text + "\n"))
    md = markdown(results)
    atomic_write_bytes(out / f"{stem}.md", lambda tmp: Path(tmp).write_text(md))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
