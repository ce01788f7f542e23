"""Pitch trackers against MIDI truth: every instrument the generator knows, low voices, speed.

    python bench/bench_pitch.py                  # renders data/pitch_bench/ (seeds 8000..8099)
    python bench/bench_pitch.py --full           # also CREPE full on the lowest and highest sets
    python bench/bench_pitch.py --no-stream      # skip the streaming front end (the slowest case)
    python bench/bench_pitch.py --only cello_8013 bassoon_8014 --out results_pitch_stream.json

The set (:mod:`pitch_data`): a 60 s performance of each of the generator's 12 instruments
(seeds 8000..8011), two more of the cello and of the bassoon (their lowest notes, 8012..8015),
and two synthetic low speech-like voices with a known contour (8050, 8051); none was trained
on or used to fit or choose anything. The trackers (:mod:`pitch_trackers`): CREPE tiny as
shipped before issue 23 (``tiny_old``), as ddsp_synth analyses now (``tiny``), the streaming
front end (``tiny_stream``) and, with ``--full``, CREPE full decoded both ways.

Frames scored: inside a note, its first 50 ms and last 30 ms left out
(:func:`ddsp_synth.evaluate.midi_truth`). Per instrument and band of the true pitch (below
100 Hz, 100-400 Hz, above 400 Hz): % of frames more than 50 cents off, % at 2x, 3x and half
the true pitch, median |error| in cents. Speed: seconds of tracker time per minute of audio
(CREPE and decoding; one process, torch/onnxruntime threads as ``--threads``). The real sung
scale (``examples/singing_scale.flac``, C4 to C5, no frame truth) is scored by the share of
frames CREPE calls voiced (>= 0.85) that are more than 50 cents from every C-major pitch.
Prints the tables and writes ``bench/results_pitch.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine_info  # noqa: E402
from pitch_data import BENCH_SET, BENCH_VOICE_SEEDS, ROOT, render, synth_voice  # noqa: E402
from pitch_trackers import HOP, decode_new, decode_old, streamed  # noqa: E402

from ddsp_synth.dsp.interpolation import n_frames_for  # noqa: E402
from ddsp_synth.evaluate import TRUTH_BANDS, midi_truth, truth_metrics  # noqa: E402
from ddsp_synth.pitch import crepe_activations, decode_f0  # noqa: E402

FOLDER = ROOT / "data" / "pitch_bench"
# CREPE full (about 3.5 s per second of audio on one core) runs on these only with --full.
FULL_SET = ("cello_8002", "cello_8012", "bassoon_8009", "bassoon_8014", "flute_8006")
SCALE = ROOT / "examples" / "singing_scale.flac"


def track_file(audio: np.ndarray, with_full: bool, with_stream: bool) -> tuple[dict, dict]:
    """f0 [n_frames] of every tracker on one signal, and each tracker's seconds."""
    f0s, secs = {}, {}
    for model in ("tiny", "full") if with_full else ("tiny",):
        t0 = time.perf_counter()
        act = crepe_activations(audio, HOP, model)
        t_act = time.perf_counter() - t0
        for label, decode in ((f"{model}_old", lambda: decode_old(act)),
                              (model, lambda: decode_new(audio, act, model))):
            t0 = time.perf_counter()
            f0s[label] = decode()
            secs[label] = t_act + time.perf_counter() - t0
    if with_stream:
        t0 = time.perf_counter()
        f0s["tiny_stream"] = streamed(audio)
        secs["tiny_stream"] = time.perf_counter() - t0
    return f0s, secs


def pooled(rows: list[dict]) -> dict:
    """Per-band metrics pooled over files (weighted by frames): shares in %."""
    out = {}
    for band in TRUTH_BANDS:
        parts = [r[band] for r in rows if band in r]
        n = sum(p["frames"] for p in parts)
        if not n:
            continue
        out[band] = {"frames": n, **{k: 100.0 * sum(p[k] * p["frames"] for p in parts) / n
                                     for k in ("off_50c", "x2", "x3", "half")},
                     "median_cents": float(np.median([p["median_cents"] for p in parts]))}
    return out


