"""Commands of the controllers: ``control train``, ``control apply`` and ``style``."""

from __future__ import annotations

import argparse

import json
import sys
from pathlib import Path

from .common import (Formatter, Parser, add_command, batch_status, chain_help, interrupted,
                     number, say_file_error)

DEFAULT_MINUTES = 30.0
DEFAULT_THREADS = 1


# ----------------------------------------------------------------------------- train
def _cmd_train(args) -> int:
    from ..control import ControlDataConfig, ControllerConfig
    from ..control.train import train_controller
    from ..train.config import TrainingError

    if args.resume:
        _check_resume(args)
    else:
        if not args.chain:
            raise TrainingError("give --chain (or --resume an existing run)")
        if not args.pairs and not args.style:
            raise TrainingError("give training data: --pairs INPUT_DIR TARGET_DIR or "
                                "--style AUDIO_DIR")
        if args.pairs and args.style:
            raise TrainingError("give either --pairs or --style, not both")
    controller = ControllerConfig(per_frame=args.per_frame,
                                  reference=bool(args.style) or args.reference,
                                  level_match=args.level_match)
    data = ControlDataConfig(segment_seconds=args.segment_seconds, workers=args.workers,
                             reference_seconds=args.segment_seconds,
                             input_processed=args.input_processed)
    summary = train_controller(args.output, args.chain, args.method, pairs=args.pairs,
                               loss=args.loss,
                               style=args.style, controller=controller, data=data,
                               config=_train_settings(args),
                               proxy_dirs=args.proxy_dir or (), workers=args.workers,
                               resume=args.resume, force=args.force,
                               show_progress=not args.quiet)
    if summary["interrupted"]:
        return interrupted(summary)
    try:  # a resumed run's own settings say whether it takes a reference
        saved = json.loads((Path(args.output) / "run.json").read_text())["controller"]
        takes_reference = bool(saved["reference"])
    except (OSError, ValueError, KeyError, TypeError):
        takes_reference = controller.reference
    best = (summary.get("best") or {}).get("val") or {}
    best_step = (summary.get("best") or {}).get("step")
    at = f" at step {best_step}, the weights it holds" if best_step is not None else ""
    first = summary.get("val_first") or {}
    print(f"{args.output}: {summary['step']} steps ({summary['steps_this_run']} in this run), "
          f"{summary['wall_s'] / 60:.1f} min; held-out rel_spec "
          f"{best.get('rel_spec', float('nan')):.3f}{at} (untrained "
          f"{first.get('rel_spec', float('nan')):.3f}), loudness error "
          f"{best.get('loudness_lu', float('nan')):.2f} LU (doing nothing "
          f"{best.get('loudness_lu_dry', float('nan')):.2f}); use it with: ddsp-synth control "
          f"apply {args.output} INPUT{' --reference REF' if takes_reference else ''} "
          f"-o OUT.wav")
    return 0


def _train_settings(args) -> dict:
    """The training settings the command line gives: a new run's limits from --steps and
    --max-minutes (30 minutes when neither is given); resuming, only the options given (the
    run keeps its own others)."""
    given = {"steps": args.steps, "max_minutes": args.max_minutes,
             "num_threads": args.threads, "seed": args.seed, "batch_size": args.batch_size,
             "learning_rate": args.learning_rate}
    given = {k: v for k, v in given.items() if v is not None}
    if args.resume:
        return given
    minutes = 0.0 if args.steps is not None else DEFAULT_MINUTES
    return {"max_minutes": minutes, "steps": 10**9, "num_threads": DEFAULT_THREADS,
            "seed": 0, **given}


# options of a run's settings: (argparse dest, where run.json keeps it)
_RUN_OPTIONS = (("chain", ("chain",)), ("method", ("method",)), ("pairs", ("pairs",)),
                ("style", ("style",)), ("per_frame", ("controller", "per_frame")),
                ("reference", ("controller", "reference")),
                ("level_match", ("controller", "level_match")), ("loss", ("loss",)),
                ("batch_size", ("train", "batch_size")), ("seed", ("train", "seed")),
                ("learning_rate", ("train", "learning_rate")),
                ("segment_seconds", ("data", "segment_seconds")),
                ("input_processed", ("data", "input_processed")))


def _check_resume(args) -> None:
    """--resume continues a run with the settings in its run.json: a setting given on the
    command line that differs from the run's is refused in one line (it was ignored
    silently: another chain, another learning rate)."""
    from ..control.run import chain_settings
    from ..train.config import TrainingError

    run_file = Path(args.output) / "run.json"
    try:
        saved = json.loads(run_file.read_text())
    except (OSError, ValueError):
        return  # the library says what is wrong with a missing or damaged run
    differ = []
    for dest, where in _RUN_OPTIONS:
        given = getattr(args, dest)
        if given is None or given == args.train_defaults[dest]:  # not given
            continue
        value = saved
        for key in where:
            value = value.get(key) if isinstance(value, dict) else None
        if dest == "chain":
            given = list(chain_settings(given))
        elif dest in ("pairs", "style"):
            given = [str(v) for v in given]
        if given != value:
            shown = ",".join(value) if dest == "chain" and value else value
            differ.append(f"--{dest.replace('_', '-')} (the run's: {shown})")
    if differ:
        raise TrainingError(f"{args.output}: --resume continues the run with its own settings, "
                            f"and these differ from them: {'; '.join(differ)}; drop them, or "
                            "start a new run (another folder, or --force)")


