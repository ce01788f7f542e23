"""Train, export, evaluate and document one shipped instrument model.

    python scripts/train_model.py violin --minutes 50

1. ``ddsp-synth prepare ../shared/data/train/NAME.flac -o data/NAME`` (last 20 s held out);
   with ``--extra-seconds S`` the shared generator (``../shared/data/render_melodies.py``, needs
   the ``fluidsynth`` binary, ``fluid-soundfont-gm``) first
   renders S more seconds of the instrument with seed ``2000 + index`` (violin, flute, trumpet,
   altosax, cello = 2000..2004; the shared files are 1000..1004), and training uses
   ``data/NAME_xS`` = the shared file plus that render (last 20 s of each held out);
2. ``ddsp-synth train DATA -o runs/NAME[_xS]`` for ``--minutes`` of training time in total
   (an existing run is resumed until that budget is spent); ``--init-from-shipped`` starts a
   new run from the current ``models/NAME`` (fine-tuning, fresh optimiser);
3. ``ddsp-synth export RUN -o models/NAME --force``;
4. ``ddsp-synth eval models/NAME data/NAME`` on the held-out part of the shared file, and
   ``ddsp-synth eval models/NAME data/heldout/NAME_SEED.flac`` on unseen performances
   (rendered by ``scripts/render_heldout.py`` with seeds no training ever used: 7000..7004,
   7010..7014, 7020..7024), then ``MODEL_CARD.md``, ``eval.json`` and ``train_config.json``
   (which keeps the recipe: the command of every stage that led to the model, so a model is
   rebuilt from scratch by running them in order).

``--room-phase minimum`` trains nothing: it sets how ``models/NAME`` plays its learned room
(``reverb_phase``: the minimum-phase response with the learned magnitude, so the room's colour
stays and the previous note's smear no longer covers a new note's attack), records that as a
stage of the recipe, evaluates again and rewrites the card. A later ``--init-from-shipped``
stage keeps it only if its ``--config`` sets ``reverb_phase`` too.

``--config FILE`` passes settings to ``ddsp-synth train --config`` (e.g. a shorter learned
room, ``{"model": {"synth": {"reverb_s": 0.2}}}``; with ``--init-from-shipped`` the model's
weights are carried over into the new settings).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from ddsp_synth.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"
EXE = [sys.executable, "-m", "ddsp_synth"]
GENERATOR = SHARED.parent / "render_melodies.py"
INSTRUMENTS = ["violin", "flute", "trumpet", "altosax", "cello"]  # shared seeds 1000..1004
EXTRA_SEED_BASE = 2000
# Unseen performances (scripts/render_heldout.py): one 60 s render per seed base and instrument
UNSEEN_SEED_BASES = (7000, 7010, 7020)
UNSEEN_DIRS = ("heldout", "heldout_extra", "heldout_extra")


def unseen_files(name: str) -> list[Path]:
    """The instrument's unseen performances that exist (rendered by render_heldout.py)."""
    i = INSTRUMENTS.index(name)
    files = [ROOT / "data" / d / f"{name}_{base + i}.flac"
             for d, base in zip(UNSEEN_DIRS, UNSEEN_SEED_BASES)]
    return [f for f in files if f.exists()]


def run(args: list[str]) -> str:
    print("+ ddsp-synth " + " ".join(args), flush=True)
    out = subprocess.run(EXE + args, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout


def training_machines(recipe: list[dict]) -> str:
    """The CPUs the recipe's stages were trained on, as recorded when each stage ran (a card
    rewritten on another machine still names the one that trained the model)."""
    names = list(dict.fromkeys(r.get("machine") or "an unrecorded CPU" for r in recipe))
    return " and ".join(names) if names else "an unrecorded CPU"


def recipe_totals(recipe: list[dict]) -> tuple[str, str]:
    """"2132 + 2999" steps and "29.5 + 62.9" minutes of a model's stages."""
    return (" + ".join(str(r["steps"]) for r in recipe),
            " + ".join(f"{r['minutes']:.1f}" for r in recipe))


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f} %"


