"""``ddsp-synth``: the command line. Each subcommand parses its arguments and makes one call
into the library; ``main(argv) -> int`` turns expected problems into one line on stderr and a
non-zero exit code."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import __version__
from .audio_io import AudioError
from .soundcard.command import add_live_parser

DESCRIPTION = """\
Play any melody with a trained instrument. ddsp_synth listens to a monophonic recording
(singing, whistling, one instrument) through its pitch and loudness and resynthesizes it
with an instrument learned from a few minutes of recordings: violin, flute, trumpet, alto
sax and cello ship with it, and you can train your own.
"""
EPILOG = """\
examples:
  ddsp-synth transfer examples/singing_scale.flac --model violin -o violin.wav
  ddsp-synth prepare my_recordings/ -o data/mine && ddsp-synth train data/mine -o runs/mine
  ddsp-synth COMMAND --help        (every command's options, defaults and an example)
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows every real default and keeps the examples' line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        hidden = action.default is None or action.default is False
        if not hidden and action.default != argparse.SUPPRESS and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that says where the help is, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind, low=None, high=None):
    """An argparse type: a finite number of ``kind`` within [low, high]."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}"
                                             f"number, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            span = (f"from {low:g} to {high:g}" if low is not None and high is not None
                    else f"at least {low:g}" if low is not None else f"at most {high:g}")
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


SECONDS_MAX = 24 * 3600.0  # no single input or output longer than a day


def _known_errors():
    from .effects.params import DeviceError
    from .gradients.proxy import ProxyFileError
    from .match import MatchError
    from .model import ModelFileError
    from .train import TrainingError

    return (AudioError, ValueError, ModelFileError, TrainingError, FileExistsError, MatchError,
            DeviceError, ProxyFileError)


def _add(sub, name: str, help_text: str, example: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                       epilog=f"example:\n  {example}", formatter_class=_Formatter)
    p.error = _Parser.error.__get__(p)
    p.set_defaults(func=func)
    return p


# ----------------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from .audio_io import check_audio_output, write_audio
    from .demo import render_demo
    from .processors import SynthConfig

    check_audio_output(args.output, args.force)
    audio = render_demo(args.seconds, SynthConfig(sample_rate=args.sample_rate,
                                                  hop=args.sample_rate // 100), args.seed)
    write_audio(args.output, audio, args.sample_rate, force=args.force)
    print(f"wrote {args.output} ({len(audio) / args.sample_rate:.2f} s at {args.sample_rate} Hz)")
    return 0


def _add_demo(sub) -> None:
    p = _add(sub, "demo", "render a synthesized phrase (no model) to a WAV/FLAC file",
             "ddsp-synth demo -o demo.wav --seconds 4", _cmd_demo)
    p.add_argument("-o", "--output", default="demo.wav", help="output .wav or .flac")
    p.add_argument("--seconds", type=_number(float, 0.1, 600.0), default=4.0,
                   help="length of the phrase (s)")
    p.add_argument("--sample-rate", type=int, default=16000, choices=[16000, 22050, 44100, 48000],
                   help="Hz")
    p.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


# ----------------------------------------------------------------------------- prepare
def _cmd_prepare(args) -> int:
    from .audio_io import check_output_folder
    from .data import PrepareConfig, prepare

    check_output_folder(args.output, inputs=args.inputs)
    cfg = PrepareConfig.for_sample_rate(
        args.sample_rate, args.frame_rate, args.hop, args.pitch_model,
        example_seconds=args.example_seconds, example_hop_seconds=args.example_hop_seconds,
        val_seconds=args.val_seconds)
    manifest = prepare(args.inputs, args.output, cfg, show_progress=not args.quiet,
                       force=args.force)
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
    p = _add(sub, "prepare", "turn recordings into a training dataset (pitch and loudness "
             "analysed once)", "ddsp-synth prepare my_cello_recordings/ -o data/cello", _cmd_prepare)
    p.add_argument("inputs", nargs="+", help="audio files or folders (any format, rate, channels)")
    p.add_argument("-o", "--output", required=True, help="dataset folder")
    p.add_argument("--sample-rate", type=_number(int, 8000, 192000), default=16000,
                   help="model sample rate (Hz)")
    p.add_argument("--frame-rate", type=_number(float, 10.0, 1000.0), default=100.0,
                   help="feature frames per second")
    p.add_argument("--hop", type=_number(int, 8, 8192), help="samples per frame (overrides --frame-rate)")
    p.add_argument("--pitch-model", choices=["tiny", "full"], default="tiny",
                   help="CREPE size (full: ~20x slower, for quality)")
    p.add_argument("--example-seconds", type=_number(float, 0.1, 60.0), default=4.0,
                   help="training example length (s)")
    p.add_argument("--example-hop-seconds", type=_number(float, 0.01, 60.0), default=1.0,
                   help="step between training examples (s)")
    p.add_argument("--val-seconds", type=_number(float, 0.0, 3600.0), default=20.0,
                   help="held-out tail of every file (s; at most 20%% of a short file)")
    p.add_argument("--force", action="store_true",
                   help="replace a dataset prepared with other settings in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- train
_TRAIN_FLAGS = ("steps", "batch_size", "learning_rate", "seed", "max_minutes", "val_every",
                "checkpoint_every", "num_threads", "precision")


def _cmd_train(args) -> int:
    from .audio_io import check_output_folder
    from .config import ConfigError
    from .train import train_from_overrides

    check_output_folder(args.output, inputs=[args.data_dir])
    overrides = {}
    if args.config:
        overrides = _read_json(args.config)
    flags = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None}
    if flags:
        if not isinstance(overrides.get("train", {}), dict):
            raise ConfigError(f"{args.config}: \"train\" must be a JSON object")
        overrides["train"] = {**overrides.get("train", {}), **flags}
    summary = train_from_overrides(args.data_dir, args.output, overrides, resume=args.resume,
                                   show_progress=not args.quiet, force=args.force,
                                   init_from=args.init_from)
    if summary["interrupted"]:
        print(f"interrupted at step {summary['step']}; checkpoint {summary['checkpoint']}; "
              "continue with --resume", file=sys.stderr)
        return 128 + summary["signal"]
    if summary["checkpoint"]:
        print(f"trained to step {summary['step']} ({summary['wall_s'] / 60:.1f} min); "
              f"checkpoint {summary['checkpoint']}")
    if summary["val"]:
        print("validation: " + json.dumps({k: round(v, 4) for k, v in summary["val"].items()}))
    return 0


def _add_train(sub) -> None:
    p = _add(sub, "train", "train a model on a prepared dataset (TensorBoard logs in RUN_DIR/tb)",
             "ddsp-synth train data/cello -o runs/cello --max-minutes 30", _cmd_train)
    p.add_argument("data_dir", help="a folder made by 'ddsp-synth prepare'")
    p.add_argument("-o", "--output", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--config", help='JSON file with "model" and/or "train" settings to override')
    p.add_argument("--steps", type=_number(int, 0, 10**9), help="total optimiser steps (default 20000)")
    p.add_argument("--batch-size", type=_number(int, 1, 4096), help="examples per step (default 8)")
    p.add_argument("--learning-rate", type=_number(float, 0.0, 1.0),
                   help="Adam's initial rate (default 1e-3)")
    p.add_argument("--seed", type=_number(int, 0, 2**32 - 1),
                   help="seeds data order, noise and initialisation")
    p.add_argument("--max-minutes", type=_number(float, 0.0, 10.0**6),
                   help="stop (with a checkpoint) after this much "
                   "wall time (min)")
    p.add_argument("--val-every", type=_number(int, 0, None),
                   help="steps between validations (0 = none; default 500)")
    p.add_argument("--checkpoint-every", type=_number(int, 1, None),
                   help="steps between checkpoints (default 200)")
    p.add_argument("--num-threads", type=_number(int, 1, 1024), help="CPU threads (default: torch's)")
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="bf16: decoder under bfloat16 autocast (faster on CPUs with "
                        "AVX512-BF16/AMX and on GPUs; default fp32)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--init-from", help="start from a model's weights and settings (fine-tune): "
                   "a model folder, a shipped name, or 'auto' (the shipped model that already "
                   "plays this data best)")
    p.add_argument("--force", action="store_true", help="start over in an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- export
def _cmd_export(args) -> int:
    from .audio_io import check_output_folder
    from .train import export_run

    check_output_folder(args.output, inputs=[args.run_dir])
    model, state = export_run(args.run_dir, args.output, force=args.force)
    print(f"exported step {state['step']} of {args.run_dir} to {args.output} "
          f"({model.n_parameters():,} parameters)")
    return 0


def _add_export(sub) -> None:
    p = _add(sub, "export", "write a run's latest checkpoint as a model folder",
             "ddsp-synth export runs/cello -o models/my_cello", _cmd_export)
    p.add_argument("run_dir", help="a folder made by 'ddsp-synth train'")
    p.add_argument("-o", "--output", required=True, help="model folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing model")


# ----------------------------------------------------------------------------- eval
def _cmd_eval(args) -> int:
    from .audio_io import atomic_write_text, check_output_folder, check_writable, write_audio
    from .evaluate import evaluate_source
    from .model import load_model, resolve_model

    model, _ = load_model(resolve_model(args.model))
    if args.out:
        check_output_folder(args.out, inputs=[args.data, args.model])
        check_writable(Path(args.out) / "metrics.json", args.force)
    metrics, outputs = evaluate_source(model, args.data, args.split, args.max_examples,
                                       args.pitch_model, keep_outputs=bool(args.out))
    metrics.update({"model": str(args.model), "data": str(args.data),
                    "pitch_model": args.pitch_model or model.config.features.crepe_model})
    # JSON has no NaN: a metric without frames to measure is null
    text = json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in metrics.items()}, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        for name, y in outputs:
            write_audio(out / f"{name}.wav", y, model.config.synth.sample_rate, force=args.force)
        atomic_write_text(out / "metrics.json", text + "\n")
    return 0


def _add_eval(sub) -> None:
    p = _add(sub, "eval", "resynthesize recordings with a model and measure it (JSON on stdout)",
             "ddsp-synth eval models/my_cello data/cello", _cmd_eval)
    p.add_argument("model", help="shipped model name or model folder")
    p.add_argument("data", help="prepared dataset folder (its held-out part), audio file or folder")
    p.add_argument("--split", choices=["train", "val"], default="val",
                   help="which examples of a prepared dataset")
    p.add_argument("--max-examples", type=_number(int, 1, None), help="at most this many examples")
    p.add_argument("--pitch-model", choices=["tiny", "full"],
                   help="CREPE model that measures the output (default: the model's)")
    p.add_argument("--out", help="also write the resynthesized audio and metrics.json here")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


# ----------------------------------------------------------------------------- transfer
def _transfer_outputs(inputs: list[Path], output: Path, ext: str) -> list[tuple[Path, Path]]:
    """Pair every input file with its output path (a folder in gives a folder out)."""
    from .audio_io import find_audio_files

    single = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if single and not output.is_dir() and output.suffix:
        if output.suffix.lower() not in (".wav", ".flac"):
            raise AudioError(f"{output}: cannot write {output.suffix} files; the output must "
                             "end in .wav or .flac (or be a folder)")
        pairs = [(Path(inputs[0]), output)]
    else:
        pairs = []
        for item in inputs:
            item = Path(item)
            for f in find_audio_files([item]):
                rel = (f.relative_to(item).with_suffix(ext) if item.is_dir()
                       else Path(f.stem + ext))
                pairs.append((f, output / rel))
    return pairs


def _cmd_transfer(args) -> int:
    from tqdm import tqdm

    from .audio_io import check_writable, limit_peak, load_audio, resample_audio, write_audio
    from .model import load_model, resolve_model
    from .transfer import TransferOptions, check_auto_adjust_stats, transfer_audio

    model, meta = load_model(resolve_model(args.model))
    sr = model.config.synth.sample_rate
    out_sr = args.sample_rate or sr
    resynth = args.command == "resynth"
    options = TransferOptions(
        auto_adjust=not (resynth or args.no_auto_adjust),
        pitch_shift_semitones=0.0 if resynth else args.pitch_shift,
        loudness_shift_db=0.0 if resynth else args.loudness_shift,
        quiet_db=args.quiet_db, harmonic_gain=args.harmonic_gain, noise_gain=args.noise_gain,
        reverb_mix=args.reverb_mix, seed=args.seed)
    pairs = _transfer_outputs(args.inputs, Path(args.output), "." + args.format)
    for src, dst in pairs:
        check_writable(dst, args.force, inputs=[src])
    if options.auto_adjust:
        check_auto_adjust_stats(meta)
    failures = 0
    for src, dst in tqdm(pairs, desc=args.command, unit="file", disable=args.quiet or len(pairs) < 2):
        try:
            audio = load_audio(src, sr)
            with tqdm(total=round(len(audio) / sr, 1), unit="s audio", leave=False,
                      disable=args.quiet, desc=src.name) as bar:
                out, info = transfer_audio(model, meta, audio, options, bar,
                                           cache=not args.no_cache, pitch_model=args.pitch_model)
            write_audio(dst, limit_peak(resample_audio(out, sr, out_sr)), out_sr,
                        force=args.force)
            adj = info["adjusted"]
            print(f"{src} -> {dst} (octave shift {adj['octave_shift']:+d}, voiced "
                  f"{adj['voiced_fraction']:.0%})")
            if info.get("warning"):
                print(f"ddsp-synth {args.command}: warning: {dst}: {info['warning']}",
                      file=sys.stderr)
        except (AudioError, ValueError) as err:
            failures += 1
            message = str(err) if str(err).startswith(str(src)) else f"{src}: {err}"
            print(f"ddsp-synth {args.command}: error: {message}", file=sys.stderr)
    return 1 if failures else 0


def _installed_models() -> str:
    from .model import available_models

    names = ", ".join(available_models()) or "none installed"
    return f"shipped model name ({names}) or a model folder"


def _add_transfer(sub) -> None:
    for name, help_text, example in (
            ("transfer", "play recordings with a trained instrument",
             "ddsp-synth transfer examples/singing_scale.flac --model violin -o violin.wav"),
            ("resynth", "resynthesize recordings with their own instrument's model, unadjusted "
                        "(to check a model)",
             "ddsp-synth resynth my_cello_take.wav --model models/my_cello -o check.wav")):
        p = _add(sub, name, help_text, example, _cmd_transfer)
        p.add_argument("inputs", nargs="+", help="audio files or folders")
        p.add_argument("--model", required=True, help=_installed_models())
        p.add_argument("-o", "--output", required=True,
                       help="output .wav/.flac for one file, else a folder")
        p.add_argument("--format", choices=["wav", "flac"], default="wav",
                       help="format of files written into an output folder")
        p.add_argument("--sample-rate", type=_number(int, 8000, 192000),
                       help="output rate in Hz (default: the model's)")
        if name == "transfer":
            p.add_argument("--no-auto-adjust", action="store_true",
                           help="keep the input's register and loudness as they are")
            p.add_argument("--pitch-shift", type=_number(float, -48.0, 48.0), default=0.0,
                           help="semitones")
            p.add_argument("--loudness-shift", type=_number(float, -60.0, 60.0), default=0.0,
                           help="dB")
        p.add_argument("--quiet-db", type=_number(float, 0.0, 200.0), default=40.0,
                       help="auto-adjust mutes frames this many dB below the input's loud level")
        p.add_argument("--harmonic-gain", type=_number(float, 0.0, 10.0), default=1.0,
                       help="linear gain")
        p.add_argument("--noise-gain", type=_number(float, 0.0, 10.0), default=1.0,
                       help="linear gain")
        p.add_argument("--reverb-mix", type=_number(float, 0.0, 10.0), default=1.0,
                       help="learned reverb amount (0 = dry, 1 = as trained)")
        p.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0,
                       help="seed of the noise generator")
        p.add_argument("--pitch-model", choices=["tiny", "full"],
                       help="CREPE size for the input's pitch (default: the model's, tiny; "
                            "full is ~20x slower, for quality)")
        p.add_argument("--no-cache", action="store_true",
                       help="do not reuse or store the input's features")
        p.add_argument("--force", action="store_true", help="overwrite existing outputs")
        p.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- render (MIDI)
def _cmd_render(args) -> int:
    from tqdm import tqdm

    from .audio_io import check_audio_output, limit_peak, resample_audio, write_audio
    from .midi import MidiError, MidiOptions, midi_to_curves
    from .model import load_model, resolve_model
    from .transfer import TransferOptions, render

    out_path = check_audio_output(args.output, args.force, inputs=[args.input])
    model, meta = load_model(resolve_model(args.model))
    sr = model.config.synth.sample_rate
    try:
        curves = midi_to_curves(args.input, meta.get("dataset_stats"),
                                model.config.synth.frame_rate_hz,
                                MidiOptions(release_s=args.release,
                                            loudness_shift_db=args.loudness_shift),
                                track=args.track, transpose=args.transpose,
                                tempo_scale=args.tempo_scale)
    except MidiError as err:
        raise MidiError(f"{args.input}: {err}") from None
    options = TransferOptions(harmonic_gain=args.harmonic_gain, noise_gain=args.noise_gain,
                              reverb_mix=args.reverb_mix, seed=args.seed)
    seconds = len(curves["f0_hz"]) / model.config.synth.frame_rate_hz
    with tqdm(total=round(seconds, 1), unit="s audio", disable=args.quiet, desc="render") as bar:
        audio = render(model, curves["f0_hz"], curves["loudness_db"], options, bar)
    out_sr = args.sample_rate or sr
    write_audio(out_path, limit_peak(resample_audio(audio, sr, out_sr)), out_sr, force=args.force)
    print(f"{args.input} -> {out_path} ({seconds:.2f} s): {curves['info']['message']}")
    return 0


def _add_render(sub) -> None:
    p = _add(sub, "render", "play a MIDI file (one monophonic part) with a trained instrument",
             "ddsp-synth render examples/ode_to_joy.mid --model violin -o ode.wav", _cmd_render)
    p.add_argument("input", help="MIDI file (.mid)")
    p.add_argument("--model", required=True, help=_installed_models())
    p.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    p.add_argument("--track", type=_number(int, 0, 10000),
                   help="which part to play, numbered from 0 among those with notes (default: "
                        "the first pitched one); a polyphonic part plays its highest voice")
    p.add_argument("--transpose", type=_number(float, -48.0, 48.0), default=0.0,
                   help="semitones (fractional allowed)")
    p.add_argument("--tempo-scale", type=_number(float, 0.1, 10.0), default=1.0,
                   help="multiplies the tempo: 2 = twice as fast, 0.5 = twice as slow")
    p.add_argument("--loudness-shift", type=_number(float, -60.0, 60.0), default=0.0, help="dB")
    p.add_argument("--release", type=_number(float, 0.0, 10.0), default=0.2,
                   help="release of the last note (s), added to the MIDI length")
    p.add_argument("--sample-rate", type=_number(int, 8000, 192000),
                   help="output rate in Hz (default: the model's)")
    p.add_argument("--harmonic-gain", type=_number(float, 0.0, 10.0), default=1.0,
                   help="linear gain")
    p.add_argument("--noise-gain", type=_number(float, 0.0, 10.0), default=1.0, help="linear gain")
    p.add_argument("--reverb-mix", type=_number(float, 0.0, 10.0), default=1.0,
                   help="learned reverb amount (0 = dry, 1 = as trained)")
    p.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0,
                   help="seed of the noise generator")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- stream
def _cmd_stream(args) -> int:
    from tqdm import tqdm

    import torch

    from .audio_io import (atomic_write_text, check_audio_output, check_writable, limit_peak,
                           load_audio, write_audio)
    from .model import load_model, resolve_model
    from .streaming import LiveOptions, stream_audio

    torch.set_num_threads(args.threads)
    check_audio_output(args.output, args.force, inputs=[args.input])
    if args.report:
        if Path(args.report).resolve() == Path(args.output).resolve():
            raise AudioError(f"{args.report}: the same file as -o; give the report another name")
        check_writable(Path(args.report), args.force, inputs=[args.input])
    model, _ = load_model(resolve_model(args.model))
    sr = model.config.synth.sample_rate
    audio = load_audio(args.input, sr)
    block = int(round(args.block_ms * sr / 1000))
    if block < 1:
        raise ValueError(f"--block-ms {args.block_ms} is shorter than one sample")
    options = LiveOptions(pitch_shift_semitones=args.pitch_shift,
                          loudness_shift_db=args.loudness_shift, gate_db=args.gate_db)
    with tqdm(total=-(-len(audio) // block), unit="block", disable=args.quiet,
              desc="stream") as bar:
        try:
            out, report = stream_audio(model, audio, block, options, engine=args.engine,
                                       crepe_model=args.pitch_model, progress=bar)
        except ValueError as err:
            raise AudioError(f"{args.input}: {err}") from None
    write_audio(args.output, limit_peak(out), sr, force=args.force)
    report.update({"input": str(args.input), "output": str(args.output), "threads": args.threads,
                   "seconds": len(audio) / sr})
    if args.report:
        atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    c, lat = report["compute_total"], report["latency_ms"]
    print(f"{args.input} -> {args.output}: {report['blocks']} blocks of {report['block_ms']:.1f} "
          f"ms; compute per block median {c['median_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms "
          f"({report['late_blocks']} late); latency {lat['total']:.1f} ms (features "
          f"{lat['features_lookahead']:.0f} + synthesis {lat['synthesis']:.0f} + block "
          f"{lat['block_buffer']:.0f})")
    return 0


def _add_stream(sub) -> None:
    p = _add(sub, "stream", "simulate live playing from a file, block by block, and report "
             "per-block compute time and latency",
             "ddsp-synth stream examples/singing_scale.flac -o live.wav --model violin",
             _cmd_stream)
    p.add_argument("input", help="audio file")
    p.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    p.add_argument("--model", required=True, help=_installed_models())
    p.add_argument("--block-ms", type=_number(float, 0.1, 1000.0), default=10.0,
                   help="sound-card block length (ms)")
    p.add_argument("--engine", choices=["torch", "torchscript", "onnx"], default="onnx",
                   help="how the synthesis step runs (same audio; onnx is fastest)")
    p.add_argument("--pitch-model", choices=["tiny", "full"], default="tiny", help="CREPE size")
    p.add_argument("--pitch-shift", type=_number(float, -48.0, 48.0), default=0.0, help="semitones")
    p.add_argument("--loudness-shift", type=_number(float, -60.0, 60.0), default=0.0, help="dB")
    p.add_argument("--gate-db", type=_number(float, -200.0, 0.0), default=-60.0,
                   help="mute frames quieter than this (dB)")
    p.add_argument("--threads", type=_number(int, 1, 64), default=1,
                   help="torch threads (live use: 1)")
    p.add_argument("--report", help="also write the timing report as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- export-runtime
def _cmd_export_runtime(args) -> int:
    from .audio_io import check_writable
    from .model import load_model, resolve_model
    from .streaming import export_runtime

    suffixes = (".onnx",) if args.format == "onnx" else (".pt", ".ts")
    check_writable(Path(args.output), args.force, inputs=[args.model], suffixes=suffixes)
    model, _ = load_model(resolve_model(args.model))
    export_runtime(model, args.output, args.format)
    print(f"wrote the streaming step of {args.model} as {args.format} to {args.output}")
    return 0


def _add_export_runtime(sub) -> None:
    p = _add(sub, "export-runtime", "write the streaming step as TorchScript or ONNX for a C++ "
             "or plugin host", "ddsp-synth export-runtime violin -o violin_step.onnx",
             _cmd_export_runtime)
    p.add_argument("model", help=_installed_models())
    p.add_argument("-o", "--output", required=True, help="output file (.pt or .onnx)")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="onnx")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


# ----------------------------------------------------------------------------- match
def _cmd_match(args) -> int:
    from .match import match_files, summary_line

    report = match_files(args.dry, args.target, args.chain, args.method, args.output,
                         steps=args.steps, max_seconds=args.max_seconds, seed=args.seed,
                         force=args.force, progress=not args.quiet,
                         proxy_dirs=args.proxy_dir or ())
    for note in report["notes"]:
        print(f"ddsp-synth match: note: {note}", file=sys.stderr)
    print(summary_line(report, args.output))
    return 0


def _add_match(sub) -> None:
    from .gradients.methods import METHODS

    p = _add(sub, "match", "estimate the settings of an effect chain from a dry and a processed "
             "recording (writes preset.json, matched.wav, report.json and match.png)",
             "ddsp-synth match dry.wav processed.wav --chain peak,compressor,distortion "
             "--method autodiff -o matched/", _cmd_match)
    p.add_argument("dry", help="the unprocessed recording")
    p.add_argument("target", help="the processed recording (resampled and aligned to the dry "
                                  "one within 50 ms when needed)")
    p.add_argument("--chain", required=True,
                   help="devices in order, comma-separated: gain, lowshelf, highshelf, peak, "
                        "lowpass, highpass, compressor, distortion, a JSON device file or a "
                        ".vst3 path; NAME:PARAM=VALUE fixes a parameter")
    p.add_argument("--method", choices=list(METHODS), default="autodiff",
                   help="how the gradient crosses the devices: autodiff (PyTorch twins), spsa "
                        "(real devices, gradient estimates), proxy (neural proxies), hybrid "
                        "(real devices forward, proxies backward), cma (CMA-ES, no gradient)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--steps", type=_number(int, 1, 1_000_000),
                   help="iterations (default: per method, 300 to 3000; most runs stop earlier)")
    p.add_argument("--max-seconds", type=_number(float, 0.1, SECONDS_MAX),
                   help="optimisation time budget in s (default: 45)")
    p.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0,
                   help="seed of the random starts, perturbations and CMA-ES")
    p.add_argument("--proxy-dir", action="append",
                   help="folder of trained proxies (DIR/DEVICE/proxy.json), searched before "
                        "the shipped ones; may be repeated")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- proxy
def _cmd_proxy(args) -> int:
    from .gradients.proxy import train_proxy

    if args.steps is None and args.max_minutes is None:
        args.max_minutes = 30.0
    result = train_proxy(args.device, args.output, sample_rate=args.sample_rate,
                         steps=args.steps, max_minutes=args.max_minutes, seed=args.seed,
                         force=args.force, progress=not args.quiet, audio_paths=args.audio,
                         n_workers=args.workers)
    acc = result["accuracy"]
    print(f"{args.output}: proxy of {result['device']}, {result['steps']} steps in "
          f"{result['minutes']:.1f} min; held-out rel_spec {acc['rel_spec']:.3f}, median SNR "
          f"{acc['snr_db_median']:.1f} dB (see {Path(args.output) / 'MODEL_CARD.md'})")
    return 0


def _add_proxy(sub) -> None:
    p = sub.add_parser("proxy", help="neural proxies of effect devices (for match --method "
                                     "proxy/hybrid)", formatter_class=_Formatter,
                       description="Neural proxies of effect devices.")
    p.error = _Parser.error.__get__(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = _add(actions, "train", "train a neural proxy of a device from its own input/output "
             "pairs over random parameters, and report its accuracy on held-out ones",
             "ddsp-synth proxy train compressor -o proxies/compressor --max-minutes 20",
             _cmd_proxy)
    t.prog = "ddsp-synth proxy train"
    t.add_argument("device", help="a built-in device name, a JSON device file or a .vst3 path")
    t.add_argument("-o", "--output", required=True,
                   help="output folder (proxy.safetensors, proxy.json, MODEL_CARD.md); "
                        "give DIR/DEVICE and pass --proxy-dir DIR to match")
    t.add_argument("--steps", type=_number(int, 1, 10_000_000),
                   help="training steps (default: train for --max-minutes)")
    t.add_argument("--max-minutes", type=_number(float, 0.01, 10_000.0),
                   help="training time budget in minutes (default: 30 unless --steps)")
    t.add_argument("--sample-rate", type=_number(int, 8000, 192000), default=16000, help="Hz")
    t.add_argument("--audio", nargs="+",
                   help="training recordings (default: the shared data if present, else "
                        "synthetic tones)")
    t.add_argument("--workers", type=_number(int, 1, 64), default=1,
                   help="worker processes running the device")
    t.add_argument("--seed", type=_number(int, 0, 2**32 - 1), default=0, help="random seed")
    t.add_argument("--force", action="store_true", help="overwrite an existing proxy")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- main
def _read_json(path) -> dict:
    from .config import ConfigError, read_json_file

    obj = read_json_file(path, 1 << 20, "settings file")
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object like "
                          '{"model": {...}, "train": {...}}')
    return obj


COMMANDS = (_add_demo, _add_prepare, _add_train, _add_export, _add_eval, _add_transfer,
            _add_render, _add_stream, add_live_parser, _add_export_runtime, _add_match, _add_proxy)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddsp-synth", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, with unknown options reported by the command they were given to."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.func(args)
    except _known_errors() as err:
        print(f"ddsp-synth {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddsp-synth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
