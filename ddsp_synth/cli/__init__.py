"""``ddsp-synth``: the command line. Each subcommand parses its arguments and makes one call
into the library; ``main(argv) -> int`` turns a user's error (:class:`~ddsp_synth.errors.
UserError`) into one line on stderr and a non-zero exit code. Anything else is a bug and
keeps its traceback.

The commands live by what they are for: :mod:`.models` (demo, prepare, train, export, eval),
:mod:`.play` (transfer, resynth, render, stream, export-runtime), :mod:`.effects` (match,
proxy train); :mod:`.common` holds what they share.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import UserError
from ..signals import exit_status, stop_signals_interrupt
from . import control, effects, fx, models, play
from ..soundcard.command import add_live_parser
from .common import Formatter, Parser

DESCRIPTION = """\
Play any melody with a trained instrument. ddsp_synth listens to a monophonic recording
(singing, whistling, one instrument) through its pitch and loudness and resynthesizes it
with an instrument learned from a few minutes of recordings: violin, flute, trumpet, alto
sax, cello and a tenor sax through a small amp (tenorsax_amp, its effect stages learned with
it) ship with it, and you can train your own. It also estimates and drives effect
chains (EQ, compressor, distortion, your plugins).
"""
EPILOG = """\
examples:
  ddsp-synth transfer examples/singing_scale.flac --model violin -o violin.wav
  ddsp-synth prepare my_recordings/ -o data/mine && ddsp-synth train data/mine -o runs/mine
  ddsp-synth COMMAND --help        (every command's options, defaults and an example)
"""
COMMANDS = (models.COMMANDS + play.COMMANDS + (add_live_parser,) + effects.COMMANDS
            + fx.COMMANDS + control.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ddsp-synth", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=Formatter)
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
        args = _parse(argv)  # imports the commands' libraries (torch): a second or so
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    except KeyboardInterrupt:
        print("ddsp-synth: interrupted", file=sys.stderr)
        return 130
    name = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    try:
        with stop_signals_interrupt():  # kill and a closed terminal stop it as Ctrl-C does
            return args.func(args)
    except UserError as err:
        print(f"ddsp-synth {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"ddsp-synth {name}: interrupted", file=sys.stderr)
        return exit_status(stop)


if __name__ == "__main__":
    sys.exit(main())
