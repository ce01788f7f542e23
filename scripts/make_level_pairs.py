#!/usr/bin/env python3
"""Make the README's worked ``control train --pairs`` task: automatic level and tone.

From any folder of recordings, cut clips and write two folders of files with matching
names: ``in/`` holds each clip at a random level (-30 to +0 dB) with a random treble tilt (a
pedalboard high shelf at 3 kHz, -9 to +9 dB), ``target/`` the same clip without the tilt, at
-20 LUFS (BS.1770). A controller of ``highshelf,gain`` trained on them learns to undo the
tilt and set the level from the input alone (no reference).

``--task ride`` makes the per-frame task of docs/control.md instead: the input rides the
level (a new gain every 0.4 to 1.5 s, -15 to +5 dB, 30 ms ramps), the target is the clip at
-20 LUFS: a per-clip ``gain`` can only set the average, a per-frame one can undo the rides.

    python scripts/make_level_pairs.py ../shared/data/train -o data/level_pairs
    python scripts/make_level_pairs.py data/style_material/train -o data/level_pairs
    python scripts/make_level_pairs.py data/style_material/train/speech_41*.wav --task ride -o data/ride_pairs

(``data/style_material`` is made by ``scripts/render_style_material.py``.) A missing or
unreadable input is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ride(n: int, sr: int, rng) -> np.ndarray:
    """[n] a gain curve: a new level every 0.4 to 1.5 s (-15 to +5 dB), 30 ms ramps."""
    db, t = np.zeros(n), 0
    while t < n:
        length = int(rng.uniform(0.4, 1.5) * sr)
        db[t : t + length] = rng.uniform(-15.0, 5.0)
        t += length
    ramp = int(0.03 * sr)
    db = np.convolve(np.pad(db, (ramp, ramp), mode="edge"), np.ones(ramp) / ramp, "same")
    return (10.0 ** (db[ramp : ramp + n] / 20.0)).astype(np.float32)


def main(argv=None) -> int:
    from ddsp_synth.errors import UserError, one_line

    try:
        return _make(argv)
    except UserError as err:
        print(f"make_level_pairs: {one_line(err)}", file=sys.stderr)
        return 1


def _make(argv=None) -> int:
    from ddsp_synth.errors import UserError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="folders or files of recordings")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=4500)
    ap.add_argument("--task", choices=["tone", "ride"], default="tone")
    args = ap.parse_args(argv)
    from pedalboard import HighShelfFilter

    from ddsp_synth.audio_io import find_audio_files, load_audio
    from ddsp_synth.control.metrics import integrated_loudness

    sr, n = args.sample_rate, int(args.seconds * args.sample_rate)
    rng = np.random.default_rng(args.seed)
    audio = [a for a in (load_audio(f, sr) for f in find_audio_files(args.inputs)) if len(a) > n]
    if not audio:
        raise UserError(f"no recording longer than {args.seconds:g} s in "
                        f"{', '.join(args.inputs)}")
    out = Path(args.out)
    for sub in ("in", "target"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(args.clips):
        a = audio[int(rng.integers(len(audio)))]
        start = int(rng.integers(0, len(a) - n))
        clip = a[start : start + n].astype(np.float32)
        level = integrated_loudness(clip, sr)
        if not np.isfinite(level) or level < -60:
            continue
        target = clip * 10.0 ** ((-20.0 - level) / 20.0)
        if args.task == "ride":
            x = clip * 10.0 ** ((-20.0 - level) / 20.0) * _ride(n, sr, rng)
        else:
            tilt = HighShelfFilter(cutoff_frequency_hz=3000.0,
                                   gain_db=float(rng.uniform(-9, 9)), q=0.707)
            x = tilt(clip[None], sr)[0] * 10.0 ** (rng.uniform(-30.0, 0.0) / 20.0)
        x = x / max(1.0, float(np.abs(x).max()) / 0.99)
        sf.write(out / "in" / f"clip_{i:03d}.wav", x, sr, subtype="FLOAT")
        sf.write(out / "target" / f"clip_{i:03d}.wav", np.clip(target, -1, 1), sr,
                 subtype="FLOAT")
        written += 1
    print(f"{out}: {written} pairs of {args.seconds:g} s ({args.task})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
