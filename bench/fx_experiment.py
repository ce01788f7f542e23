"""The effect-stage experiment (issue 20, part 1): an instrument heard through a fixed chain,
learned five ways for the same wall-clock budget and seed.

    python scripts/render_fx_data.py models/tenorsax_amp/data_recipe.json -o data/renders/tenorsax_amp
    ddsp-synth prepare data/renders/tenorsax_amp/train/tenorsax_amp_500?.wav -o data/tenorsax_amp
    python bench/fx_experiment.py --minutes 7 [--init models/altosax] [--methods ...]

Methods (all start from the same shipped model's weights, ``--init``, same seed):

* ``plain``: no effect stages: the harmonic and noise controls must absorb the chain;
* ``autodiff``: the chain's twins, ``compressor, distortion, highshelf:q=0.707``, each set
  once (a learned vector), gradient by autodiff;
* ``spsa``, ``hybrid``: the real devices (pedalboard, in one worker process), SPSA / the
  local models' gradient;
* ``proxy``: the neural proxies (a device without one, highshelf, falls back to its twin).

Every learned-once setting starts from the same neutral values (``START``), not the truth.
After training, each model is rendered through its twins (:func:`switch_method`
``autodiff``: what the real devices render, and what ships) on the recipe's held-out
performances and measured with ``ddsp-synth eval``'s metrics (f0 L1 in cents, loudness L1 in
dB, multi-scale spectral loss, averaged over the files).

Prints a Markdown table and writes ``bench/results_fx_experiment.json`` (atomically); the runs
and exported models go to ``runs/fx_experiment/METHOD``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from machine import machine_info, machine_line  # noqa: E402

METHODS = ("plain", "autodiff", "spsa", "hybrid", "proxy")
EFFECTS = ("compressor", "distortion", "highshelf:q=0.707")
START = ("compressor.threshold_db=-6", "compressor.ratio=2", "distortion.drive_db=6",
         "highshelf.cutoff_frequency_hz=1000", "highshelf.gain_db=0")


def overrides(method: str, minutes: float, seed: int) -> dict:
    """The run's settings (``ddsp-synth train --config``)."""
    train = {"max_minutes": minutes, "steps": 10**6, "seed": seed, "num_threads": 1,
             "val_every": 0, "audio_every": 0, "checkpoint_every": 50,
             "learning_rate": 3e-4, "warmup_steps": 20, "effects_learning_rate": 0.03}
    if method == "plain":
        return {"train": train}
    suffix = "" if method == "autodiff" else f"@{method}"
    processors = ["harmonic", "noise", "reverb"] + [e + suffix for e in EFFECTS]
    return {"model": {"synth": {"processors": processors},
                      "effects": {"sources": ["once"] * len(EFFECTS), "init": list(START),
                                  "n_workers": 1}},
            "train": train}


