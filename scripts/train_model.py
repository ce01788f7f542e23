"""Train, export, evaluate and document one shipped instrument model.

    python scripts/train_model.py violin --minutes 50

1. ``ddsp-synth prepare ../shared/data/train/NAME.flac -o data/NAME`` (last 20 s held out);
2. ``ddsp-synth train data/NAME -o runs/NAME`` for ``--minutes`` of training time in total
   (an existing run is resumed until that budget is spent);
3. ``ddsp-synth export runs/NAME -o models/NAME --force``;
4. ``ddsp-synth eval models/NAME data/NAME`` on the held-out part, and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"
EXE = [sys.executable, "-m", "ddsp_synth"]


def run(args: list[str]) -> str:
    print("+ ddsp-synth " + " ".join(args), flush=True)
    out = subprocess.run(EXE + args, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def model_card(name: str, meta: dict, metrics: dict, metrics_full: dict | None, source: Path) -> str:
    tr = meta["training"]
    hist = tr.get("loss_history", [])
    rows = "\n".join(f"| {s} | {w / 60:.1f} | {loss:.3f} |" for s, w, loss in hist)
    stats = meta["dataset_stats"]
    full = ""
    if metrics_full:
        full = (f"\nMeasured with CREPE full on the output instead (input f0 still from tiny): "
                f"f0 L1 {metrics_full['f0_l1_cents']:.1f} cents, median "
                f"{metrics_full['f0_median_cents']:.1f}, outliers "
                f"{metrics_full['f0_outlier_ratio']:.2%}.\n")
    return f"""# {name} — ddsp_synth model card

| | |
|---|---|
| data | `{source.name}` from the project's shared data: FluidR3_GM {name} (MIT) rendered from seeded random melodies, 16 kHz mono, 180 s; last 20 s held out |
| model | DDSP solo-instrument decoder, width {meta['model']['decoder']['hidden']}, {meta['n_parameters']:,} parameters; {meta['model']['synth']['n_harmonics']} harmonics, {meta['model']['synth']['n_noise_bands']} noise bands, {meta['model']['synth']['reverb_s']:g} s learned reverb |
| features | {meta['sample_rate']} Hz, {meta['frame_rate_hz']:g} frames/s, pitch {meta['pitch_model']} (deterministic decoding), A-weighted loudness |
| training | {tr['steps']} steps of batch {tr['train_config']['batch_size']} x 4 s, {tr['wall_s'] / 60:.1f} min of training time on {cpu_name()} (2 cores, CPU only) |
| pitch range (voiced, train part) | MIDI {stats['pitch_midi_quantiles'][5]:.1f} to {stats['pitch_midi_quantiles'][95]:.1f} (5th-95th percentile), mean {stats['pitch_midi_mean']:.1f} |
| reproduce | `python scripts/train_model.py {name} --steps {tr['steps']} --threads {tr['train_config']['num_threads'] or 2}` (made with `--minutes {round(tr['wall_s'] / 60)}`: a time budget, so the step count depends on the machine) |

## Held-out evaluation (`ddsp-synth eval models/{name} data/{name}`, last 20 s)

| metric | value | target |
|---|---|---|
| f0 L1 (CREPE {metrics['pitch_model']} on output vs input, voiced frames) | {metrics['f0_l1_cents']:.1f} cents (median {metrics['f0_median_cents']:.1f}) | <= 15 |
| f0 outliers (> 50 cents) | {metrics['f0_outlier_ratio']:.2%} | |
| loudness L1 (frames above -70 dB) | {metrics['loudness_l1_db']:.2f} dB | <= 1.5 |
| multi-resolution spectral loss | {metrics['spectral_loss']:.3f} | |
| synthesis real-time factor | {metrics['rtf']:.4f} | |
{full}
## Loss during training

| step | minutes | loss |
|---|---|---|
{rows}

## Known limits
- Trained on a sampled General MIDI {name}, not a recording of a player: articulation and
  vibrato are those of the sample set.
- Pitches far outside the training range (see above) are extrapolated; auto-adjust shifts the
  input by octaves toward the training mean.
- Short CPU training: sustained notes are close to the data, fast passages and note onsets
  are smoother than the original.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="instrument in ../shared/data/train (violin, flute, ...)")
    parser.add_argument("--minutes", type=float, default=30.0, help="total training time")
    parser.add_argument("--steps", type=int, help="train to exactly this many steps instead "
                        "(reproduces a model card's run step for step)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--full-pitch-eval", action="store_true",
                        help="also measure the output with CREPE full (slow)")
    args = parser.parse_args()
    source = SHARED / f"{args.name}.flac"
    data, runs, model = ROOT / "data" / args.name, ROOT / "runs" / args.name, ROOT / "models" / args.name
    run(["prepare", str(source), "-o", str(data), "--quiet"])
    spent = 0.0
    if (runs / "run.json").exists():
        ck = sorted((runs / "checkpoints").glob("step-*/state.json"))
        spent = json.loads(ck[-1].read_text())["wall_s"] / 60 if ck else 0.0
    left = args.minutes - spent
    if args.steps:
        resume = ["--resume"] if (runs / "run.json").exists() else []
        run(["train", str(data), "-o", str(runs), "--steps", str(args.steps), "--val-every", "500",
             "--quiet", *resume, *(["--num-threads", str(args.threads)] if args.threads else [])])
    elif left > 0.2:
        resume = ["--resume"] if spent else ["--force"] if (runs / "run.json").exists() else []
        if not spent and (model / "config.json").exists():
            resume += ["--init-from", str(model)]  # continue a shipped model (fresh optimiser)
        run(["train", str(data), "-o", str(runs), "--steps", "1000000", "--max-minutes",
             f"{left:.2f}", "--val-every", "500", "--quiet", *resume,
             *(["--num-threads", str(args.threads)] if args.threads else [])])
    run(["export", str(runs), "-o", str(model), "--force"])
    metrics = json.loads(run(["eval", str(model), str(data)]))
    metrics_full = (json.loads(run(["eval", str(model), str(data), "--pitch-model", "full"]))
                    if args.full_pitch_eval else None)
    meta = json.loads((model / "config.json").read_text())
    (model / "eval.json").write_text(json.dumps({"tiny": metrics, "full": metrics_full}, indent=2))
    (model / "MODEL_CARD.md").write_text(model_card(args.name, meta, metrics, metrics_full, source))
    (model / "train_config.json").write_text(json.dumps(
        {"model": meta["model"], "train": meta["training"]["train_config"]}, indent=2))
    print(f"{args.name}: f0 L1 {metrics['f0_l1_cents']:.1f} cents, loudness L1 "
          f"{metrics['loudness_l1_db']:.2f} dB -> {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
