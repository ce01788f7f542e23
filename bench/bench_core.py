"""Benchmark of the DSP core: synthesis real-time factor, synth+loss training step, memory.

Each case runs in its own subprocess so that its peak RSS is its own. Prints a Markdown
table and writes ``bench/results_core.json``.

    python bench/bench_core.py [--repeats N] [--out bench/results_core.json]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import machine_line

HERE = Path(__file__).resolve().parent


def melody_f0(n_frames: int, frame_rate: float):
    """[1, n_frames, 1] a chromatic melody, two notes a second, with 5.5 Hz vibrato."""
    import torch

    t = torch.arange(n_frames) / frame_rate
    semitone = torch.floor(t * 2) % 12
    f0 = 220 * 2 ** (semitone / 12) * (1 + 0.01 * torch.sin(2 * math.pi * 5.5 * t))
    return f0[None, :, None]


def case_synth(threads: int, repeats: int, random_f0: bool = False) -> dict:
    """60 s at 16 kHz: 100 harmonics + 65 noise bands + 1 s reverb, batch 1, no grad.

    f0 is a melody with vibrato; ``random_f0`` draws every frame independently (a stress case
    in which a harmonic crosses Nyquist inside most blocks and needs the per-sample mask).
    """
    import torch

    from ddsp_synth.chains import synth_chain
    from ddsp_synth.stages.synth import SynthConfig

    torch.set_num_threads(threads)
    cfg = SynthConfig()
    synth = synth_chain(cfg).eval()
    seconds = 60.0
    n_frames = int(seconds * cfg.frame_rate_hz)
    gen = torch.Generator().manual_seed(0)
    if random_f0:
        f0 = 220 + 200 * torch.rand(1, n_frames, 1, generator=gen)
    else:
        f0 = melody_f0(n_frames, cfg.frame_rate_hz)
    raw = torch.randn(1, n_frames, synth.n_raw, generator=gen)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t = time.perf_counter()
            synth(None, synth.params_from_raw(raw, f0))
            times.append(time.perf_counter() - t)
    best = min(times[1:])
    return {"seconds_audio": seconds, "time_s": best, "rtf": best / seconds}


def case_train_step(threads: int, repeats: int) -> dict:
    """Forward + backward of synth + multi-resolution loss, batch 16 x 4 s at 16 kHz."""
    import torch

    from ddsp_synth.chains import synth_chain
    from ddsp_synth.losses import multi_resolution_stft_loss
    from ddsp_synth.stages.synth import SynthConfig

    torch.set_num_threads(threads)
    cfg = SynthConfig()
    synth = synth_chain(cfg)
    batch, n_frames = 16, int(4 * cfg.frame_rate_hz)
    gen = torch.Generator().manual_seed(0)
    f0 = 100 + 500 * torch.rand(batch, n_frames, 1, generator=gen)
    raw = torch.randn(batch, n_frames, synth.n_raw, generator=gen, requires_grad=True)
    target = 0.1 * torch.randn(batch, n_frames * cfg.hop, generator=gen)
    times = []
    for _ in range(repeats + 2):
        t = time.perf_counter()
        loss = multi_resolution_stft_loss(synth(None, synth.params_from_raw(raw, f0))[0],
                                          target)
        loss.backward()
        times.append(time.perf_counter() - t)
    times = times[2:]
    return {"batch": batch, "seconds_each": 4.0, "time_s_median": float(np.median(times)),
            "time_s_min": min(times)}


def case_phase_drift(threads: int, repeats: int) -> dict:
    """Max phase error over harmonics below Nyquist after 60 s of 440 Hz at 16 kHz."""
    import torch

    from ddsp_synth.dsp.oscillators import harmonic_synthesis

    sr, hop, f0_hz, n_harm = 16000, 160, 440, 18
    n_frames = 60 * sr // hop
    y, _ = harmonic_synthesis(torch.full((1, n_frames, 1), float(f0_hz)),
                                   torch.full((1, n_frames, 1), 0.9),
                                   torch.ones(1, n_frames, n_harm), sr, hop)
    seg = y[0, -8000:].double().numpy()
    n = np.arange(n_frames * hop - 8000, n_frames * hop, dtype=np.int64)
    errors = []
    for k in range(1, n_harm + 1):
        theta = 2 * np.pi * ((k * f0_hz * n) % sr) / sr
        errors.append(abs(math.atan2(seg @ np.cos(theta), seg @ np.sin(theta))))
    return {"max_phase_error_rad": max(errors), "fundamental_error_rad": errors[0],
            "worst_harmonic": int(np.argmax(errors)) + 1}


CASES = {"synth": case_synth,
         "synth_random_f0": lambda threads, repeats: case_synth(threads, repeats, True), "train_step": case_train_step, "phase_drift": case_phase_drift}


def run_child(case: str, threads: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", case, "--threads", str(threads),
                          "--repeats", str(repeats)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "results_core.json"))
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = CASES[args.child](args.threads, args.repeats)
        result["threads"] = args.threads
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    results = {
        "machine": machine_line(),
        "synth_60s_1thread": run_child("synth", 1, args.repeats),
        "synth_60s_2threads": run_child("synth", 2, args.repeats),
        "synth_60s_random_f0_1thread": run_child("synth_random_f0", 1, args.repeats),
        "train_step_b16x4s_2threads": run_child("train_step", 2, args.repeats),
        "phase_drift_60s": run_child("phase_drift", 1, 1),
    }
    rows = [
        ("synthesis RTF, 60 s, 1 thread (target <= 0.01)",
         f"{results['synth_60s_1thread']['rtf']:.4f}",
         f"{results['synth_60s_1thread']['peak_rss_mb']:.0f} MB"),
        ("synthesis RTF, 60 s, 2 threads", f"{results['synth_60s_2threads']['rtf']:.4f}",
         f"{results['synth_60s_2threads']['peak_rss_mb']:.0f} MB"),
        ("synthesis RTF, 60 s, 1 thread, random f0 every frame (stress)",
         f"{results['synth_60s_random_f0_1thread']['rtf']:.4f}",
         f"{results['synth_60s_random_f0_1thread']['peak_rss_mb']:.0f} MB"),
        ("synth + loss fwd+bwd, batch 16 x 4 s, 2 threads (target <= 1 s)",
         f"{results['train_step_b16x4s_2threads']['time_s_median']:.3f} s",
         f"{results['train_step_b16x4s_2threads']['peak_rss_mb']:.0f} MB"),
        ("phase error after 60 s at 440 Hz, worst harmonic (target < 1e-3 rad)",
         f"{results['phase_drift_60s']['max_phase_error_rad']:.2e} rad", ""),
    ]
    print(f"machine: {results['machine']}\n")
    print("| measure | value | peak RSS |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
