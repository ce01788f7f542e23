"""Commands that make sound with a model: ``transfer``, ``resynth``, ``render`` (MIDI),
``stream`` (a simulated sound card) and ``export-runtime``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..audio_io import AudioError
from ..errors import InputError, UserError
from .common import (TIME_BAR, add_amounts, add_command, add_effects, add_tone, amounts_of,
                     batch_status, effects_of, installed_models, number, output_pairs, peak_note,
                     say_file_error, tone_of, tone_text)

# why a MIDI file renders silent: its levels (the curves' level follows these alone) or,
# when they were given, the settings
SILENT_NOTE = "every note's velocity, volume (CC7) or expression (CC11) is at or near 0"
SILENT_SETTINGS = "or check --amount, --loudness-shift and --effects"



# ----------------------------------------------------------------------------- transfer
def _refuse_midi(inputs) -> None:
    """A MIDI file given to transfer: say which command plays it."""
    from ..midi import is_midi_file

    for item in inputs:
        if Path(item).is_file() and is_midi_file(item):
            raise AudioError(f"{item}: is a MIDI file; play it with 'ddsp-synth render' "
                             "(the same file, --model NAME -o OUT.wav)")


def _cmd_transfer(args) -> int:
    from tqdm import tqdm

    from ..audio_io import check_writable, limit_peak, load_audio, resample_audio, write_audio
    from ..model import load_model, resolve_model
    from ..transfer import (TransferOptions, check_auto_adjust_stats, shift_summary,
                            transfer_audio)

    model, meta = load_model(resolve_model(args.model))
    sr = model.config.synth.sample_rate
    out_sr = args.sample_rate or sr
    resynth = args.command == "resynth"
    options = TransferOptions(
        auto_adjust=not (resynth or args.no_auto_adjust),
        pitch_shift_semitones=0.0 if resynth else args.pitch_shift,
        loudness_shift_db=0.0 if resynth else args.loudness_shift,
        quiet_db=40.0 if resynth else args.quiet_db, amounts=amounts_of(args, model),
        seed=args.seed,
        effects=effects_of(args))
    _refuse_midi(args.inputs)
    pairs = output_pairs(args.inputs, Path(args.output), "." + args.format)
    for src, dst in pairs:  # (nothing written into the model's own folder either)
        check_writable(dst, args.force, inputs=[src, resolve_model(args.model)])
    if args.preset_out and len(pairs) > 1:
        raise InputError("--preset-out saves one file's tone match: give one input (each "
                         "file gets its own estimate)")
    if args.preset_out and any(Path(args.preset_out).resolve() == dst.resolve()
                               for _, dst in pairs):
        raise InputError(f"--preset-out {args.preset_out}: the same file as -o")
    tone = tone_of(args, inputs=[*args.inputs, resolve_model(args.model)])
    if options.auto_adjust:
        check_auto_adjust_stats(meta)
    failures = 0
    for src, dst in tqdm(pairs, desc=args.command, unit="file", disable=args.quiet or len(pairs) < 2):
        try:
            audio = load_audio(src, sr)
            # the analysis advances by whole frames: the total is theirs, not the samples'
            seconds = -(-len(audio) // model.config.synth.hop) / model.config.synth.frame_rate_hz
            with tqdm(total=seconds, unit="s audio", leave=False, disable=args.quiet,
                      desc=src.name, bar_format=TIME_BAR) as bar:
                out, info = transfer_audio(model, meta, audio, options, bar,
                                           cache=not args.no_cache, pitch_model=args.pitch_model)
            if tone is not None:
                out, matched, whole = tone.apply(out, sr, options.effects)
            out = resample_audio(out, sr, out_sr)
            write_audio(dst, limit_peak(out), out_sr, force=args.force)
            if tone is not None:
                tone.save(whole, sr)
            adj = info["adjusted"]
            clip = peak_note(out) if tone is None else ""  # the tone line says it
            print(f"{src} -> {dst} ({shift_summary(adj, options)}; sounding "
                  f"{adj['sounding_fraction']:.0%} of the time{clip})")
            if tone is not None:
                print(f"  {tone_text(tone, matched, options.effects, out)}")
            if info.get("warning"):
                print(f"ddsp-synth {args.command}: warning: {dst}: {info['warning']}",
                      file=sys.stderr)
        except UserError as err:
            failures += 1
            say_file_error(args.command, src, err)
    return batch_status(failures, len(pairs))


def _add_transfer(sub) -> None:
    for name, help_text, example in (
            ("transfer", "play recordings with a trained instrument",
             "ddsp-synth transfer examples/singing_scale.flac --model violin -o violin.wav"),
            ("resynth", "resynthesize recordings with their own instrument's model, unadjusted "
                        "(to check a model)",
             "ddsp-synth resynth my_cello_take.wav --model models/my_cello -o check.wav")):
        p = add_command(sub, name, help_text, example, _cmd_transfer)
        p.add_argument("inputs", nargs="+", help="audio files or folders")
        p.add_argument("--model", required=True, help=installed_models())
        p.add_argument("-o", "--output", required=True,
                       help="output .wav/.flac for one file, else a folder")
        p.add_argument("--format", choices=["wav", "flac"], default="wav",
                       help="format of files written into an output folder")
        p.add_argument("--sample-rate", type=number(int, 8000, 192000),
                       help="output rate in Hz (default: the model's)")
        if name == "transfer":
            p.add_argument("--no-auto-adjust", action="store_true",
                           help="keep the input's register and loudness as they are")
            p.add_argument("--pitch-shift", type=number(float, -48.0, 48.0), default=0.0,
                           help="semitones (fractional allowed); auto-adjust then picks the "
                                "octave, so with it on only the shift within an octave counts")
            p.add_argument("--loudness-shift", type=number(float, -60.0, 60.0), default=0.0,
                           help="dB")
            p.add_argument("--quiet-db", type=number(float, 0.0, 200.0), default=40.0,
                           help="auto-adjust mutes frames this many dB below the input's loud "
                                "level")
        add_amounts(p)
        add_effects(p)
        add_tone(p)
        p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                       help="seed of the noise generator")
        p.add_argument("--pitch-model", choices=["tiny", "full"],
                       help="CREPE size for the input's pitch (default: the model's, tiny; "
                            "full is ~16x slower, and surer of low notes with a weak "
                            "fundamental: bassoon, bass voice)")
        p.add_argument("--no-cache", action="store_true",
                       help="do not reuse or store the input's features")
        p.add_argument("--force", action="store_true", help="overwrite existing outputs")
        p.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- render (MIDI)
def _cmd_render(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..audio_io import SILENT_PEAK, check_audio_output, limit_peak, resample_audio, write_audio
    from ..midi import MidiError, MidiOptions, midi_message, midi_to_curves
    from ..model import load_model, resolve_model
    from ..transfer import TransferOptions, render

    model_dir = resolve_model(args.model)
    out_path = check_audio_output(args.output, args.force, inputs=[args.input, model_dir])
    if args.preset_out and Path(args.preset_out).resolve() == out_path.resolve():
        raise InputError(f"--preset-out {args.preset_out}: the same file as -o")
    tone = tone_of(args, inputs=[args.input, model_dir])
    model, meta = load_model(model_dir)
    amounts = amounts_of(args, model)
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
    options = TransferOptions(amounts=amounts, seed=args.seed, effects=effects_of(args))
    seconds = len(curves["f0_hz"]) / model.config.synth.frame_rate_hz
    with tqdm(total=round(seconds, 1), unit="s audio", disable=args.quiet, desc="render") as bar:
        audio = render(model, curves["f0_hz"], curves["loudness_db"], options, bar)
    silent = float(np.abs(audio).max(initial=0.0)) < SILENT_PEAK
    settings = bool(args.amount) or args.loudness_shift != 0 or (
        options.effects is not None and not options.effects.empty)
    why = f"{SILENT_NOTE}{', ' + SILENT_SETTINGS if settings else ''}"
    if silent and tone is not None:
        raise InputError(f"{args.input}: it plays silent ({why}): nothing to tone-match")
    if tone is not None:
        audio, matched, whole = tone.apply(audio, sr, options.effects)
    out_sr = args.sample_rate or sr
    audio = resample_audio(audio, sr, out_sr)
    write_audio(out_path, limit_peak(audio), out_sr, force=args.force)
    if tone is not None:
        tone.save(whole, sr)
    message = midi_message(curves["info"], "--track N", "--transpose {:g}")
    clip = peak_note(audio) if tone is None else ""  # the tone line says it
    print(f"{args.input} -> {out_path} ({seconds:.2f} s): {message}{clip}")
    if silent:
        print(f"ddsp-synth render: warning: {out_path}: the output is silent ({why})",
              file=sys.stderr)
    if tone is not None:
        print(tone_text(tone, matched, options.effects, audio))
    return 0


def _add_render(sub) -> None:
    p = add_command(sub, "render", "play a MIDI file (one monophonic part) with a trained instrument",
             "ddsp-synth render examples/ode_to_joy.mid --model violin -o ode.wav", _cmd_render)
    p.add_argument("input", help="MIDI file (.mid)")
    p.add_argument("--model", required=True, help=installed_models())
    p.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    p.add_argument("--track", type=number(int, 0, 10000),
                   help="which part to play, numbered from 0 among those with notes (default: "
                        "the first pitched one); a polyphonic part plays its highest voice")
    p.add_argument("--transpose", type=number(float, -48.0, 48.0), default=0.0,
                   help="semitones (fractional allowed)")
    p.add_argument("--tempo-scale", type=number(float, 0.1, 10.0), default=1.0,
                   help="multiplies the tempo: 2 = twice as fast, 0.5 = twice as slow")
    p.add_argument("--loudness-shift", type=number(float, -60.0, 60.0), default=0.0, help="dB")
    p.add_argument("--release", type=number(float, 0.0, 10.0), default=0.2,
                   help="release of the last note (s), added to the MIDI length")
    p.add_argument("--sample-rate", type=number(int, 8000, 192000),
                   help="output rate in Hz (default: the model's)")
    add_amounts(p)
    add_effects(p)
    add_tone(p)
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                   help="seed of the noise generator")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- stream
def _cmd_stream(args) -> int:
    from tqdm import tqdm

    import torch

    from ..audio_io import (atomic_write_text, check_audio_output, check_writable, limit_peak,
                           load_audio, write_audio)
    from ..model import load_model, resolve_model
    from ..streaming import LiveOptions, stream_audio

    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)  # no output may be a file of the model
    check_audio_output(args.output, args.force, inputs=[args.input, model_dir])
    effects = effects_of(args)
    if args.report:
        if Path(args.report).resolve() == Path(args.output).resolve():
            raise AudioError(f"{args.report}: the same file as -o; give the report another name")
        check_writable(Path(args.report), args.force, inputs=[args.input, model_dir])
    model, _ = load_model(model_dir)
    amounts = amounts_of(args, model)
    sr = model.config.synth.sample_rate
    audio = load_audio(args.input, sr)
    block = int(round(args.block_ms * sr / 1000))
    if block < 1:
        raise AudioError(f"--block-ms {args.block_ms} is shorter than one sample")
    options = LiveOptions(pitch_shift_semitones=args.pitch_shift,
                          loudness_shift_db=args.loudness_shift, gate_db=args.gate_db)
    with tqdm(total=-(-len(audio) // block), unit="block", disable=args.quiet,
              desc="stream") as bar:
        try:
            out, report = stream_audio(model, audio, block, options, engine=args.engine,
                                       crepe_model=args.pitch_model, progress=bar,
                                       amounts=amounts, effects=effects)
        except InputError as err:
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
    p = add_command(sub, "stream", "simulate live playing from a file, block by block, and report "
             "per-block compute time and latency",
             "ddsp-synth stream examples/singing_scale.flac -o live.wav --model violin",
             _cmd_stream)
    p.add_argument("input", help="audio file")
    p.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    p.add_argument("--model", required=True, help=installed_models())
    p.add_argument("--block-ms", type=number(float, 0.1, 1000.0), default=10.0,
                   help="sound-card block length (ms)")
    p.add_argument("--engine", choices=["torch", "torchscript", "onnx"], default="onnx",
                   help="how the synthesis step runs (same audio; onnx is fastest)")
    p.add_argument("--pitch-model", choices=["tiny", "full"], default="tiny", help="CREPE size")
    p.add_argument("--pitch-shift", type=number(float, -48.0, 48.0), default=0.0, help="semitones")
    p.add_argument("--loudness-shift", type=number(float, -60.0, 60.0), default=0.0, help="dB")
    p.add_argument("--gate-db", type=number(float, -200.0, 0.0), default=-60.0,
                   help="mute frames quieter than this (dB)")
    p.add_argument("--threads", type=number(int, 1, 64), default=1,
                   help="torch threads (live use: 1)")
    add_amounts(p)
    add_effects(p)
    p.add_argument("--report", help="also write the timing report as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- export-runtime
def _cmd_export_runtime(args) -> int:
    from ..audio_io import check_writable
    from ..model import load_model, resolve_model
    from ..streaming import export_runtime

    suffixes = (".onnx",) if args.format == "onnx" else (".pt", ".ts")
    model_dir = resolve_model(args.model)
    check_writable(Path(args.output), args.force, inputs=[model_dir], suffixes=suffixes)
    check_writable(Path(args.output + ".json"), args.force, inputs=[model_dir])  # its contract
    model, _ = load_model(model_dir)
    export_runtime(model, args.output, args.format)
    print(f"wrote the streaming step of {args.model} as {args.format} to {args.output} (its "
          f"contract: {args.output}.json, docs/runtime.md)")
    return 0


def _add_export_runtime(sub) -> None:
    p = add_command(sub, "export-runtime", "write the streaming step as TorchScript or ONNX for a C++ "
             "or plugin host", "ddsp-synth export-runtime violin -o violin_step.onnx",
             _cmd_export_runtime)
    p.add_argument("model", help=installed_models())
    p.add_argument("-o", "--output", required=True, help="output file (.pt or .onnx)")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="onnx")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


COMMANDS = (_add_transfer, _add_render, _add_stream, _add_export_runtime)