def train_one(method: str, data: Path, run: Path, init: str, minutes: float, seed: int) -> dict:
    """Train in a subprocess (its own worker pools and memory); the summary."""
    config = run.parent / f"{method}.json"
    config.write_text(json.dumps(overrides(method, minutes, seed), indent=2))
    code = ("import json, sys; from ddsp_synth.train import train_from_overrides; "
            "s = train_from_overrides(sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), "
            "show_progress=False, force=True, init_from=sys.argv[4]); "
            "print('SUMMARY ' + json.dumps({k: s[k] for k in ('step', 'wall_s')}))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(data), str(run), str(config), init],
                         check=True, capture_output=True, text=True, env=env)
    line = [x for x in out.stdout.splitlines() if x.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


def evaluate(model_dir: Path, files: list[Path]) -> dict:
    """Held-out metrics of the model rendered through its twins, averaged over ``files``."""
    import torch

    from ddsp_synth.evaluate import evaluate_source
    from ddsp_synth.model import load_model
    from ddsp_synth.model import switch_method

    torch.set_num_threads(1)
    model, _ = load_model(model_dir)
    if model.effects is not None:
        model = switch_method(model, "autodiff")
    per_file = {}
    for f in files:
        metrics, _ = evaluate_source(model, f, "val", None, None, keep_outputs=False)
        per_file[f.name] = {k: metrics[k] for k in ("spectral_loss", "f0_l1_cents",
                                                    "loudness_l1_db")}
    mean = {k: sum(m[k] for m in per_file.values()) / len(per_file)
            for k in ("spectral_loss", "f0_l1_cents", "loudness_l1_db")}
    settings = model.effects.learned_settings() if model.effects is not None else None
    return {"heldout": mean, "per_file": per_file, "learned": settings}


def settings_error(learned: list[dict] | None, truth: list[dict]) -> dict | None:
    """{device.param: [learned, true]} for the learned-once settings."""
    if not learned:
        return None
    out = {}
    for d, t in zip(learned, truth):
        for name, value in t["params"].items():
            got = d["params"].get(name)
            if isinstance(got, float):
                out[f"{d['device']}.{name}"] = [round(got, 3), value]
    return out


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "models/tenorsax_amp/data_recipe.json"))
    parser.add_argument("--data", default=str(ROOT / "data/tenorsax_amp"))
    parser.add_argument("--heldout", default=str(ROOT / "data/renders/tenorsax_amp/heldout"))
    parser.add_argument("--runs", default=str(ROOT / "runs/fx_experiment"))
    parser.add_argument("--init", default=str(ROOT / "models/altosax"))
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default=str(HERE / "results_fx_experiment.json"))
    parser.add_argument("--force", action="store_true", help="replace an existing results file")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and not args.force:
        sys.exit(f"error: {out} exists; pass --force to replace it")
    recipe = json.loads(Path(args.recipe).read_text())
    name = recipe["name"]
    files = sorted(Path(args.heldout).glob(f"{name}_*.wav"))
    files = [f for f in files if not f.name.endswith(".dry.wav")]
    if not files:
        sys.exit(f"error: no held-out performances {name}_SEED.wav in {args.heldout}")
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    results = []
    for method in args.methods:
        run = runs / method
        t0 = time.time()
        summary = train_one(method, Path(args.data), run, args.init, args.minutes, args.seed)
        model_dir = runs / f"{method}_model"
        from ddsp_synth.cli import main as cli

        cli(["export", str(run), "-o", str(model_dir), "--last", "--force"])
        ev = evaluate(model_dir, files)
        r = {"method": method, "steps": summary["step"], "train_wall_s": summary["wall_s"],
             "steps_per_s": summary["step"] / max(summary["wall_s"], 1e-9),
             **ev, "settings_vs_truth": settings_error(ev["learned"], recipe["chain"]),
             "load_average": os.getloadavg(), "total_s": time.time() - t0}
        results.append(r)
        h = r["heldout"]
        print(f"{method}: {r['steps']} steps, spectral {h['spectral_loss']:.3f}, f0 "
              f"{h['f0_l1_cents']:.1f} cents, loudness {h['loudness_l1_db']:.2f} dB", flush=True)
        write_atomic(out, json.dumps({
            "experiment": "instrument through a fixed effect chain, five ways (issue 20.1)",
            "recipe": recipe, "init": args.init, "minutes": args.minutes, "seed": args.seed,
            "start": list(START), "heldout_files": [f.name for f in files],
            "machine": machine_info(), "results": results}, indent=2) + "\n")
    print(f"\n{machine_line()}; {args.minutes:g} min each from {Path(args.init).name}, seed "
          f"{args.seed}, 1 torch thread; held-out {len(files)} x 60 s, rendered through twins\n")
    print("| method | steps | steps/s | f0 L1 (cents) | loudness L1 (dB) | spectral loss |")
    print("|---|---|---|---|---|---|")
    for r in results:
        h = r["heldout"]
        print(f"| {r['method']} | {r['steps']} | {r['steps_per_s']:.2f} | "
              f"{h['f0_l1_cents']:.1f} | {h['loudness_l1_db']:.2f} | {h['spectral_loss']:.3f} |")
    print("\nlearned once vs the recipe's settings:")
    for r in results:
        if r["settings_vs_truth"]:
            print(f"  {r['method']}: " + ", ".join(f"{k} {v[0]:g} ({v[1]:g})"
                                                    for k, v in r["settings_vs_truth"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
