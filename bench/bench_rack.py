"""The effects rack's cost: transfer's real-time factor and the streaming engine's per-block
compute with the rack off, on its twins and (transfer only) through the real devices, and
the peak memory of each case (re-runnable).

Each case runs in its own process (so its peak resident memory is its own), one thread,
on the same 30 s input (the shared flute performance from 60 s on; speed only, no quality
is measured here) with the violin model and the rack of ``examples/presets/warm_violin.json``
(low shelf, peak, compressor, gain) or, with ``--preset``, any preset.

Usage: OMP_NUM_THREADS=1 python bench/bench_rack.py [--seconds 30] [--repeats 3]
       [--preset P.json] [--out bench/results_rack.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from machine import machine_info  # noqa: E402

from ddsp_synth.audio_io import atomic_write_text  # noqa: E402

INPUT = ROOT.parent / "shared" / "data" / "train" / "flute.flac"
PRESET = ROOT / "examples" / "presets" / "warm_violin.json"
CASES = ("transfer/off", "transfer/twins", "transfer/real", "stream/off", "stream/twins")
BLOCK_MS = 10.0


def _input(seconds: float, sr: int):
    from ddsp_synth.audio_io import load_audio

    x = load_audio(INPUT, sr)
    return x[60 * sr : int((60 + seconds) * sr)]


def run_case(case: str, seconds: float, repeats: int, preset_path: Path) -> dict:
    """One case in this process: the best of ``repeats`` timings (s), the real-time factor
    (seconds of audio per second of compute) and, for streams, per-block compute."""
    import numpy as np
    import torch

    from ddsp_synth.model import load_model, resolve_model
    from ddsp_synth.rack import Rack, read_preset
    from ddsp_synth.streaming import stream_audio
    from ddsp_synth.transfer import TransferOptions, transfer_audio

    torch.set_num_threads(1)
    model, meta = load_model(resolve_model("violin"))
    sr = model.config.synth.sample_rate
    x = _input(seconds, sr)
    kind, rack = case.split("/")
    preset = read_preset(preset_path) if rack != "off" else None
    times, blocks = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        if kind == "transfer":
            options = TransferOptions(effects=preset if rack == "twins" else None)
            y, _ = transfer_audio(model, meta, x, options, cache=False)
            if rack == "real":
                with Rack(preset, sr, engine="real") as real:
                    y = real.process(y)
        else:
            block = int(round(BLOCK_MS * sr / 1000))
            y, report = stream_audio(model, x, block, engine="onnx", effects=preset)
            blocks = report["compute_total"]
        times.append(time.perf_counter() - t0)
        assert np.isfinite(y).all()
    best = min(times)
    return {"case": case, "seconds_audio": len(x) / sr, "best_s": best,
            "median_s": float(np.median(times)), "rtf": len(x) / sr / best,
            "block_ms": BLOCK_MS if kind == "stream" else None, "per_block": blocks,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _row(r: dict) -> str:
    b = r["per_block"]
    blocks = (f"{b['median_ms']:.2f} / {b['p99_ms']:.2f} / {b['max_ms']:.2f}" if b else "-")
    return (f"| {r['case']} | {r['best_s']:.2f} | {r['rtf']:.1f}x | {blocks} | "
            f"{r['peak_rss_mb']:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", type=Path, default=PRESET)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one case, in a child process
    ap.add_argument("--out", type=Path, default=HERE / "results_rack.json")
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.seconds, args.repeats, args.preset)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    print("| case | best time (s) | real-time factor | per block median / p99 / max (ms) "
          "| peak memory (MB) |\n|---|---|---|---|---|")
    for case in args.cases.split(","):
        done = subprocess.run([sys.executable, __file__, "--case", case, "--seconds",
                               str(args.seconds), "--repeats", str(args.repeats), "--preset",
                               str(args.preset)], env=env, check=True, capture_output=True,
                              text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(_row(rows[-1]), flush=True)
    result = {"machine": machine_info(), "preset": str(args.preset), "rows": rows,
              "input": f"{INPUT.name} 60..{60 + args.seconds:g} s", "model": "violin",
              "threads": 1}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