def _truth_cells(truth: dict | None) -> str:
    """'> 50 c (input floor) | 2x / 3x' cells of the output against MIDI truth."""
    if not truth:
        return " – | – |"
    out, inp = truth["output"]["all"], truth["input"]["all"]
    return f" {_pct(out['off_50c'])} ({_pct(inp['off_50c'])}) | {_pct(out['x2'])} / {_pct(out['x3'])} |"


def _band_rows(truth: dict) -> str:
    rows = []
    for band, label in (("below_100", "below 100 Hz"), ("100_400", "100-400 Hz"),
                        ("above_400", "above 400 Hz"), ("all", "all")):
        if band in truth["output"]:
            o, i = truth["output"][band], truth["input"][band]
            rows.append(f"| {label} | {o['frames']} | {_pct(i['off_50c'])} | {_pct(o['off_50c'])} | "
                        f"{_pct(o['x2'])} / {_pct(o['x3'])} / {_pct(o['half'])} |")
    return "\n".join(rows)


def _truth_section(name: str, unseen: dict) -> str:
    """Pitch against the MIDI of the unseen performances: resynthesis, streaming, transfer."""
    truth = unseen.get("midi_truth")
    if not truth:
        return ""
    text = f"""
Pitch against the MIDI that made the three performances (frames inside notes, first 50 ms and
last 30 ms left out; input and output read by ddsp_synth's tracker, CREPE tiny with the
harmonic check; the input's figure is the measurement floor; goals: output within 1.5 x the
floor, at most 1 % of frames at 2x or 3x the true pitch):

| band of the true pitch | frames | input > 50 c (floor) | output > 50 c | output at 2x / 3x / half |
|---|---|---|---|---|
{_band_rows(truth)}
"""
    stream = unseen.get("stream")
    if stream:
        o = stream["output"]["all"]
        text += (f"\nThe streaming engine (`ddsp-synth stream`, 10 ms blocks, online pitch "
                 f"tracking with 32 ms look-ahead), its output against the same MIDI: "
                 f"{_pct(o['off_50c'])} of frames > 50 c, {_pct(o['x2'])} at 2x, "
                 f"{_pct(o['x3'])} at 3x (its own analysis of the input: "
                 f"{_pct(stream['input']['all']['off_50c'])} > 50 c).\n")
    low = unseen.get("low_transfer")
    if low:
        o, i = low["output"]["all"], low["input"]["all"]
        below = low["output"].get("below_100")
        text += (f"\nA low instrument played by this model without auto-adjust "
                 f"(`ddsp-synth transfer FILE --model {name} --no-auto-adjust`, "
                 f"{', '.join(low['files'])}: FluidR3 bassoon, seeds of the tracker benchmark), "
                 f"against the bassoon's MIDI: output {_pct(o['off_50c'])} of frames > 50 c "
                 f"(input floor {_pct(i['off_50c'])}), {_pct(o['x2'])} at 2x, {_pct(o['x3'])} at 3x"
                 + (f"; below 100 Hz {_pct(below['off_50c'])} > 50 c" if below else "") + ".\n")
    return text


def _unseen_section(name: str, unseen: dict) -> str:
    files = unseen["tiny"]
    rows = "\n".join(
        f"| `{f}` | {m['f0_l1_cents']:.1f} ({m['f0_median_cents']:.1f}) | "
        f"{m['f0_outlier_ratio']:.2%} | {m['loudness_l1_db']:.2f} |"
        + _truth_cells(m.get("midi_truth"))
        + (f" {unseen['full'][f]['f0_l1_cents']:.1f} |" if unseen.get("full") else "")
        for f, m in files.items())
    mean = unseen["mean"]
    head_full = " f0 L1 with CREPE full on the output |" if unseen.get("full") else ""
    sep_full = "---|" if unseen.get("full") else ""
    mean_full = (f" {unseen['mean_full']['f0_l1_cents']:.1f} |" if unseen.get("full") else "")
    return f"""
## Unseen performances (the figures to quote)

Performances this model never heard, in training or in choosing it: 60 s each, rendered by the
shared generator with seeds no training used (`python scripts/render_heldout.py`), resynthesized
whole (`ddsp-synth eval models/{name} data/heldout/FILE.flac`). Targets: f0 L1 <= 10 cents,
loudness L1 <= 1 dB. The last two columns measure the output against the MIDI (below).

| performance | f0 L1 cents (median) | f0 outliers > 50 c | loudness L1 dB | vs MIDI: > 50 c (input floor) | vs MIDI: 2x / 3x |{head_full}
|---|---|---|---|---|---|{sep_full}
{rows}
| **mean** | **{mean['f0_l1_cents']:.1f}** | {mean['f0_outlier_ratio']:.2%} | **{mean['loudness_l1_db']:.2f}** |{_truth_cells(unseen.get("midi_truth"))}{mean_full}
{_truth_section(name, unseen)}"""


