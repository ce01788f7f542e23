"""Commands of the model's life: ``demo``, ``prepare``, ``train``, ``export``, ``eval``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..audio_io import AudioError
from ..signals import exit_status
from .common import (add_command, batch_status, interrupted, number, read_json,
                     say_file_error)


# ----------------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from ..audio_io import check_audio_output, write_audio
    from ..demo import render_demo
    from ..stages.synth import SynthConfig

    check_audio_output(args.output, args.force)
    audio = render_demo(args.seconds, SynthConfig(sample_rate=args.sample_rate,
                                                  hop=args.sample_rate // 100), args.seed)
    write_audio(args.output, audio, args.sample_rate, force=args.force)
    print(f"wrote {args.output} ({len(audio) / args.sample_rate:.2f} s at {args.sample_rate} Hz)")
    return 0


def _add_demo(sub) -> None:
    p = add_command(sub, "demo", "render a synthesized phrase (no model) to a WAV/FLAC file",
             "ddsp-synth demo -o demo.wav --seconds 4", _cmd_demo)
    p.add_argument("-o", "--output", default="demo.wav", help="output .wav or .flac")
    p.add_argument("--seconds", type=number(float, 0.1, 600.0), default=4.0,
                   help="length of the phrase (s); the file is 1 s longer, the room's ring-out")
    p.add_argument("--sample-rate", type=int, default=16000, choices=[16000, 22050, 44100, 48000],
                   help="Hz")
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                   help="seed of the breath noise and the room (the notes stay the same)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


# ----------------------------------------------------------------------------- prepare
def _cmd_prepare(args) -> int:
    from ..audio_io import check_output_folder
    from ..data import PrepareConfig, PrepareInterrupted, prepare

    check_output_folder(args.output, inputs=args.inputs)
    cfg = PrepareConfig.for_sample_rate(
        args.sample_rate, args.frame_rate, args.hop, args.pitch_model,
        example_seconds=args.example_seconds, example_hop_seconds=args.example_hop_seconds,
        val_seconds=args.val_seconds)
    try:  # (main turns SIGTERM and SIGHUP into an interrupt, as Ctrl-C)
        manifest = prepare(args.inputs, args.output, cfg, show_progress=not args.quiet,
                           force=args.force)
    except PrepareInterrupted as stop:
        skipped = f" ({stop.skipped} skipped)" if stop.skipped else ""
        print(f"ddsp-synth prepare: interrupted: {stop.prepared} of {stop.total} files "
              f"prepared{skipped}; run the same command again to continue", file=sys.stderr)
        return exit_status(stop)  # as train: 130 for Ctrl-C, 143 for SIGTERM
    # (when nothing is usable, the error line alone lists every file and why)
    for item in manifest["skipped"]:
        print(f"ddsp-synth prepare: skipped {item['path']}: {item['reason']}", file=sys.stderr)
    n_train, n_val = len(manifest["examples"]["train"]), len(manifest["examples"]["val"])
    print(f"prepared {len(manifest['files'])} file(s) into {args.output}: {n_train} training and "
          f"{n_val} validation examples of {args.example_seconds:g} s")
    for s in manifest["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    return 0


def _add_prepare(sub) -> None:
    p = add_command(sub, "prepare", "turn recordings into a training dataset (pitch and loudness "
             "analysed once)", "ddsp-synth prepare my_cello_recordings/ -o data/cello", _cmd_prepare)
    p.add_argument("inputs", nargs="+", help="audio files or folders (any format, rate, channels)")
    p.add_argument("-o", "--output", required=True, help="dataset folder")
    p.add_argument("--sample-rate", type=number(int, 8000, 192000), default=16000,
                   help="model sample rate (Hz)")
    p.add_argument("--frame-rate", type=number(float, 10.0, 1000.0), default=100.0,
                   help="feature frames per second")
    p.add_argument("--hop", type=number(int, 8, 8192), help="samples per frame (overrides --frame-rate)")
    p.add_argument("--pitch-model", choices=["tiny", "full"], default="tiny",
                   help="CREPE size (full: ~20x slower, for quality)")
    p.add_argument("--example-seconds", type=number(float, 0.1, 60.0), default=4.0,
                   help="training example length (s)")
    p.add_argument("--example-hop-seconds", type=number(float, 0.01, 60.0), default=1.0,
                   help="step between training examples (s)")
    p.add_argument("--val-seconds", type=number(float, 0.0, 3600.0), default=20.0,
                   help="held-out tail of every file (s; at most 20%% of a short file)")
    p.add_argument("--force", action="store_true",
                   help="replace a dataset prepared with other settings in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- train
_TRAIN_FLAGS = ("steps", "batch_size", "learning_rate", "seed", "max_minutes", "val_every",
                "checkpoint_every", "num_threads", "precision")


def _cmd_train(args) -> int:
    from ..audio_io import check_output_folder
    from ..config import ConfigError
    from ..train import train_from_overrides

    check_output_folder(args.output, inputs=[args.data_dir])
    overrides = {}
    if args.config:
        overrides = read_json(args.config)
    flags = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None}
    if flags:
        if not isinstance(overrides.get("train", {}), dict):
            raise ConfigError(f"{args.config}: \"train\" must be a JSON object")
        overrides["train"] = {**overrides.get("train", {}), **flags}
    summary = train_from_overrides(args.data_dir, args.output, overrides, resume=args.resume,
                                   show_progress=not args.quiet, force=args.force,
                                   init_from=args.init_from)
    if summary["interrupted"]:
        return interrupted(summary)
    if summary["checkpoint"]:
        print(f"trained to step {summary['step']} ({summary['wall_s'] / 60:.1f} min); "
              f"checkpoint {summary['checkpoint']}")
    if summary["val"]:
        print("validation: " + json.dumps({k: round(v, 4) for k, v in summary["val"].items()}))
    line = before_after(summary)
    if line:
        print(line)
    return 0


def before_after(summary: dict) -> str | None:
    """Validation at the start -> at the end, and the best checkpoint (what export writes)."""
    first, last, best = summary.get("val_first"), summary.get("val"), summary.get("best")
    if not (first and last and best):
        return None

    def show(v):
        return (f"spectral loss {v['spectral_loss']:.3f}, f0 {v['f0_l1_cents']:.1f} cents, "
                f"loudness {v['loudness_l1_db']:.2f} dB")

    text = f"before -> after: {show(first)} -> {show(last)}; best at step {best['step']}"
    if best["step"] == 0:
        text += " (the starting point: this run did not improve on it; export keeps it)"
    return text + " (export writes the best)"


def _add_train(sub) -> None:
    p = add_command(sub, "train", "train a model on a prepared dataset (TensorBoard logs in RUN_DIR/tb)",
             "ddsp-synth train data/cello -o runs/cello --max-minutes 30", _cmd_train)
    p.add_argument("data_dir", help="a folder made by 'ddsp-synth prepare'")
    p.add_argument("-o", "--output", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--config", help='JSON file with "model" and/or "train" settings to override')
    p.add_argument("--steps", type=number(int, 0, 10**9), help="total optimiser steps (default 20000)")
    p.add_argument("--batch-size", type=number(int, 1, 4096), help="examples per step (default 8)")
    p.add_argument("--learning-rate", type=number(float, 0.0, 1.0),
                   help="Adam's initial rate (default 1e-3)")
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1),
                   help="seeds data order, noise and initialisation")
    p.add_argument("--max-minutes", type=number(float, 0.0, 10.0**6),
                   help="stop (with a checkpoint) after this much "
                   "wall time (min)")
    p.add_argument("--val-every", type=number(int, 0, None),
                   help="steps between validations (0 = none; default 500)")
    p.add_argument("--checkpoint-every", type=number(int, 1, None),
                   help="steps between checkpoints (default 200)")
    p.add_argument("--num-threads", type=number(int, 1, 1024), help="CPU threads (default: torch's)")
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="bf16: decoder under bfloat16 autocast (faster on CPUs with "
                        "AVX512-BF16/AMX and on GPUs; default fp32)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint with the run's own settings; "
                        "--steps, --max-minutes, --val-every, --checkpoint-every and "
                        "--num-threads may change them (kept for the next --resume), any "
                        "other setting must be the run's")
    p.add_argument("--init-from", help="start from a model's weights and settings (fine-tune): "
                   "a model folder, a shipped name, or 'auto' (the shipped model that already "
                   "plays this data best)")
    p.add_argument("--force", action="store_true", help="start over in an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- export
def _cmd_export(args) -> int:
    from ..audio_io import check_output_folder
    from ..train import export_run

    check_output_folder(args.output, inputs=[args.run_dir])
    model, state = export_run(args.run_dir, args.output, force=args.force,
                              which="last" if args.last else "best")
    what = "the best validated weights, step" if state.get("val") else "step"
    print(f"exported {what} {state['step']} of {args.run_dir} to {args.output} "
          f"({model.n_parameters():,} parameters)")
    return 0


def _add_export(sub) -> None:
    p = add_command(sub, "export", "write a run's best validated weights (or its newest "
                    "checkpoint) as a model folder",
             "ddsp-synth export runs/cello -o models/my_cello", _cmd_export)
    p.add_argument("run_dir", help="a folder made by 'ddsp-synth train'")
    p.add_argument("-o", "--output", required=True, help="model folder")
    p.add_argument("--last", action="store_true",
                   help="export the newest checkpoint instead of the best validated weights")
    p.add_argument("--force", action="store_true", help="overwrite an existing model")


# ----------------------------------------------------------------------------- eval
def _cmd_eval(args) -> int:
    from ..audio_io import check_output_folder
    from ..evaluate import NothingMeasured, evaluate_source
    from ..model import load_model, resolve_model
    from ..signals import print_or_drop

    model_dir = resolve_model(args.model)
    model, _ = load_model(model_dir)
    if args.out:  # a folder of results: new, or an earlier result replaced with --force
        check_output_folder(args.out, inputs=[args.data, model_dir])
        if Path(args.out).is_dir() and any(Path(args.out).iterdir()) and not args.force:
            raise AudioError(f"{args.out} holds an earlier result; pass --force to replace it")
    failures = []
    try:
        metrics, outputs = evaluate_source(
            model, args.data, args.split, args.max_examples, args.pitch_model,
            keep_outputs=bool(args.out), progress=not args.quiet,
            on_error=lambda path, err: failures.append(_eval_failure(path, err)), seed=args.seed)
    except NothingMeasured:  # every file failed, each with its line
        return batch_status(len(failures), len(failures))
    metrics.update({"model": str(args.model), "data": str(args.data),
                    "pitch_model": args.pitch_model or model.config.features.crepe_model})
    # JSON has no NaN: a metric without frames to measure is null
    text = json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in metrics.items()}, indent=2)
    print_or_drop(text, sys.stdout)  # (a reader that stopped early, as `| head`, is no error)
    if args.out:
        _write_eval_folder(args.out, outputs, text, model.config.synth.sample_rate)
    return batch_status(len(failures), metrics["examples"] + len(failures))


def _eval_failure(path, err) -> Path:
    """One line on stderr for a file eval could not measure, as transfer says it."""
    say_file_error("eval", path, err)
    return path


def _write_eval_folder(folder: str, outputs: list, text: str, sample_rate: int) -> None:
    """``--out``: each output as NAME.wav (16-bit) and the metrics as metrics.json."""
    import soundfile as sf

    from ..audio_io import write_result_folder

    writers = {f"{name}.wav": (lambda p, y=y: sf.write(p, y.clip(-1, 1), sample_rate,
                                                       subtype="PCM_16"))
               for name, y in outputs}
    writers["metrics.json"] = lambda p: Path(p).write_text(text + "\n")
    write_result_folder(folder, writers)


def _add_eval(sub) -> None:
    p = add_command(sub, "eval", "resynthesize recordings with a model and measure it (JSON on stdout)",
             "ddsp-synth eval models/my_cello data/cello", _cmd_eval)
    p.add_argument("model", help="shipped model name or model folder")
    p.add_argument("data", help="prepared dataset folder (its held-out part), audio file or folder")
    p.add_argument("--split", choices=["train", "val"], default="val",
                   help="which examples of a prepared dataset")
    p.add_argument("--max-examples", type=number(int, 1, None), help="at most this many examples")
    p.add_argument("--pitch-model", choices=["tiny", "full"],
                   help="CREPE model that measures the output (default: the model's)")
    p.add_argument("--out", help="also write the resynthesized audio and metrics.json here")
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                   help="seed of the noise generator: training's validation (a model's "
                        "config.json) used the run's --seed on its first val_examples (8) "
                        "examples, so for a run trained on the CPU `eval MODEL DATA --seed "
                        "SEED --max-examples 8` repeats it")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (audio files: on stderr, over the seconds analysed)")


COMMANDS = (_add_demo, _add_prepare, _add_train, _add_export, _add_eval)
