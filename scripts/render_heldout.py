"""Render the held-out sets of issue 13 with the shared generator, in one command.

    python scripts/render_heldout.py            # everything below; existing files are skipped
    python scripts/render_heldout.py --list     # what would be rendered, and where

Unseen performances (seeds never used for training; the shared training files are 1000..1004,
the shipped models' extra training renders 2000..2004, the clarinet example 3001):

* ``data/heldout/NAME_SEED.*``: 60 s of every shipped instrument, seeds 7000..7004 (violin,
  flute, trumpet, altosax, cello), for ``ddsp-synth eval models/NAME data/heldout/NAME_SEED.flac``;
* ``data/heldout_extra/NAME_SEED.*``: two more 60 s performances of every shipped instrument
  (seeds 7010..7014 and 7020..7024), to see how much the figures vary from one 60 s
  performance to the next;
* ``data/new/NAME_SEED.*``: an instrument the project does not ship, for the "time to an
  instrument" goal: clarinet and oboe, 180 s to train on (seeds 3100 / 3200) and 60 s held
  out (seeds 7100 / 7200).

Each render keeps everything the generator writes: ``.flac`` (16 kHz mono PCM16, the same
samples as the generator's ``.wav``; FLAC is lossless), ``.mid``, ``.notes.csv`` (note
boundaries) and ``.f0.csv`` (reference pitch at 100 Hz from MIDI pitch + bend). The generator
is deterministic: flute seed 1001, 180 s reproduces ``shared/data/train/flute.*`` bit for bit
(FluidSynth 2.3.1, Debian ``fluid-soundfont-gm``).

Needs the ``fluidsynth`` binary and the FluidR3_GM soundfont:
``apt-get install fluidsynth fluid-soundfont-gm``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ddsp_synth.audio_io import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]

GENERATOR = ROOT.parent / "shared" / "data" / "render_melodies.py"
DEFAULT_SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 16000
HELDOUT_SECONDS = 60.0
NEW_TRAIN_SECONDS = 180.0
SIDECARS = (".mid", ".notes.csv", ".f0.csv")


@dataclass(frozen=True)
class Render:
    """One generator run: ``instrument`` with ``seed`` for ``seconds`` into ``folder``."""

    folder: str
    instrument: str
    seed: int
    seconds: float

    @property
    def stem(self) -> str:
        return f"{self.instrument}_{self.seed}"


SHIPPED = ("violin", "flute", "trumpet", "altosax", "cello")
HELDOUT_SEED_BASE = 7000
EXTRA_SEED_BASES = (7010, 7020)
RENDERS = (
    *(Render("heldout", name, HELDOUT_SEED_BASE + i, HELDOUT_SECONDS)
      for i, name in enumerate(SHIPPED)),
    *(Render("heldout_extra", name, base + i, HELDOUT_SECONDS)
      for base in EXTRA_SEED_BASES for i, name in enumerate(SHIPPED)),
    Render("new", "clarinet", 3100, NEW_TRAIN_SECONDS),
    Render("new", "oboe", 3200, NEW_TRAIN_SECONDS),
    Render("new", "clarinet", 7100, HELDOUT_SECONDS),
    Render("new", "oboe", 7200, HELDOUT_SECONDS),
)


def outputs(r: Render, data_dir: Path) -> list[Path]:
    base = data_dir / r.folder / r.stem
    return [base.with_suffix(".flac")] + [Path(str(base) + ext) for ext in SIDECARS]


def check_tools(sf2: Path) -> None:
    """Exit with one line if the generator, fluidsynth or the soundfont is missing."""
    if not GENERATOR.exists():
        sys.exit(f"error: the shared generator {GENERATOR} is missing")
    if shutil.which("fluidsynth") is None:
        sys.exit("error: the fluidsynth binary is missing: apt-get install fluidsynth fluid-soundfont-gm")
    if not sf2.exists():
        sys.exit(f"error: soundfont {sf2} is missing: apt-get install fluid-soundfont-gm "
                 "(or pass --sf2)")


def render_one(r: Render, data_dir: Path, sf2: Path) -> None:
    """Run the generator in a scratch folder, then move its files into place atomically."""
    with tempfile.TemporaryDirectory(prefix="render_heldout_") as work:
        tmp = Path(work) / r.stem
        cmd = [sys.executable, str(GENERATOR), "--instrument", r.instrument, "--seed", str(r.seed),
               "--seconds", f"{r.seconds:g}", "--fs", str(SAMPLE_RATE), "--sf2", str(sf2),
               "--out", str(tmp)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            sys.exit(f"error: generator failed for {r.stem}: {last}")
        # Sidecars first and the audio last: an interrupted run leaves no .flac without them.
        dest = outputs(r, data_dir)
        for src_ext, path in zip(SIDECARS, dest[1:]):
            data = Path(str(tmp) + src_ext).read_bytes()
            atomic_write_bytes(path, lambda t, d=data: Path(t).write_bytes(d))
        samples, sr = sf.read(str(tmp) + ".wav", dtype="int16")
        atomic_write_bytes(dest[0], lambda t: sf.write(t, samples, sr, format="FLAC",
                                                       subtype="PCM_16"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data",
                    help="root of heldout/ and new/ (default: data/ of the checkout)")
    ap.add_argument("--sf2", type=Path, default=DEFAULT_SF2, help="FluidR3_GM soundfont")
    ap.add_argument("--list", action="store_true", help="print the renders and exit")
    args = ap.parse_args(argv)

    todo = [r for r in RENDERS if not all(p.exists() for p in outputs(r, args.data_dir))]
    if args.list:
        for r in RENDERS:
            state = "to render" if r in todo else "exists"
            print(f"{outputs(r, args.data_dir)[0]}  {r.instrument} seed {r.seed} "
                  f"{r.seconds:g} s  ({state})")
        return 0
    if todo:
        check_tools(args.sf2)
    for i, r in enumerate(RENDERS):
        if r not in todo:
            print(f"[{i + 1}/{len(RENDERS)}] {r.folder}/{r.stem}: exists, skipped", flush=True)
            continue
        print(f"[{i + 1}/{len(RENDERS)}] {r.folder}/{r.stem}: {r.instrument} seed {r.seed}, "
              f"{r.seconds:g} s", flush=True)
        render_one(r, args.data_dir, args.sf2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