def model_card(name: str, meta: dict, metrics: dict, metrics_full: dict | None, source: Path,
               recipe: list[dict], extra: str = "", unseen_metrics: dict | None = None) -> str:
    tr = meta["training"]
    steps, minutes = recipe_totals(recipe)
    stages = "".join(f"\n{i + 1}. `{r['command']}` — {r['steps']} steps, {r['minutes']:.1f} min"
                     + (f"; {r['note']}" if r.get("note") else "") for i, r in enumerate(recipe))
    hist = tr.get("loss_history", [])
    rows = "\n".join(f"| {s} | {w / 60:.1f} | {loss:.3f} |" for s, w, loss in hist)
    stats = meta["dataset_stats"]
    unseen = _unseen_section(name, unseen_metrics) if unseen_metrics else ""
    full = ""
    if metrics_full:
        full = (f"\nMeasured with CREPE full on the output instead (input f0 still from tiny): "
                f"f0 L1 {metrics_full['f0_l1_cents']:.1f} cents, median "
                f"{metrics_full['f0_median_cents']:.1f}, outliers "
                f"{metrics_full['f0_outlier_ratio']:.2%}.\n")
    intro = ("From a clean clone, in order (each stage continues from the model the previous one "
             "exported;\nthe runs were made with time budgets, `--steps` repeats them step for step):"
             if len(recipe) > 1 else "From a clean clone (the run was made with a time budget; "
             "`--steps` repeats it step for step):")
    return f"""# {name} — ddsp_synth model card

| | |
|---|---|
| data | `{source.name}` from the project's shared data: FluidR3_GM {name} (MIT) rendered from seeded random melodies, 16 kHz mono, 180 s; last 20 s held out{extra} |
| model | DDSP solo-instrument decoder, width {meta['model']['decoder']['hidden']}, {meta['n_parameters']:,} parameters; {meta['model']['synth']['n_harmonics']} harmonics, {meta['model']['synth']['n_noise_bands']} noise bands, {meta['model']['synth']['reverb_s']:g} s learned reverb{" (played minimum-phase)" if meta['model']['synth'].get('reverb_phase') == 'minimum' else ""} |
| features | {meta['sample_rate']} Hz, {meta['frame_rate_hz']:g} frames/s, pitch {meta['pitch_model']} (deterministic decoding), A-weighted loudness |
| training | {steps} steps of batch {tr['train_config']['batch_size']} x 4 s, {minutes} min of training time on {training_machines(recipe)} (2 cores, CPU only){" in " + str(len(recipe)) + " stages (see below)" if len(recipe) > 1 else ""} |
| pitch range (voiced, train part) | MIDI {stats['pitch_midi_quantiles'][5]:.1f} to {stats['pitch_midi_quantiles'][95]:.1f} (5th-95th percentile), mean {stats['pitch_midi_mean']:.1f} |

## Reproduce

{intro}
{stages}

{unseen}
## Held-out part of the training recording (`ddsp-synth eval models/{name} data/{name}`, last 20 s)

The last 20 s of the shared file, never trained on — but the same performance as the training
part, so these figures are kinder than the unseen ones above.

| metric | value | target |
|---|---|---|
| f0 L1 (CREPE {metrics['pitch_model']} on output vs input, voiced frames) | {metrics['f0_l1_cents']:.1f} cents (median {metrics['f0_median_cents']:.1f}) | <= 15 |
| f0 outliers (> 50 cents) | {metrics['f0_outlier_ratio']:.2%} | |
| loudness L1 (frames above -70 dB) | {metrics['loudness_l1_db']:.2f} dB | <= 1.5 |
| multi-resolution spectral loss | {metrics['spectral_loss']:.3f} | |
| synthesis real-time factor | {metrics['rtf']:.4f} | |
{full}
## Loss during training (last stage)

| step | minutes | loss |
|---|---|---|
{rows}

## Known limits
- Trained on a sampled General MIDI {name}, not a recording of a player: articulation and
  vibrato are those of the sample set.
- Pitches far outside the training range (see above) are extrapolated; auto-adjust shifts the
  input by octaves toward the training mean.
- Short CPU training: sustained notes are close to the data, fast passages and note onsets
  are smoother than the original.{KNOWN_LIMITS.get(name, "")}
"""


