"""What every command shares: the help format, one-line usage errors, bounded numbers,
``--amount NAME=VALUE``, settings files, and the list of models for the help texts."""

from __future__ import annotations

import argparse
from pathlib import Path
import math
import sys

# a progress bar over seconds of audio, shown with one decimal
TIME_BAR = "{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]"
SECONDS_MAX = 24 * 3600.0  # no single input or output longer than a day


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows every real default (unless the help already says it) and keeps the examples'
    line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        hidden = action.default is None or action.default is False
        if not hidden and action.default != argparse.SUPPRESS and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Usage errors as one line that says where the help is, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def number(kind, low=None, high=None):
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


def add_command(sub, name: str, help_text: str, example: str, func) -> argparse.ArgumentParser:
    """A subcommand with its description, an example in its help and one-line errors."""
    p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:]
                       + ".", epilog=f"example:\n  {example}", formatter_class=Formatter)
    p.error = Parser.error.__get__(p)
    p.set_defaults(func=func)
    return p


def amount(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` -> (name, value): a stage's live amount."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected STAGE=AMOUNT (e.g. reverb=0.3), got {text!r}")
    return name.strip(), number(float, 0.0, 10.0)(value)


def add_amounts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amount", type=amount, action="append", metavar="STAGE=AMOUNT",
                   help="live amount of a stage of the model's chain, by name: a source's "
                        "linear gain (harmonic=0.8, noise=0.5) or an effect's wet/dry mix "
                        "(reverb=0.3: 0 = dry at the room's level, 1 = as trained); may be "
                        "repeated")


def add_effects(p: argparse.ArgumentParser) -> None:
    p.add_argument("--effects", metavar="PRESET.json",
                   help="an effects rack after the instrument: a preset (the preset.json that "
                        "match, control apply and style write, or one saved by the app), "
                        "played by the PyTorch twins of its devices")


def effects_of(args):
    """The ``--effects`` preset, read and checked (before any analysis), or None."""
    from ..rack import read_preset

    if not getattr(args, "effects", None):
        return None
    from ..rack import PresetError

    preset = read_preset(args.effects)
    try:
        return preset.check_twins()
    except PresetError as err:
        raise PresetError(f"{args.effects}: {err}") from None


def tone_aspects(text: str) -> tuple[str, ...]:
    """An argparse type: ``eq,dynamics,loudness`` or any of them."""
    from ..errors import InputError
    from ..tone.match import check_aspects

    try:
        aspects = check_aspects(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not aspects:
        raise argparse.ArgumentTypeError("name at least one of eq, dynamics, loudness")
    return aspects


def add_tone(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tone matching (the rack set so that the output sounds like a "
                             "reference recording)")
    g.add_argument("--tone-reference", metavar="REF",
                   help="a recording of anything to sound like (wav, flac, ogg, mp3, aiff): "
                        "an EQ (low shelf, peak, high shelf) from its long-term spectrum, a "
                        "compressor from its loudness range and the output gain from its "
                        "loudness are estimated on the instrument's output and applied after "
                        "it (after --effects when both are given); the settings are printed")
    g.add_argument("--tone-amount", type=number(float, 0.0, 100.0), default=100.0,
                   metavar="PERCENT",
                   help="how far to move toward the reference: 0 = no change, 100 = the full "
                        "match (EQ gains and the loudness change scale with it, the ratio "
                        "geometrically)")
    # the default is already parsed: argparse would convert a string default, which imports
    # the tone matcher (1.6 s) for every command that offers the option
    g.add_argument("--tone-aspects", type=tone_aspects, default=("eq", "dynamics", "loudness"),
                   metavar="LIST",
                   help="which to match, comma-separated: eq, dynamics, loudness (the others "
                        "stay neutral; default: all three)")
    g.add_argument("--preset-out", metavar="PRESET.json",
                   help="also save the rack applied after the instrument (--effects' devices, "
                        "then the tone match's) as a preset: '--effects PRESET.json' plays it "
                        "again, and the app loads it when --effects is not given")


class ToneRequest:
    """``--tone-*`` checked before any work: the reference read and checked, the preset
    output writable."""

    def __init__(self, args, inputs=()):
        from ..audio_io import check_writable
        from ..errors import InputError
        from ..tone.inputs import load_signal
        from ..tone.match import ToneConfig

        self.amount = args.tone_amount / 100.0
        self.aspects = args.tone_aspects
        self.preset_out = Path(args.preset_out) if args.preset_out else None
        if self.preset_out is not None:
            check_writable(self.preset_out, args.force, inputs=inputs, suffixes=(".json",))
        try:
            self.reference, self.rate = load_signal(args.tone_reference, None, "the reference",
                                                    ToneConfig().min_seconds)
        except InputError as err:
            raise InputError(f"--tone-reference {args.tone_reference}: {err}") from None

    def apply(self, audio, sample_rate: int, effects=None):
        """The instrument's output [n] (after ``effects``, a Preset or None) matched to the
        reference: (audio, the tone preset, the whole rack after the instrument)."""
        from ..rack import Preset, Rack
        from ..tone import match_tone

        tone = match_tone(audio, sample_rate, self.reference, self.rate, self.aspects,
                          self.amount)
        out = Rack(tone, sample_rate).process(audio)
        whole = tone if effects is None or effects.empty else Preset(
            effects.entries + tone.entries, effects.names + tone.names,
            effects.values + tone.values)
        return out, tone, whole

    def save(self, whole, sample_rate: int) -> None:
        """Write the rack after the instrument to --preset-out (atomically), if given."""
        import json

        from ..audio_io import atomic_write_text
        from ..rack import sources_relative_to

        if self.preset_out is not None:
            preset = sources_relative_to(whole.to_dict(sample_rate), self.preset_out.parent)
            atomic_write_text(self.preset_out, json.dumps(preset, indent=2) + "\n")


def tone_of(args, inputs=()):
    """The ``--tone-*`` options, checked before any analysis, or None (``--preset-out``
    without ``--tone-reference`` is refused)."""
    from ..errors import InputError

    if not getattr(args, "tone_reference", None):
        if getattr(args, "preset_out", None):
            raise InputError("--preset-out saves the tone match's rack: give --tone-reference "
                             "too (--effects PRESET.json is already a preset)")
        return None
    return ToneRequest(args, inputs)


def peak_note(audio, than: str = "than it played") -> str:
    """``""`` or, when ``audio`` would clip (``limit_peak`` scales it down before writing),
    ``"; its peaks reach +X dBFS, so the file is Y dB quieter <than> (no clipping)"``."""
    import numpy as np

    peak = float(np.abs(audio).max(initial=0.0))
    if peak <= 0.999:
        return ""
    return (f"; its peaks reach {20 * np.log10(peak):+.1f} dBFS, so the file is "
            f"{20 * np.log10(peak / 0.999):.1f} dB quieter {than} (no clipping)")


def tone_text(request, tone, effects=None, audio=None) -> str:
    """The printed line: what the rack after the instrument now does, in natural units (and
    how much the peak limit takes off when the matched ``audio`` would clip)."""
    after = " after --effects" if effects is not None and not effects.empty else ""
    amount = f"{request.amount:.0%}"
    text = f"tone match ({amount}, {', '.join(request.aspects)}){after}: {tone.describe()}"
    if audio is not None:
        text += peak_note(audio, "than the match")
    if request.preset_out is not None:
        text += f"; saved to {request.preset_out}"
    return text


def amounts_of(args, model=None) -> dict:
    """The ``--amount`` options as {stage: amount} (a repeated stage: the last wins); given
    the model, a stage its chain lacks is refused at once (before any analysis)."""
    from ..errors import InputError
    from ..stages.chain import check_amounts

    amounts = dict(args.amount or [])
    if model is None:
        return amounts
    try:
        return check_amounts(amounts, model.synth.labels)
    except InputError as err:
        raise InputError(f"--amount: {err}") from None


def read_json(path) -> dict:
    """A settings file: a JSON object, bounded and checked."""
    from ..config import ConfigError, read_json_file

    obj = read_json_file(path, 1 << 20, "settings file")
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object like "
                          '{"model": {...}, "train": {...}}')
    return obj


def installed_models() -> str:
    """The ``--model`` help: the shipped models, and the user's own in the models folder."""
    from ..model import available_models, shipped_models

    shipped = shipped_models()
    own = [n for n in available_models() if n not in shipped]
    text = f"shipped model name ({', '.join(shipped) or 'none installed'}) or a model folder"
    return text + (f"; your models in the models folder: {', '.join(own)}" if own else "")


def chain_help() -> str:
    from ..stages.registry import EFFECT_NAMES

    return (f"devices in order, comma-separated: {', '.join(EFFECT_NAMES)}, a JSON device file "
            "or a .vst3 path; NAME:PARAM=VALUE fixes a parameter, NAME@METHOD sets that "
            "device's gradient method")


def batch_status(failures: int, total: int) -> int:
    """A batch's exit status: 0 all written, 1 some files failed (the others written), 2
    every file failed (nothing written: as a command that stopped on its error)."""
    return 0 if not failures else 2 if failures >= total else 1


def output_pairs(inputs: list[Path], output: Path, ext: str) -> list[tuple[Path, Path]]:
    """Pair every input file with its output path (a folder in gives a folder out, never
    inside an input folder: a second run would take the first one's outputs as inputs)."""
    from ..audio_io import AudioError, check_output_folder, find_audio_files

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
        if not output.is_dir() and output.suffix.lower() in (".wav", ".flac"):
            raise AudioError(f"{output}: a folder or several inputs write one file each into "
                             f"a folder: give a folder, not a {output.suffix} file name")
        check_output_folder(output, inputs=[i for i in inputs if Path(i).is_dir()])
    return pairs


def say_file_error(command: str, path, err) -> None:
    """One line on stderr for a file of a batch that failed, naming it once (most errors
    already start with it): ``ddsp-synth COMMAND: error: PATH: reason``."""
    text = str(err)
    message = text if text.startswith(str(path)) else f"{path}: {text}"
    print(f"ddsp-synth {command}: error: {message}", file=sys.stderr)


def interrupted(summary: dict) -> int:
    """A training stopped by a signal (with a checkpoint): one line on stderr saying so and
    how to go on; the exit status 128 + the signal's number."""
    print(f"interrupted at step {summary['step']}; checkpoint {summary['checkpoint']}; "
          "continue with --resume", file=sys.stderr)
    return 128 + summary["signal"]
