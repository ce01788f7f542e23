"""Time to an instrument: minutes of training -> quality on unseen performances, as a curve.

Runs what the README tells a musician to run on three minutes of a new instrument —
``ddsp-synth prepare`` then ``ddsp-synth train --max-minutes M`` — keeping a checkpoint every
``--checkpoint-every`` steps, then exports the checkpoints nearest to a few wall-time marks and
evaluates each with ``ddsp-synth eval`` on held-out performances the training never saw
(other generator seeds). Prints the curve and writes JSON.

    python scripts/render_heldout.py            # clarinet/oboe renders into data/new (fluidsynth)
    python bench/bench_time_to_instrument.py --name clarinet \\
        --train data/new/clarinet_3100.flac --heldout data/new/clarinet_7100.flac --minutes 15

``--init-from auto|NAME|none`` compares warm starts with training from scratch; ``--steps N``
replaces the time budget by a step count (for runs on a machine that is busy with other work:
the curve is then read against steps; ``--minutes`` on a quiet machine is the real figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddsp_synth.cli import main as cli  # noqa: E402


def _checkpoints(run: Path) -> list[tuple[int, float, Path]]:
    out = []
    for d in sorted((run / "checkpoints").glob("step-*")):
        if d.is_dir() and (d / "state.json").exists() and not d.name.endswith(".tmp"):
            state = json.loads((d / "state.json").read_text())
            out.append((state["step"], state["wall_s"], d))
    return out


def _prepare_and_train(args, work: Path, data: Path, run: Path, overrides: dict):
    """Fresh work folder, ``prepare`` and ``train`` with every checkpoint kept; returns the
    seconds each took."""
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    assert cli(["prepare", args.train, "-o", str(data), "--quiet"]) == 0
    prepare_s = time.perf_counter() - t0
    train_argv = ["train", str(data), "-o", str(run), "--quiet",
                  "--checkpoint-every", str(args.checkpoint_every)]
    if args.steps:
        train_argv += ["--steps", str(args.steps)]
    else:
        train_argv += ["--max-minutes", str(args.minutes)]
    if args.init_from != "none":
        train_argv += ["--init-from", args.init_from]
    if args.config:
        train_argv += ["--config", args.config]
    if args.num_threads:
        train_argv += ["--num-threads", str(args.num_threads)]
    # keep every checkpoint: the curve needs them
    keep = work / "keep.json"
    overrides.setdefault("train", {})["keep_checkpoints"] = 1000
    keep.write_text(json.dumps(overrides))
    if args.config:
        train_argv[train_argv.index("--config") + 1] = str(keep)
    else:
        train_argv += ["--config", str(keep)]
    t0 = time.perf_counter()
    assert cli(train_argv) == 0
    train_wall_s = time.perf_counter() - t0
    return prepare_s, train_wall_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--train", required=True, help="the instrument's recordings (3 minutes)")
    ap.add_argument("--heldout", required=True, nargs="+", help="unseen performances")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, help="a step budget instead of --minutes")
    ap.add_argument("--marks", default="2,5,10,15", help="minutes (or, with --steps, steps) "
                    "at which the curve is measured")
    ap.add_argument("--init-from", default="none", help="auto, a shipped name, or none")
    ap.add_argument("--checkpoint-every", type=int, default=50)
    ap.add_argument("--work", default=str(ROOT / "runs" / "time_to_instrument"))
    ap.add_argument("--config", help="train --config overrides (JSON file)")
    ap.add_argument("--num-threads", type=int)
    ap.add_argument("--out", help="JSON (default bench/results_time_to_instrument_NAME.json)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="measure the curve of the run already in --work (interrupted while "
                         "evaluating); prepare and training times are then not reported")
    args = ap.parse_args(argv)
    tag = f"{args.name}-{args.init_from}" + (f"-{Path(args.config).stem}" if args.config else "")
    work = Path(args.work) / tag
    data, run = work / "data", work / "run"
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    prepare_s = train_wall_s = None
    if not args.evaluate_only:
        prepare_s, train_wall_s = _prepare_and_train(args, work, data, run, overrides)
    elif not (run / "checkpoints").is_dir():
        raise SystemExit(f"--evaluate-only: no run in {work}")
    checkpoints = _checkpoints(run)
    marks = [float(m) for m in args.marks.split(",")]
    rows = []
    for mark in marks:
        if args.steps:
            chosen = min(checkpoints, key=lambda c: abs(c[0] - mark))
        else:
            chosen = min(checkpoints, key=lambda c: abs(c[1] / 60 - mark))
        step, wall_s, path = chosen
        # export that checkpoint alone: a run folder with just it
        single = work / f"at-{step}"
        (single / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copy(run / "run.json", single / "run.json")
        shutil.copytree(path, single / "checkpoints" / path.name, dirs_exist_ok=True)
        model_dir = work / f"model-{step}"
        assert cli(["export", str(single), "-o", str(model_dir), "--force"]) == 0
        metrics = {}
        for held in args.heldout:
            from contextlib import redirect_stdout
            from io import StringIO

            buf = StringIO()
            with redirect_stdout(buf):
                assert cli(["eval", str(model_dir), held]) == 0
            metrics[Path(held).stem] = json.loads(buf.getvalue())
        f0 = sum(m["f0_l1_cents"] for m in metrics.values()) / len(metrics)
        loud = sum(m["loudness_l1_db"] for m in metrics.values()) / len(metrics)
        rows.append({"mark": mark, "step": step, "train_minutes": wall_s / 60,
                     "f0_l1_cents": f0, "loudness_l1_db": loud, "per_file": metrics})
        print(f"{'step' if args.steps else 'minute'} {mark:g}: step {step}, "
              f"{wall_s / 60:.1f} min of training -> f0 L1 {f0:.1f} cents, loudness L1 "
              f"{loud:.2f} dB (unseen)", flush=True)
    result = {"name": args.name, "init_from": args.init_from, "config": overrides,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d"), "prepare_s": prepare_s,
              "train_wall_s": train_wall_s, "budget": {"steps": args.steps} if args.steps
              else {"minutes": args.minutes}, "curve": rows}
    out = Path(args.out or ROOT / "bench" / f"results_time_to_instrument_{tag}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