# What the unseen-performance evaluation found about one instrument (docs/quality.md).
KNOWN_LIMITS = {
    "cello": """
- Its lowest notes (C2 to E2, 65 to 82 Hz) have a weak fundamental: CREPE tiny alone reads
  them at three times their pitch. Until issue 23 the analysis did, on the training data
  (22 % of the shared file's frames) and on every input, and the model played what it was
  told; ddsp_synth's harmonic check now reads them right, and the last stage above retrained
  the model on data analysed with it. See docs/quality.md.""",
}


def set_room_phase(model: Path, name: str, phase: str) -> None:
    """Set ``reverb_phase`` in the model's config.json and train_config.json, and add the
    change to the recipe as a stage of no training steps."""
    meta = json.loads((model / "config.json").read_text())
    if meta["model"]["synth"].get("reverb_phase", "learned") == phase:
        sys.exit(f"{model} already plays its room with phase '{phase}'")
    meta["model"]["synth"]["reverb_phase"] = phase
    (model / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    train_config = json.loads((model / "train_config.json").read_text())
    train_config["model"]["synth"]["reverb_phase"] = phase
    last = train_config["recipe"][-1]
    train_config["recipe"].append({
        "run": f"room-phase-{phase}",
        "command": f"python scripts/train_model.py {name} --room-phase {phase}",
        "steps": 0, "minutes": 0.0, "extra_seconds": last.get("extra_seconds", 0),
        "note": ("no training: the learned room played as its minimum-phase equivalent (same "
                 "magnitude response, energy as early as causality allows)"
                 if phase == "minimum" else "no training: the learned room played as learned")})
    (model / "train_config.json").write_text(json.dumps(train_config, indent=2))


def render_extra(name: str, seconds: float) -> Path:
    """Render ``seconds`` more of ``name`` with the shared generator (cached in data/renders)."""
    seed = EXTRA_SEED_BASE + INSTRUMENTS.index(name)
    out = ROOT / "data" / "renders" / f"{name}_seed{seed}"
    wav = out.with_suffix(".wav")
    if not wav.exists() or abs(sf.info(str(wav)).duration - seconds) > 0.5:
        if shutil.which("fluidsynth") is None:
            sys.exit("--extra-seconds needs the fluidsynth binary and the FluidR3_GM soundfont: "
                     "apt-get install fluidsynth fluid-soundfont-gm")
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"+ render_melodies.py --instrument {name} --seed {seed} --seconds {seconds:g}", flush=True)
        subprocess.run([sys.executable, str(GENERATOR), "--instrument", name, "--seed", str(seed),
                        "--seconds", f"{seconds:g}", "--fs", "16000", "--out", str(out)], check=True)
    return wav


def write_card(name: str, model: Path, source: Path) -> None:
    """MODEL_CARD.md from the model's config.json, eval.json and train_config.json recipe."""
    meta = json.loads((model / "config.json").read_text())
    metrics = json.loads((model / "eval.json").read_text())
    recipe = json.loads((model / "train_config.json").read_text())["recipe"]
    seconds = recipe[-1].get("extra_seconds", 0)
    extra = (f"; plus {seconds:g} s rendered by the same generator (seed "
             f"{EXTRA_SEED_BASE + INSTRUMENTS.index(name)}, its last 20 s held out too)"
             if seconds else "")
    (model / "MODEL_CARD.md").write_text(model_card(name, meta, metrics["tiny"], metrics["full"],
                                                    source, recipe, extra,
                                                    metrics.get("unseen")))


