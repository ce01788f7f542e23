"""Benchmark of the training pipeline: training steps/s and prepare throughput / memory.

Each case runs in its own subprocess (own peak RSS). Prints a Markdown table and writes
``bench/results_train.json``.

    python bench/bench_train.py [--long-minutes 60] [--skip-full]

``--long-minutes N`` also prepares an N-minute file (the shared violin recording looped) to
measure peak memory on long inputs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "train" / "violin.flac"
sys.path.insert(0, str(HERE))
from machine import machine_line as machine  # noqa: E402


def source_audio(seconds: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if SHARED.exists():
        y, sr = sf.read(SHARED, dtype="float32")
    else:  # a synthetic stand-in keeps the benchmark runnable without ../shared
        sr = 16000
        t = np.arange(int(180 * sr)) / sr
        f0 = 220 * 2 ** (np.floor(t) % 12 / 12)
        y = (0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr)).astype(np.float32)
    reps = int(np.ceil(seconds * sr / len(y)))
    return np.tile(y, reps)[: int(seconds * sr)], sr


def case_train_step(threads: int, batch: int) -> dict:
    """One optimisation step of the default model (see ``run_all.case_train``)."""
    from run_all import case_train

    r = case_train(256, 100, batch, "fp32", threads=threads)
    return {"batch": batch, "seconds_each": 4.0, "step_s": r["step_s"],
            "steps_per_s": r["steps_per_s"], "n_parameters": r["n_parameters"]}


def case_prepare(model: str, seconds: float) -> dict:
    import soundfile as sf

    from ddsp_synth.data import PrepareConfig, prepare
    from ddsp_synth.features import FeatureConfig

    y, sr = source_audio(seconds)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.flac"
        sf.write(src, y, sr)
        t = time.perf_counter()
        prepare([src], Path(tmp) / "data", PrepareConfig(features=FeatureConfig(crepe_model=model)),
                show_progress=False)
        dt = time.perf_counter() - t
    return {"pitch_model": model, "seconds_audio": seconds, "time_s": dt,
            "audio_s_per_s": seconds / dt}


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-minutes", type=float, default=0.0)
    parser.add_argument("--skip-full", action="store_true", help="skip CREPE full (slow)")
    parser.add_argument("--out", default=str(HERE / "results_train.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            result = case_train_step(int(rest[0]), int(rest[1]))
        else:
            result = case_prepare(rest[0], float(rest[1]))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    results = {"machine": machine(),
               "train_b16x4s_2threads": run_child("train", 2, 16),
               "train_b8x4s_2threads": run_child("train", 2, 8),
               "prepare_tiny_180s": run_child("prepare", "tiny", 180)}
    if not args.skip_full:
        results["prepare_full_60s"] = run_child("prepare", "full", 60)
    if args.long_minutes:
        results[f"prepare_tiny_{args.long_minutes:g}min"] = run_child(
            "prepare", "tiny", args.long_minutes * 60)
    print(f"machine: {results['machine']}\n")
    print("| measure | value | peak RSS |\n|---|---|---|")
    for key in ("train_b16x4s_2threads", "train_b8x4s_2threads"):
        r = results[key]
        print(f"| training step, default config ({r['n_parameters']:,} parameters), batch "
              f"{r['batch']} x 4 s, 2 threads | {r['step_s']:.2f} s ({r['steps_per_s']:.2f} "
              f"steps/s) | {r['peak_rss_mb']:.0f} MB |")
    for key, r in results.items():
        if key.startswith("prepare"):
            print(f"| prepare, CREPE {r['pitch_model']}, {r['seconds_audio']:g} s of audio | "
                  f"{r['audio_s_per_s']:.1f} s audio / s ({r['time_s']:.1f} s) | "
                  f"{r['peak_rss_mb']:.0f} MB |")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
