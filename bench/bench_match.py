"""Matching benchmark: ``ddsp-synth match`` on tasks it makes itself, every method, several seeds.

A task is a chain of 1 to 4 devices with parameters drawn at random (from the plausible
ranges in ``DRAWS``: a boost or cut of at least 3 dB, a compressor that compresses), a 4 s
clip of the shared recordings (``../shared/data/train/*.flac``, a synthetic tone without
them) as DRY, and TARGET = DRY through pedalboard with those parameters. Each (task, method,
seed) runs :func:`ddsp_synth.match.match_files` with its defaults (time budget included) and
is judged by

* ``rel_spec`` = MR log-magnitude distance(matched, target) / distance(dry, target)
  (``report.json``; matched = the dry file through the real chain),
* parameter error: octaves for frequencies, dB for gains / threshold / drive, and octaves
  (log2 of the ratio) for q, ratio, attack and release,
* wall time of the whole call, and real-device evaluations.

Goals (issue 11): median rel_spec <= 0.1 for autodiff and cma, <= 0.3 for spsa and hybrid,
each within 60 s per task on the project's 2-core machine.

Every finished run is appended to the JSON at once, so an interrupted run continues with
``--resume``. Prints a Markdown table; writes ``bench/results_match.json``.

    python bench/bench_match.py                          # 20 tasks x 5 methods x 3 seeds
    python bench/bench_match.py --tasks 4 --seeds 1 --methods autodiff,cma   # a quick subset
    python bench/bench_match.py --resume                 # continue an interrupted run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from machine import machine_info  # noqa: E402

import numpy as np  # noqa: E402

SR = 16000
CLIP_SECONDS = 4.0
METHODS = ("autodiff", "cma", "spsa", "hybrid", "proxy")
GOALS = {"autodiff": 0.1, "cma": 0.1, "spsa": 0.3, "hybrid": 0.3}
TIME_GOAL_S = 60.0
CHAINS = (
    ("peak",),
    ("lowshelf", "highshelf"),
    ("compressor",),
    ("distortion",),
    ("peak", "compressor"),
    ("highpass", "peak", "distortion"),
    ("compressor", "highshelf"),
    ("lowshelf", "peak", "compressor", "distortion"),
)
# (low, high, scale) per device and parameter; gains get a random sign.
DRAWS = {
    "peak": {"cutoff_frequency_hz": (150, 5000, "log"), "gain_db": (3, 12, "signed"),
             "q": (0.5, 4, "log")},
    "lowshelf": {"cutoff_frequency_hz": (80, 600, "log"), "gain_db": (3, 12, "signed"),
                 "q": (0.5, 1.5, "log")},
    "highshelf": {"cutoff_frequency_hz": (1500, 6000, "log"), "gain_db": (3, 12, "signed"),
                  "q": (0.5, 1.5, "log")},
    "highpass": {"cutoff_frequency_hz": (50, 600, "log")},
    "lowpass": {"cutoff_frequency_hz": (1500, 6000, "log")},
    "compressor": {"threshold_db": (-40, -15, "linear"), "ratio": (2, 10, "log"),
                   "attack_ms": (1, 30, "log"), "release_ms": (30, 500, "log")},
    "distortion": {"drive_db": (6, 30, "linear")},
}
DB_PARAMS = ("gain_db", "threshold_db", "drive_db")


def draw(rng, low, high, scale):
    if scale == "log":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if scale == "signed":
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(low, high))
    return float(rng.uniform(low, high))


def clips(n: int, rng) -> list[np.ndarray]:
    """``n`` 4 s clips of the shared recordings (not too quiet), or synthetic tones."""
    from ddsp_synth.audio_io import load_audio

    root = HERE.parent.parent / "shared" / "data" / "train"
    files = sorted(root.glob("*.flac")) if root.is_dir() else []
    audio = [load_audio(f, SR) for f in files]
    out, size = [], int(CLIP_SECONDS * SR)
    while len(out) < n:
        if audio:
            a = audio[rng.integers(len(audio))]
            start = int(rng.integers(len(a) - size))
            clip = a[start : start + size]
            if np.sqrt(np.mean(clip ** 2)) < 0.02:
                continue
        else:
            t = np.arange(size) / SR
            f0 = rng.uniform(110, 660)
            clip = 0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12)
                             if k * f0 < SR / 2) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
        out.append(clip.astype(np.float32))
    return out


def make_tasks(n_tasks: int, seed: int = 1234) -> list[dict]:
    rng = np.random.default_rng(seed)
    audio = clips(n_tasks, rng)
    tasks = []
    for i in range(n_tasks):
        chain = CHAINS[i % len(CHAINS)]
        params = [{k: draw(rng, *v) for k, v in DRAWS[d].items()} for d in chain]
        tasks.append({"id": i, "chain": list(chain), "params": params, "audio": audio[i]})
    return tasks


def render_target(task) -> np.ndarray:
    from ddsp_synth.gradients.methods import real_stage
    from ddsp_synth.stages.params import from_dict
    from ddsp_synth.stages.registry import make_device

    devices = [make_device(name, SR) for name in task["chain"]]
    values = np.concatenate([from_dict(d.params, v, d.name) for d, v in zip(devices,
                                                                              task["params"])])
    with real_stage(devices, SR // 100, n_workers=0) as real:
        return real.run(task["audio"][None], values[None])[0]


def param_errors(truth: list[dict], found: list[dict]) -> dict:
    """Per class: list of absolute errors (octaves for Hz and ratios/times, dB for dB)."""
    errs = {"freq_oct": [], "db": [], "other_oct": []}
    for t, f in zip(truth, found):
        for name, v in t.items():
            est = f["params"][name]
            if name.endswith("_hz"):
                errs["freq_oct"].append(abs(math.log2(est / v)))
            elif name in DB_PARAMS:
                errs["db"].append(abs(est - v))
            else:
                errs["other_oct"].append(abs(math.log2(est / v)))
    return errs


def run_one(task, method: str, seed: int, workdir: Path, target: np.ndarray) -> dict:
    import soundfile as sf

    from ddsp_synth.match import match_files

    d, t = workdir / "dry.wav", workdir / "target.wav"
    sf.write(d, task["audio"], SR, subtype="FLOAT")
    sf.write(t, target, SR, subtype="FLOAT")
    t0 = time.monotonic()
    try:
        report = match_files(d, t, ",".join(task["chain"]), method, workdir / "out", seed=seed,
                             force=True, progress=False)
    except Exception as err:  # a failed run is a result too
        return {"task": task["id"], "method": method, "seed": seed,
                "error": f"{type(err).__name__}: {err}"}
    wall = time.monotonic() - t0
    errs = param_errors(task["params"], report["chain"])
    return {"task": task["id"], "chain": task["chain"], "method": method, "seed": seed,
            "rel_spec": report["rel_spec"], "wall_seconds": wall,
            "optimisation_seconds": report["optimisation_seconds"],
            "device_evaluations": report["device_evaluations"],
            "iterations": report["iterations"],
            "param_error": {k: float(np.median(v)) if v else None for k, v in errs.items()},
            "found": report["chain"], "truth": task["params"]}


def summarise(rows: list[dict], methods) -> list[dict]:
    out = []
    for m in methods:
        ok = [r for r in rows if r["method"] == m and "rel_spec" in r]
        failed = [r for r in rows if r["method"] == m and "error" in r]
        if not ok:
            out.append({"method": m, "runs": 0, "failed": len(failed)})
            continue
        rel = np.array([r["rel_spec"] for r in ok])
        wall = np.array([r["wall_seconds"] for r in ok])

        def med(key):
            vals = [r["param_error"][key] for r in ok if r["param_error"][key] is not None]
            return float(np.median(vals)) if vals else None

        out.append({"method": m, "runs": len(ok), "failed": len(failed),
                    "rel_spec_median": float(np.median(rel)), "rel_spec_worst": float(rel.max()),
                    "rel_spec_p90": float(np.percentile(rel, 90)),
                    "freq_error_oct_median": med("freq_oct"), "db_error_median": med("db"),
                    "other_error_oct_median": med("other_oct"),
                    "wall_seconds_median": float(np.median(wall)),
                    "wall_seconds_max": float(wall.max()),
                    "device_evaluations_median": float(np.median(
                        [r["device_evaluations"] for r in ok])),
                    "goal": GOALS.get(m),
                    "meets_goal": (bool(np.median(rel) <= GOALS[m] and wall.max() <= TIME_GOAL_S)
                                   if m in GOALS else None)})
    return out


def table(summary: list[dict]) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["| method | runs | rel_spec median | worst | freq err (oct) | dB err | q/ratio/"
             "time err (oct) | wall s median / max | device evals | goal |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if not s["runs"]:
            lines.append(f"| {s['method']} | 0 ({s['failed']} failed) | | | | | | | | |")
            continue
        goal = "-" if s["goal"] is None else (
            f"<= {s['goal']}: {'met' if s['meets_goal'] else 'not met'}")
        failed = f" (+{s['failed']} failed)" if s["failed"] else ""
        lines.append(
            f"| {s['method']} | {s['runs']}{failed} "
            f"| {s['rel_spec_median']:.3f} | {s['rel_spec_worst']:.3f} "
            f"| {f(s['freq_error_oct_median'], '.3f')} | {f(s['db_error_median'], '.2f')} "
            f"| {f(s['other_error_oct_median'], '.3f')} "
            f"| {s['wall_seconds_median']:.1f} / {s['wall_seconds_max']:.1f} "
            f"| {s['device_evaluations_median']:.0f} | {goal} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20, help="tasks (default 20)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per task and method")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--task-ids", default=None, help="run only these task ids (e.g. 0,3,5)")
    parser.add_argument("--resume", action="store_true", help="skip runs already in --out")
    parser.add_argument("--out", default=str(HERE / "results_match.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    out = Path(args.out)
    result = {"machine": machine_info(), "settings": vars(args), "runs": []}
    if args.resume and out.exists():
        previous = json.loads(out.read_text())
        result["runs"] = previous.get("runs", [])
        result["machine"]["resumed_from"] = previous.get("machine")
    done = {(r["task"], r["method"], r["seed"]) for r in result["runs"]}
    tasks = make_tasks(args.tasks)
    if args.task_ids:
        keep = {int(i) for i in args.task_ids.split(",")}
        tasks = [t for t in tasks if t["id"] in keep]
    targets = {}
    with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
        # Seed by seed over all tasks, so that a partial run covers every chain.
        for seed in range(args.seeds):
            for task in tasks:
                if task["id"] not in targets:
                    targets[task["id"]] = render_target(task)
                target = targets[task["id"]]
                for method in methods:
                    if (task["id"], method, seed) in done:
                        continue
                    row = run_one(task, method, seed, Path(tmp), target)
                    result["runs"].append(row)
                    msg = row.get("error") or (f"rel_spec {row['rel_spec']:.3f}, "
                                               f"{row['wall_seconds']:.1f} s")
                    print(f"task {task['id']:2d} {'+'.join(task['chain']):40s} {method:8s} "
                          f"seed {seed}: {msg}", flush=True)
                    result["machine"]["load_average_last"] = os.getloadavg()
                    result["summary"] = summarise(result["runs"], methods)
                    text = json.dumps(result, indent=2) + "\n"
                    tmp_out = out.with_suffix(".json.tmp")
                    tmp_out.write_text(text)
                    os.replace(tmp_out, out)
    result["summary"] = summarise(result["runs"], methods)
    result["table"] = table(result["summary"])
    print(result["table"])
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