def pool(rows: list[dict]) -> dict:
    from ddsp_synth.evaluate import pool_truth

    return {side: pool_truth([r[side] for r in rows]) for side in ("input", "output")}


def truth_of(audio_path: Path, output, analysed_f0=None) -> dict:
    """MIDI truth of a render against the tracker's reading of its input (or ``analysed_f0``,
    what a streaming engine heard) and of an output signal. Both are read without the
    tracker's repairs, which would read a wrong attack the model plays as right
    (:func:`ddsp_synth.evaluate` module docstring)."""
    from ddsp_synth.audio_io import load_audio
    from ddsp_synth.evaluate import midi_truth, truth_metrics
    from ddsp_synth.features import FeatureConfig, compute_f0

    f0_in = compute_f0(load_audio(audio_path, 16000), FeatureConfig(), repairs=False)[0] \
        if analysed_f0 is None else analysed_f0
    f0_out = compute_f0(output, FeatureConfig(), repairs=False)[0]  # what it plays
    f0_in = np.pad(f0_in, (0, max(0, len(f0_out) - len(f0_in))), mode="edge")[: len(f0_out)]
    ref = midi_truth(audio_path, len(f0_out))
    return {"input": truth_metrics(f0_in, *ref),
            "output": truth_metrics(f0_out, *ref)}


def stream_truth(model: Path, files: list[Path]) -> dict:
    """The live engine of `ddsp-synth stream` (ONNX step) on every file in 10 ms blocks: its
    output against the MIDI, and ``input``: what its own front end heard."""
    from ddsp_synth.audio_io import load_audio
    from ddsp_synth.model import load_model
    from ddsp_synth.streaming import LiveEngine

    m, _ = load_model(model)
    rows = []
    for f in files:
        audio = load_audio(f, 16000)
        live = LiveEngine(m)
        heard, out = [], []
        for start in range(0, len(audio), 160):  # LiveEngine.process, keeping the frames
            frames = live.features.push(audio[start : start + 160])
            heard += [fr.f0_hz for fr in frames]
            out += [live.synth.process_frame(*live.controls(fr)) for fr in frames]
        # In samples the output lags the input by the synthesis hop only (the blocks before
        # the look-ahead fills return nothing; the look-ahead delays it in time).
        y = np.concatenate(out)[live.synth.latency_samples :]
        y = np.pad(y, (0, max(0, len(audio) - len(y))))[: len(audio)]
        rows.append(truth_of(f, y, np.array(heard, np.float32)))
    return pool(rows)


# A low instrument played by the cello without auto-adjust (renders of bench/bench_pitch.py).
LOW_TRANSFER = {"cello": [("bassoon", 8009), ("bassoon", 8014), ("bassoon", 8015)]}


