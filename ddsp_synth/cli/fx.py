"""``fx``: a preset's effect chain applied to audio files through the real devices."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import TIME_BAR, add_command, batch_status, output_pairs, say_file_error


def _over_note(out: dict) -> str:
    """What became of peaks over full scale: clipped (FLAC) or kept (float WAV)."""
    import math

    if out["clipped"]:
        return " (clipped at full scale: write .wav for float output)"
    if out["peak"] > 1.0:
        return (f" (peaks {20 * math.log10(out['peak']):+.1f} dBFS, kept in the float WAV: "
                "lower the chain's gain before playing or converting it)")
    return ""


def _cmd_fx(args) -> int:
    from tqdm import tqdm

    from ..audio_io import check_writable, header_seconds
    from ..fx import check_input, fx_file
    from ..rack import read_preset

    preset = read_preset(args.preset)
    pairs = output_pairs(args.inputs, Path(args.output), "." + args.format)
    for src, dst in pairs:
        check_writable(dst, args.force, inputs=[src, args.preset])
    failures, ready = 0, []
    for src, dst in pairs:  # every input checked before any is processed
        try:
            check_input(src)
            ready.append((src, dst))
        except UserError as err:
            failures += 1
            say_file_error("fx", src, err)
    for src, dst in tqdm(ready, desc="fx", unit="file", disable=args.quiet or len(ready) < 2):
        try:
            info = header_seconds(src)
            with tqdm(total=info, unit="s audio", leave=False, disable=args.quiet,
                      desc=src.name, bar_format=TIME_BAR) as bar:
                out = fx_file(preset, src, dst, progress=bar)
            print(f"{src} -> {dst} ({out['seconds']:.2f} s, {out['sample_rate']} Hz, "
                  f"{out['channels']} channel(s), peak {out['peak']:.2f}){_over_note(out)}")
        except UserError as err:
            failures += 1
            say_file_error("fx", src, err)
    return batch_status(failures, len(pairs))


def _add_fx(sub) -> None:
    p = add_command(sub, "fx", "apply a preset's effect chain to audio files through the real "
                    "devices (pedalboard, plugins, commands): any rate, channels and length",
                    "ddsp-synth fx matched/preset.json song.wav -o song_fx.wav", _cmd_fx)
    p.add_argument("preset", help="a preset: the preset.json that match, control apply and "
                                  "style write, or one saved by the app")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-o", "--output", required=True,
                   help="output .wav (32-bit float) or .flac (24-bit) for one file, else a folder")
    p.add_argument("--format", choices=["wav", "flac"], default="wav",
                   help="format of files written into an output folder")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


COMMANDS = (_add_fx,)