def scale_score(audio: np.ndarray, f0_hz: np.ndarray, confidence: np.ndarray) -> dict:
    """The sung C-major scale: % of voiced frames > 50 cents from every C-major pitch."""
    midi = 69 + 12 * np.log2(np.maximum(f0_hz, 1e-3) / 440.0)
    white = np.array([m for m in range(48, 85) if m % 12 in (0, 2, 4, 5, 7, 9, 11)])
    dist = np.min(np.abs(midi[:, None] - white[None, :]), axis=1) * 100
    voiced = confidence >= 0.85
    return {"voiced_frames": int(voiced.sum()),
            "off_scale_50c": float(100 * np.mean(dist[voiced] > 50)),
            "below_c4_or_above_c5": float(100 * np.mean((midi[voiced] < 59.5) | (midi[voiced] > 72.5)))}


def run_scale() -> dict:
    if not SCALE.exists():
        return {}
    audio, _ = sf.read(SCALE, dtype="float32")
    act = crepe_activations(audio, HOP, "tiny")
    conf = decode_f0(act)[1]
    return {"tiny_old": scale_score(audio, decode_old(act), conf),
            "tiny": scale_score(audio, decode_new(audio, act), conf)}


def print_tables(per_instrument: dict, speed: dict, scale: dict) -> None:
    trackers = list(speed)
    print("\n| instrument | band | frames | " + " | ".join(
        f"{t}: >50c / 2x / 3x / half" for t in trackers) + " |")
    print("|---|---|---|" + "---|" * len(trackers))
    for name, by_tracker in per_instrument.items():
        ref = by_tracker[trackers[0]]
        for band in ref:
            cells = []
            for t in trackers:
                m = by_tracker.get(t, {}).get(band)
                cells.append("–" if m is None else
                             f"{m['off_50c']:.2f} / {m['x2']:.2f} / {m['x3']:.2f} / {m['half']:.2f}")
            print(f"| {name} | {band} | {ref[band]['frames']} | " + " | ".join(cells) + " |")
    print("\n| tracker | s per minute of audio |")
    print("|---|---|")
    for t, s in speed.items():
        print(f"| {t} | {s:.2f} |")
    for t, s in scale.items():
        print(f"singing_scale.flac, {t}: {s['off_scale_50c']:.2f} % of {s['voiced_frames']} "
              f"voiced frames off the C-major scale, {s['below_c4_or_above_c5']:.2f} % outside C4-C5")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also CREPE full on " + ", ".join(FULL_SET))
    ap.add_argument("--no-stream", action="store_true", help="skip the streaming front end")
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    ap.add_argument("--only", nargs="+", metavar="NAME_SEED",
                    help="these renders only (e.g. cello_8013 bassoon_8014)")
    ap.add_argument("--out", default="results_pitch.json", help="file name in bench/")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = [render(name, seed, FOLDER) for name, seed in BENCH_SET]
    files += [synth_voice(seed, FOLDER) for seed in BENCH_VOICE_SEEDS]
    files = [f for f in files if not args.only or f.stem in args.only]
    per_file, rows, seconds, audio_s = {}, {}, {}, {}
    for wav in files:
        audio, _ = sf.read(wav, dtype="float32")
        f0s, secs = track_file(audio, args.full and wav.stem in FULL_SET, not args.no_stream)
        n_frames = n_frames_for(len(audio), HOP)  # the frame grid (CREPE gives one more)
        f0s = {t: f0[:n_frames] for t, f0 in f0s.items()}
        f0_true, keep = midi_truth(wav, n_frames)
        per_file[wav.stem] = {t: truth_metrics(f0, f0_true, keep) for t, f0 in f0s.items()}
        instrument = wav.stem.rsplit("_", 1)[0]
        for t in f0s:
            rows.setdefault(instrument, {}).setdefault(t, []).append(per_file[wav.stem][t])
            seconds[t] = seconds.get(t, 0.0) + secs[t]
            audio_s[t] = audio_s.get(t, 0.0) + len(audio) / 16000
        print(wav.stem, {t: round(100 * m["all"]["off_50c"], 2) for t, m in per_file[wav.stem].items()},
              flush=True)
    per_instrument = {name: {t: pooled(r) for t, r in by.items()} for name, by in rows.items()}
    speed = {t: 60.0 * seconds[t] / audio_s[t] for t in seconds}
    scale = run_scale()
    print_tables(per_instrument, speed, scale)
    result = {"machine": machine_info(), "threads": args.threads,
              "scored_frames": "inside notes, first 50 ms and last 30 ms left out",
              "shares": "per_instrument: percent of scored frames; per_file: fractions", "per_instrument": per_instrument,
              "per_file": per_file, "seconds_per_minute": speed, "singing_scale": scale}
    (HERE / args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