def low_transfer_truth(name: str, model: Path) -> dict | None:
    """`ddsp-synth transfer FILE --model MODEL --no-auto-adjust` of low renders vs their MIDI."""
    import tempfile

    from ddsp_synth.audio_io import load_audio

    rows, names = [], []
    for instrument, seed in LOW_TRANSFER.get(name, []):
        wav = ROOT / "data" / "pitch_bench" / f"{instrument}_{seed}.wav"
        if not wav.exists():
            subprocess.run([sys.executable, str(GENERATOR), "--instrument", instrument, "--seed",
                            str(seed), "--seconds", "60", "--fs", "16000",
                            "--out", str(wav.with_suffix(""))], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            run(["transfer", str(wav), "--model", str(model), "--no-auto-adjust", "-o", str(out),
                 "--quiet", "--no-cache"])
            rows.append(truth_of(wav, load_audio(out, 16000)))
        names.append(wav.name)
    return {**pool(rows), "files": names} if rows else None


def eval_unseen(name: str, model: Path, full: bool) -> dict | None:
    """eval on every unseen performance: per file, the mean over files, the pitch against
    MIDI truth (resynthesis, streaming engine, a low instrument for the cello)."""
    files = unseen_files(name)
    if not files:
        print("no unseen performances rendered (python scripts/render_heldout.py): skipped")
        return None
    out = {"tiny": {}, "full": {} if full else None}
    for f in files:
        out["tiny"][f.name] = json.loads(run(["eval", str(model), str(f)]))
        if full:
            out["full"][f.name] = json.loads(run(["eval", str(model), str(f), "--pitch-model",
                                                  "full"]))
    keys = ("f0_l1_cents", "f0_median_cents", "f0_outlier_ratio", "loudness_l1_db",
            "spectral_loss")
    out["mean"] = {k: sum(m[k] for m in out["tiny"].values()) / len(files) for k in keys}
    if full:
        out["mean_full"] = {k: sum(m[k] for m in out["full"].values()) / len(files)
                            for k in keys}
    truths = [m["midi_truth"] for m in out["tiny"].values() if "midi_truth" in m]
    if truths:
        out["midi_truth"] = pool(truths)
        out["stream"] = stream_truth(model, files)
        out["low_transfer"] = low_transfer_truth(name, model)
    return out


def write_eval(name: str, model: Path, data: Path, full: bool) -> dict:
    """eval.json: the held-out part of the shared file and the unseen performances."""
    metrics = json.loads(run(["eval", str(model), str(data)]))
    metrics_full = (json.loads(run(["eval", str(model), str(data), "--pitch-model", "full"]))
                    if full else None)
    (model / "eval.json").write_text(json.dumps(
        {"tiny": metrics, "full": metrics_full, "unseen": eval_unseen(name, model, full)},
        indent=2))
    return metrics


def rewrite_stream_eval(name: str, model: Path) -> None:
    """eval.json with only the streaming engine measured again (its front end or gate changed;
    the model did not)."""
    path = model / "eval.json"
    metrics = json.loads(path.read_text())
    files = unseen_files(name)
    if not files or not (metrics.get("unseen") or {}).get("midi_truth"):
        sys.exit(f"error: {path} has no unseen performances with MIDI truth to measure again "
                 "(python scripts/render_heldout.py, then --eval-only)")
    metrics["unseen"]["stream"] = stream_truth(model, files)
    path.write_text(json.dumps(metrics, indent=2))


def stage_command(args) -> str:
    opts = [f"--extra-seconds {args.extra_seconds:g}" if args.extra_seconds else "",
            "--init-from-shipped" if args.init_from_shipped else "",
            f"--learning-rate {args.learning_rate:g}" if args.learning_rate else "",
            f"--config {args.config}" if args.config else ""]
    return " ".join(["python scripts/train_model.py", args.name, *[o for o in opts if o]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=INSTRUMENTS, help="instrument in ../shared/data/train")
    parser.add_argument("--minutes", type=float, default=30.0, help="total training time")
    parser.add_argument("--steps", type=int, help="train to exactly this many steps instead "
                        "(reproduces a model card's run step for step)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--extra-seconds", type=float, default=0.0,
                        help="also train on this many seconds rendered by the shared generator")
    parser.add_argument("--init-from-shipped", action="store_true",
                        help="start a new run from the current models/NAME (fine-tune)")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--full-pitch-eval", action="store_true",
                        help="also measure the output with CREPE full (slow)")
    parser.add_argument("--config", help="settings for ddsp-synth train --config (a JSON file "
                        "in the repository, e.g. models/NAME/stage3.json)")
    parser.add_argument("--eval-only", action="store_true",
                        help="only evaluate models/NAME again (held-out part and unseen "
                             "performances) and rewrite eval.json and the card")
    parser.add_argument("--card-only", action="store_true",
                        help="only rewrite MODEL_CARD.md from the model's eval.json and recipe")
    parser.add_argument("--stream-eval-only", action="store_true",
                        help="only measure the streaming engine again on the unseen "
                             "performances, update eval.json and rewrite the card")
    parser.add_argument("--room-phase", choices=("learned", "minimum"),
                        help="no training: play models/NAME's learned room with this phase, "
                             "record it in the recipe, evaluate again and rewrite the card")
    args = parser.parse_args()
    source = SHARED / f"{args.name}.flac"
    if not source.exists() and not (args.card_only or args.stream_eval_only):
        sys.exit(f"error: {source} is missing: the shipped models are trained on the project's "
                 "shared data, a folder 'shared' beside the checkout (see the README, 'Where "
                 "the training data comes from')")
    if args.stream_eval_only:
        rewrite_stream_eval(args.name, ROOT / "models" / args.name)
        args.card_only = True
    if args.card_only:
        write_card(args.name, ROOT / "models" / args.name, source)
        return 0
    if args.room_phase:
        set_room_phase(ROOT / "models" / args.name, args.name, args.room_phase)
    if args.eval_only or args.room_phase:
        model = ROOT / "models" / args.name
        run(["prepare", str(source), "-o", str(ROOT / "data" / args.name), "--quiet"])
        write_eval(args.name, model, ROOT / "data" / args.name, args.full_pitch_eval)
        write_card(args.name, model, source)
        return 0
    suffix = f"_x{args.extra_seconds:g}" if args.extra_seconds else ""
    data, model = ROOT / "data" / args.name, ROOT / "models" / args.name
    stage = f"_{Path(args.config).stem}" if args.config else ""  # a new run per settings file
    train_data = ROOT / "data" / (args.name + suffix)
    runs = ROOT / "runs" / (args.name + suffix + stage)
    run(["prepare", str(source), "-o", str(data), "--quiet"])
    if args.extra_seconds:
        wav = render_extra(args.name, args.extra_seconds)
        run(["prepare", str(source), str(wav), "-o", str(train_data), "--quiet"])
    checkpoints = sorted((runs / "checkpoints").glob("step-*/state.json"))
    spent = json.loads(checkpoints[-1].read_text())["wall_s"] / 60 if checkpoints else 0.0
    recipe_now = (json.loads((model / "train_config.json").read_text()).get("recipe", [])
                  if (model / "train_config.json").exists() else [])
    if checkpoints:  # resume this stage: the stages before it are the model's, minus this one
        previous = [r for r in recipe_now if r.get("run") != runs.name]
        start = ["--resume"]
    elif args.init_from_shipped:  # a new stage on top of the shipped model
        if not (model / "config.json").exists():
            sys.exit(f"--init-from-shipped: {model} holds no model yet (run the earlier stages)")
        previous, start = recipe_now, ["--force", "--init-from", str(model)]
    else:  # a first stage, from scratch
        previous, start = [], ["--force"]
    common = ["--val-every", "500", "--quiet",
              *(["--config", args.config] if args.config and not checkpoints else []),
              *(["--num-threads", str(args.threads)] if args.threads else []),
              *(["--learning-rate", f"{args.learning_rate:g}"]
                if args.learning_rate and not checkpoints else [])]
    if args.steps:
        run(["train", str(train_data), "-o", str(runs), "--steps", str(args.steps), *start, *common])
    elif args.minutes - spent > 0.2:
        run(["train", str(train_data), "-o", str(runs), "--steps", "1000000", "--max-minutes",
             f"{args.minutes - spent:.2f}", *start, *common])
    run(["export", str(runs), "-o", str(model), "--force"])
    metrics = write_eval(args.name, model, data, args.full_pitch_eval)
    meta = json.loads((model / "config.json").read_text())
    tr = meta["training"]
    recipe = previous + [{
        "run": runs.name,
        "command": f"{stage_command(args)} --steps {tr['steps']} --threads "
                   f"{tr['train_config']['num_threads'] or 2}",
        "steps": tr["steps"], "minutes": round(tr["wall_s"] / 60, 1),
        "extra_seconds": args.extra_seconds, "machine": cpu_name(),
        "note": f"made with --minutes {args.minutes:g}" if not args.steps else ""}]
    (model / "train_config.json").write_text(json.dumps(
        {"model": meta["model"], "train": tr["train_config"], "recipe": recipe}, indent=2))
    write_card(args.name, model, source)
    print(f"{args.name}: f0 L1 {metrics['f0_l1_cents']:.1f} cents, loudness L1 "
          f"{metrics['loudness_l1_db']:.2f} dB -> {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
