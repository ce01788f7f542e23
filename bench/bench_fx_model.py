"""Benchmark: training steps/s of an instrument model with effect stages, per gradient method,
and peak memory.

The model is the shipped alto sax's settings (width 256, 100 harmonics, 65 noise bands, 0.2 s
room) followed by ``compressor, distortion, highshelf`` set once (learned vectors), their
gradient by each method; ``plain`` is the same model without effects. One training step =
forward, the loss, backward, gradient clipping and an Adam update on a batch of 8 x 4 s at
16 kHz, one torch thread; real devices (spsa, hybrid) run in one worker process (its CPU time
is the step's too). Each method runs in its own subprocess: peak RSS of the training process
and of its worker processes.

    python bench/bench_fx_model.py [--steps 6] [--methods plain autodiff spsa hybrid proxy]

Prints a Markdown table and writes ``bench/results_fx_model.json`` (atomically); when
``bench/results_fx_experiment.json`` is there (``bench/fx_experiment.py``: the five ways trained
for the same budget, held-out figures), its table too, and it goes into the JSON.
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
sys.path.insert(0, str(HERE))
from machine import machine_info, machine_line  # noqa: E402

METHODS = ("plain", "autodiff", "spsa", "hybrid", "proxy")
EFFECTS = ("compressor", "distortion", "highshelf")


def model_config(method: str):
    from ddsp_synth.model import ModelConfig
    from ddsp_synth.model_effects import EffectsConfig
    from ddsp_synth.stages.synth import SynthConfig

    synth = SynthConfig(reverb_s=0.2)
    if method == "plain":
        return ModelConfig(synth=synth)
    suffix = "" if method == "autodiff" else f"@{method}"
    processors = synth.processors + tuple(e + suffix for e in EFFECTS)
    return ModelConfig(synth=SynthConfig(reverb_s=0.2, processors=processors),
                       effects=EffectsConfig(sources=("once",) * len(EFFECTS)))


def batch(n: int = 8, seconds: float = 4.0, sr: int = 16000, seed: int = 0) -> dict:
    """A batch of harmonic notes with vibrato and swells (f0, loudness and audio)."""
    import numpy as np
    import torch

    from ddsp_synth.features import FeatureConfig, compute_loudness

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    audio, f0s, louds = [], [], []
    for _ in range(n):
        f0 = rng.uniform(110, 440) * 2 ** (0.02 * np.sin(2 * np.pi * 5 * t))
        env = 0.05 + 0.5 * np.sin(np.pi * t / seconds) ** 2
        y = env * sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / sr) / k for k in range(1, 10))
        audio.append(y.astype(np.float32))
        frames = f0[:: sr // 100][: int(seconds * 100)]
        f0s.append(frames.astype(np.float32))
        louds.append(compute_loudness(y.astype(np.float32), FeatureConfig())[: len(frames)])
    return {"audio": torch.from_numpy(np.stack(audio)),
            "f0_hz": torch.from_numpy(np.stack(f0s))[..., None],
            "loudness_db": torch.from_numpy(np.stack(louds).astype(np.float32))[..., None]}


def case(method: str, steps: int) -> dict:
    """Steps of one method in this process: their median time and the peak memory."""
    import torch

    from ddsp_synth.losses import training_loss
    from ddsp_synth.model import DDSPModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = model_config(method)
    model = DDSPModel(cfg).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = batch()
    times = []
    for _ in range(steps + 1):  # the first step compiles kernels and starts workers
        t0 = time.perf_counter()
        cpu0 = _children_cpu_s()
        out = model(data["f0_hz"], data["loudness_db"])
        loss = training_loss(out, data["audio"], cfg.loss, cfg.features)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        times.append((time.perf_counter() - t0, _children_cpu_s() - cpu0))
    workers = _worker_peak_mb(model)
    calls = sum(getattr(s, "calls", 0) for s in model.synth.stages())
    model.close()
    wall = sorted(t for t, _ in times[1:])
    step_s = wall[len(wall) // 2]
    return {"method": method, "steps": steps, "step_s": step_s, "steps_per_s": 1.0 / step_s,
            "worker_cpu_s_per_step": sum(c for _, c in times[1:]) / steps,
            "device_runs_per_step": calls / (steps + 1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mb": workers,
            "trainable_parameters": sum(p.numel() for p in model.parameters()
                                        if p.requires_grad)}


def _children_cpu_s() -> float:
    """CPU seconds of this process's live worker processes (from /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in _worker_pids():
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def _worker_pids() -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"ddsp_synth.blackbox.worker" in cmd:
            out.append(int(proc.name))
    return out


def _worker_peak_mb(model) -> float:
    """Largest peak RSS (VmHWM) among the model's worker processes, MB (0: none)."""
    peak = 0.0
    for pid in _worker_pids():
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


def experiment_summary(path: Path) -> list[dict] | None:
    """The effect-stage experiment (``bench/fx_experiment.py``: same budget and seed, five
    ways, held-out figures): printed as a table and returned, or None when not run."""
    if not path.exists():
        return None
    exp = json.loads(path.read_text())
    print(f"\nexperiment ({path.name}): {exp['minutes']:g} min each, seed {exp['seed']}, "
          f"from {Path(exp['init']).name}; held-out {len(exp['heldout_files'])} performances\n")
    print("| method | steps | steps/s | f0 L1 (cents) | loudness L1 (dB) | spectral loss |")
    print("|---|---|---|---|---|---|")
    rows = []
    for r in exp["results"]:
        h = r["heldout"]
        print(f"| {r['method']} | {r['steps']} | {r['steps_per_s']:.2f} | "
              f"{h['f0_l1_cents']:.1f} | {h['loudness_l1_db']:.2f} | {h['spectral_loss']:.3f} |")
        rows.append({"method": r["method"], "steps": r["steps"],
                     "steps_per_s": r["steps_per_s"], **h,
                     "settings_vs_truth": r.get("settings_vs_truth")})
    return rows


def run_case(method: str, steps: int) -> dict:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench_fx_model import case; "
            "print(json.dumps(case(sys.argv[2], int(sys.argv[3]))))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(HERE), method, str(steps)],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per method")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default=str(HERE / "results_fx_model.json"))
    parser.add_argument("--experiment", default=str(HERE / "results_fx_experiment.json"),
                        help="the experiment's results (bench/fx_experiment.py), summarised "
                             "here when present")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    for method in args.methods:
        r = run_case(method, args.steps)
        r["load_average"] = os.getloadavg()
        results.append(r)
        print(f"{method}: {r['step_s']:.2f} s/step", flush=True)
    print(f"\n{machine_line()}; batch 8 x 4 s, 1 torch thread, real devices in 1 worker; "
          f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| method | step (median) | steps/s | worker CPU per step | device runs per step | "
          "peak RSS: trainer / worker |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['step_s']:.2f} s | {r['steps_per_s']:.2f} | "
              f"{r['worker_cpu_s_per_step']:.2f} s | {r['device_runs_per_step']:.1f} | "
              f"{r['peak_rss_mb']:.0f} MB / {r['worker_peak_rss_mb']:.0f} MB |")
    experiment = experiment_summary(Path(args.experiment))
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")  # atomic: a half-written file is never left
    tmp.write_text(json.dumps({
        "benchmark": "training steps/s and peak memory of an instrument model with effects",
        "machine": machine_info(), "load_average_before": load_before,
        "steps_per_method": args.steps, "batch": "8 x 4 s, 16 kHz", "results": results,
        "experiment": experiment},
        indent=2) + "\n")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