def _add_train(actions) -> None:
    from ..gradients.methods import GRADIENT_METHODS

    t = add_command(actions, "train", "train a controller that sets an effect chain from what "
                    "it hears: from pairs of files (input -> desired output) or self-supervised "
                    "style transfer on any recordings",
                    "ddsp-synth control train --chain lowshelf,peak,highshelf,compressor,gain "
                    "--method autodiff --style my_recordings/ -o runs/style --max-minutes 30",
                    _cmd_train)
    t.prog = "ddsp-synth control train"
    t.add_argument("--chain", help=chain_help())
    t.add_argument("--method", choices=list(GRADIENT_METHODS), default="autodiff",
                   help="how the gradient crosses devices that name none: autodiff (PyTorch "
                        "twins), spsa (real devices, gradient estimates), proxy (neural "
                        "proxies), hybrid (real devices forward, proxies backward)")
    t.add_argument("--pairs", nargs=2, metavar=("INPUT_DIR", "TARGET_DIR"),
                   help="folders of files with matching names: the input and its desired output")
    t.add_argument("--style", nargs="+", metavar="AUDIO_DIR",
                   help="folders of recordings for self-supervised style transfer (random "
                        "settings rendered by the real devices; the reference is another part "
                        "of the same processed recording)")
    t.add_argument("-o", "--output", required=True, help="run folder (a controller folder "
                   "for 'control apply' as soon as it has validated)")
    t.add_argument("--max-minutes", type=number(float, 0.01, 10**6),
                   help=f"training time budget (default: {DEFAULT_MINUTES:g} unless --steps; "
                        "resuming: the run's)")
    t.add_argument("--steps", type=number(int, 1, 10**9), help="optimiser steps")
    t.add_argument("--per-frame", action="store_true",
                   help="predict settings every 10 ms (automation curves), not once per clip")
    t.add_argument("--reference", action="store_true",
                   help="with --pairs: also condition on another part of the target file "
                        "(always so with --style)")
    t.add_argument("--level-match", action=argparse.BooleanOptionalAction, default=False,
                   help="the output gain as a correction to the reference's level minus the "
                        "input's, not learned from scratch (on: a far smaller loudness error, a "
                        "slightly worse spectral match; docs/control.md)")
    t.add_argument("--loss", choices=("mr", "log"), default="mr",
                   help="training loss: 'mr' the multi-resolution spectral distance (linear + "
                        "log magnitudes), 'log' its log term alone (what rel_spec measures)")
    t.add_argument("--batch-size", type=number(int, 1, 4096), help="examples per step (8)")
    t.add_argument("--learning-rate", type=number(float, 1e-7, 1.0), help="Adam's (1e-3)")
    t.add_argument("--segment-seconds", type=number(float, 0.1, 600.0), default=2.0,
                   help="length of each example (and of each reference)")
    t.add_argument("--input-processed", type=number(float, 0.0, 1.0), default=1.0,
                   metavar="FRACTION",
                   help="with --style: the fraction of examples whose input also went through "
                        "the chain with random settings of its own, which the controller must "
                        "undo (default 1; 0: inputs are the recordings as they are; "
                        "DeepAFx-ST: 0.75)")
    t.add_argument("--workers", type=number(int, 0, 64), default=2,
                   help="worker processes running the real devices")
    t.add_argument("--threads", type=number(int, 0, 1024),
                   help=f"torch threads (0: as many as torch picks; default "
                        f"{DEFAULT_THREADS}, resuming: the run's)")
    t.add_argument("--proxy-dir", action="append",
                   help="folder of trained proxies (DIR/DEVICE/proxy.json), searched first")
    t.add_argument("--seed", type=number(int, 0, 2**32 - 1), help="random seed (default 0)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder exactly where it stopped, with "
                        "its own settings: --steps, --max-minutes and --threads may change "
                        "its limits (kept for the next --resume), any other option must be "
                        "the run's")
    t.add_argument("--force", action="store_true", help="start over in an existing run folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    # what --resume compares against: an option left at its default was not given
    t.set_defaults(train_defaults={dest: t.get_default(dest) for dest, _ in _RUN_OPTIONS})


# ----------------------------------------------------------------------------- apply
def _pairs(input_path: Path, output: Path) -> list[tuple[Path, Path]]:
    """(input, output) files: a file gives a file, a folder a folder (same relative paths,
    WAV unless the input is FLAC)."""
    from ..audio_io import AudioError, check_output_folder, find_audio_files

    if not input_path.is_dir():
        if output.is_dir() or not output.suffix:
            return [(input_path, output / (input_path.stem + ".wav"))]
        if output.suffix.lower() not in (".wav", ".flac"):
            raise AudioError(f"{output}: the output must end in .wav or .flac (or be a folder)")
        return [(input_path, output)]
    check_output_folder(output, inputs=[input_path])
    out = []
    for f in find_audio_files([input_path]):
        ext = ".flac" if f.suffix.lower() == ".flac" else ".wav"
        out.append((f, output / f.relative_to(input_path).with_suffix(ext)))
    return out


def _apply(args, controller: str) -> int:
    from ..audio_io import check_writable
    from ..control.files import controller_path, load_controller
    from ..control.io import apply_file
    from ..errors import UserError

    name = "control apply" if args.command == "control" else args.command
    pairs = _pairs(Path(args.input), Path(args.output))
    folder = Path(args.input).is_dir()
    if folder and args.preset_out:
        raise UserError("--preset-out names one file; with a folder, each output gets its "
                        "preset beside it (NAME.preset.json)")
    reads = [args.input, controller_path(controller)] + ([args.reference] if args.reference
                                                         else [])
    presets = {}
    for src, dst in pairs:
        check_writable(dst, args.force, reads)
        presets[dst] = Path(args.preset_out) if args.preset_out else (
            dst.with_suffix(".preset.json") if folder else None)
    loaded = load_controller(controller)
    failures = 0
    for src, dst in pairs:
        try:
            applied, notes = apply_file(controller, src, dst, args.reference, presets[dst],
                                        args.force, args.chain, args.workers, not args.twins,
                                        loaded)
        except UserError as err:
            if not folder:
                raise
            failures += 1
            say_file_error(name, src, err)
            continue
        for note in notes:
            print(f"ddsp-synth {name}: note: {src}: {note}", file=sys.stderr)
        where = f" (preset: {presets[dst]})" if presets[dst] else ""
        print(f"{src} -> {dst}{where}")
        if not folder:
            print(json.dumps(applied.preset if applied.settings.ndim == 1 else
                             {**applied.preset, "chain": [{k: v for k, v in e.items()
                                                           if k != "automation"}
                                                          for e in applied.preset["chain"]]},
                             indent=2))
    return batch_status(failures, len(pairs))


def _cmd_apply(args) -> int:
    return _apply(args, args.controller)


def _cmd_style(args) -> int:
    args.chain, args.twins = None, False
    return _apply(args, "style")


def _apply_arguments(p, reference_required: bool, workers: int = 2) -> None:
    p.add_argument("input", help="an audio file (any format, rate, channels) or a folder")
    p.add_argument("--reference", required=reference_required,
                   help="the recording whose sound to match")
    p.add_argument("-o", "--output", required=True,
                   help="output .wav/.flac for a file, a folder for a folder")
    p.add_argument("--preset-out", help="write the predicted settings (match's preset format) "
                                        "to this .json, for one input file (with a folder "
                                        "each output gets its NAME.preset.json beside it, "
                                        "without this option)")
    p.add_argument("--workers", type=number(int, 0, 64), default=workers,
                   help=f"worker processes running the real devices (0: in this process; "
                        f"default {workers})")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_apply(actions) -> None:
    p = add_command(actions, "apply", "set a chain with a trained controller and render files "
                    "through the real devices (whole files, any rate, mono or stereo: the "
                    "same settings on every channel); prints the settings",
                    "ddsp-synth control apply runs/style my_song.wav --reference ref.wav "
                    "-o out.wav --preset-out preset.json", _cmd_apply)
    p.prog = "ddsp-synth control apply"
    p.add_argument("controller", help="a controller folder (a training run's folder works) or "
                                      "'style' (the shipped one)")
    _apply_arguments(p, reference_required=False)
    p.add_argument("--chain", help="the chain you expect (refused unless it is the "
                                   "controller's)")
    p.add_argument("--twins", action="store_true",
                   help="render with the PyTorch twins instead of the real devices")


def _add_control(sub) -> None:
    p = sub.add_parser("control", help="controllers: networks that set an effect chain from "
                       "what they hear (train, apply)", formatter_class=Formatter,
                       description="Controllers: networks that set an effect chain's "
                                   "parameters from what they hear.")
    p.error = Parser.error.__get__(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_train(actions)
    _add_apply(actions)


def _add_style(sub) -> None:
    p = add_command(sub, "style", "make a recording sound like a reference: the shipped style "
                    "controller sets an EQ (low shelf, two peaks, high shelf), a compressor "
                    "and an output gain, rendered by the real devices",
                    "ddsp-synth style my_take.wav --reference sounds_like_this.wav -o out.wav",
                    _cmd_style)
    # pedalboard's built-in devices, one pass over a file: starting worker processes costs
    # more than it protects (bench/bench_control.py style: 1.4 s of a 3-minute song)
    _apply_arguments(p, reference_required=True, workers=0)


COMMANDS = (_add_control, _add_style)
