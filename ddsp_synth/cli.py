"""``ddsp-synth``: command-line entry point. Each subcommand is a thin call into the library."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .audio_io import AudioError


def _cmd_demo(args) -> int:
    from .audio_io import check_writable, write_audio
    from .demo import render_demo
    from .processors import SynthConfig

    check_writable(args.output, args.force)
    audio = render_demo(args.seconds, SynthConfig(sample_rate=args.sample_rate,
                                                  hop=args.sample_rate // 100), args.seed)
    write_audio(args.output, audio, args.sample_rate, force=args.force)
    print(f"wrote {args.output} ({len(audio) / args.sample_rate:.2f} s at {args.sample_rate} Hz)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddsp-synth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render a synthesized phrase (no model) to a WAV/FLAC file")
    demo.add_argument("-o", "--output", default="demo.wav", help="output .wav or .flac")
    demo.add_argument("--seconds", type=float, default=4.0)
    demo.add_argument("--sample-rate", type=int, default=16000,
                      choices=[16000, 22050, 44100, 48000])
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--force", action="store_true", help="overwrite an existing output")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AudioError, ValueError) as err:
        print(f"ddsp-synth {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddsp-synth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
