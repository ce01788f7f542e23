"""``ddsp-synth live``: its options, ``--list-devices``, and the call into :func:`run_live`."""

from __future__ import annotations

import argparse

from . import backends
from .runner import LiveError
from .session import LiveSettings, run_live

EXAMPLE = ("ddsp-synth live --model violin --connect        (sing into the microphone)\n"
           "  ddsp-synth live --model trumpet --midi           (play a MIDI keyboard)\n"
           "  ddsp-synth live --list-devices")


def list_devices(backend: str | None) -> str:
    """The audio and MIDI devices each backend can use, numbered as the options take them."""
    from . import midi_in

    lines = []
    client = backends.open_jack_client("ddsp-synth-list") if backend in (None, "jack") else None
    if client is not None:
        try:
            lines.append(f"JACK server at {client.samplerate} Hz, period {client.blocksize} "
                         "samples (the default backend while it runs)")
            for kind, title in (("capture", "--input (JACK audio sources)"),
                                ("playback", "--output (JACK audio destinations)"),
                                ("midi", "--midi (JACK MIDI sources)")):
                lines.append(f"  {title}:")
                lines += ([f"    {i}: {name}" for i, name in
                           enumerate(backends.jack_ports(client, kind))] or ["    none"])
        finally:
            client.close()
    elif backend == "jack":
        lines.append("JACK: no server is running")
    if backend in (None, "portaudio"):
        lines.append("PortAudio devices (--input/--output with --backend portaudio):")
        try:
            devices = backends.portaudio_devices()
            lines += [f"  {i}: {backends.device_label(d)}, {d['max_input_channels']} in, "
                      f"{d['max_output_channels']} out, default {d['default_samplerate']:g} Hz"
                      for i, d in enumerate(devices)] or ["  none (no sound card)"]
        except LiveError as err:
            lines.append(f"  {err}")
    try:
        ports = midi_in.list_inputs()
    except ImportError:
        ports = None
    lines.append("MIDI input ports (--midi PORT):")
    if ports is None:
        lines.append("  python-rtmidi is not installed")
    else:
        lines += [f"  {i}: {name}" for i, (_, name) in enumerate(ports)] or ["  none"]
    return "\n".join(lines)


def cmd_live(args) -> int:
    import torch

    from ..cli.common import effects_of

    torch.set_num_threads(1)  # the model's worker is one thread; more would fight the card's
    if args.list_devices:
        print(list_devices(args.backend))
        return 0
    if not args.model:
        raise LiveError("name the instrument with --model NAME (or ask for --list-devices)")
    settings = LiveSettings(
        model=args.model, midi=args.midi, backend=args.backend, seconds=args.seconds,
        input=args.input, output=[o for o in args.output.split(",") if o] if args.output else None,
        block=args.block, rate=args.rate, connect=args.connect, record=args.record,
        record_input=args.record_input,
        report=args.report, margin_ms=args.margin_ms, pitch_shift=args.pitch_shift,
        loudness_shift=args.loudness_shift, gate_db=args.gate_db, transpose=args.transpose,
        quiet=args.quiet, force=args.force, effects=effects_of(args))
    run_live(settings)
    return 0


def add_live_parser(sub) -> argparse.ArgumentParser:
    """Register ``live`` on the CLI's subcommands."""
    from ..cli.common import SECONDS_MAX, add_command, add_effects, installed_models, number

    p = add_command(sub, "live", "play an instrument live through the sound card: audio in (sing or "
             "play into the microphone) or MIDI in, instrument out; JACK where a JACK server "
             "runs, else PortAudio", EXAMPLE, cmd_live)
    p.add_argument("--model", help=installed_models())
    p.add_argument("--midi", nargs="?", const="", metavar="PORT",
                   help="play from MIDI instead of audio: a port number or part of its name "
                        "(see --list-devices), 'virtual' for a port other programs play into; "
                        "without PORT the JACK port ddsp-synth:midi_in, or the first MIDI port")
    p.add_argument("--backend", choices=["jack", "portaudio"],
                   help="sound card API (default: JACK when a JACK server runs, else PortAudio)")
    p.add_argument("--seconds", type=number(float, 0.1, SECONDS_MAX),
                   help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--list-devices", action="store_true",
                   help="list the audio and MIDI devices and exit")
    p.add_argument("--input", help="input device (PortAudio) or JACK port to listen to: its "
                                   "number or part of its name")
    p.add_argument("--output", help="output device (PortAudio) or JACK port(s) to play into, "
                                    "comma-separated: numbers or parts of names")
    p.add_argument("--block", type=number(int, 16, 8192),
                   help="block size in samples at the device's rate (default: JACK's period, "
                        "or 256 with PortAudio)")
    p.add_argument("--rate", type=number(int, 8000, 384000),
                   help="device sample rate in Hz (default: JACK's, or the output device's)")
    p.add_argument("--connect", action="store_true",
                   help="JACK: connect to the system's ports (first capture port, first two "
                        "playback ports, MIDI inputs) where --input/--output do not say")
    p.add_argument("--record", metavar="OUT.wav",
                   help="also record what is sent to the sound card (.wav float, or .flac)")
    p.add_argument("--record-input", metavar="IN.wav",
                   help="audio in: also record what the sound card gave (.wav float, or .flac)")
    p.add_argument("--report", metavar="OUT.json",
                   help="write the summary's figures (latency, late blocks, timings) as JSON")
    p.add_argument("--margin-ms", type=number(float, 0.0, 1000.0),
                   help="time the model has per hop beyond the schedule, rounded up to whole "
                        "blocks (default: from the warm-up's slowest hop)")
    p.add_argument("--pitch-shift", type=number(float, -48.0, 48.0), default=0.0,
                   help="audio in: semitones added to the pitch heard")
    p.add_argument("--loudness-shift", type=number(float, -60.0, 60.0), default=0.0,
                   help="audio in: dB added to the loudness heard")
    p.add_argument("--gate-db", type=number(float, -200.0, 0.0), default=-60.0,
                   help="audio in: mute input quieter than this (dB)")
    p.add_argument("--transpose", type=number(float, -48.0, 48.0), default=0.0,
                   help="MIDI in: semitones added to every note")
    add_effects(p)
    p.add_argument("--force", action="store_true", help="overwrite existing --record, --record-input, --report")
    p.add_argument("--quiet", action="store_true", help="no status line")
    return p


__all__ = ["add_live_parser", "cmd_live", "list_devices", "LiveError"]
