#!/usr/bin/env python3
"""Render the varied material the style controller is trained and evaluated on.

Training material (render seeds 4000-4999, ``OUT/train``): more General MIDI instruments
than the shared five (reeds, brass, strings, piano, guitar, bass, organ, mallets), sung
vowels (choir "aahs", voice "oohs") rendered by the shared melody generator
(``../shared/data/render_melodies.py``, FluidSynth with FluidR3_GM), and spoken English by
espeak-ng (several voices and variants, pitch and speed drawn per clip, sentences drawn from
a word list). The shared recordings (``../shared/data/train``) come on top at training time.

Held-out material (render seeds 9200-9299, ``OUT/heldout``, rendered at ``--heldout-fs``,
48 kHz by default): new performances of instruments seen in training, instruments never
seen (trombone, English horn, steel-string guitar, soprano sax), new sentences and voices,
and the real sung scale of ``../shared/data/examples``. No training run reads it.

    python scripts/render_style_material.py -o data/style_material

Needs ``fluidsynth``, ``fluid-soundfont-gm`` and ``espeak-ng`` (Debian packages) and
pretty_midi; each file is peak-normalised to -1 dBFS, mono.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# name: (GM program, lowest, highest MIDI note): additions to the generator's own list
EXTRA_INSTRUMENTS = {
    "piano": (0, 48, 84), "marimba": (12, 53, 89), "organ": (19, 48, 79),
    "nylonguitar": (24, 45, 76), "steelguitar": (25, 45, 76), "fingerbass": (33, 28, 55),
    "strings": (48, 48, 84), "choiraahs": (52, 50, 74), "trombone": (57, 40, 70),
    "sopranosax": (64, 58, 87), "englishhorn": (69, 52, 81),
}
TRAIN_INSTRUMENTS = ["clarinet", "oboe", "bassoon", "horn", "tenorsax", "viola", "voiceoohs",
                     "choiraahs", "piano", "marimba", "organ", "nylonguitar", "fingerbass",
                     "strings"]
HELDOUT_SEEN = ["violin", "flute", "trumpet", "cello", "altosax", "clarinet", "voiceoohs",
                "piano"]
HELDOUT_UNSEEN = ["trombone", "englishhorn", "steelguitar", "sopranosax"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd"]
VARIANTS = ["", "+m1", "+m3", "+m5", "+f1", "+f2", "+f3", "+f4", "+klatt", "+croak"]
HELDOUT_VARIANTS = ["+m7", "+f5", "+grandma"]  # never used for training
WORDS = """the a of and to in is it you that he was for on are with as his they be at one have
this from or had by word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no most
people my over know water than call first who may down side been now find any new work part
take get place made live where after back little only round man year came show every good me
give our under name very through just form sentence great think say help low line differ turn
cause much mean before move right boy old too same tell does set three want air well also play
small end put home read hand port large spell add even land here must big high such follow act
why ask men change went light kind off need house picture try us again animal point mother
world near build self earth father head stand own page should country found answer school grow
study still learn plant cover food sun four between state keep eye never last let thought city
tree cross farm hard start might story saw far sea draw left late run while press close night
real life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book
carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch color face wood main enough plain girl usual young ready above ever red list though feel
talk bird soon body dog family direct pose leave song measure door product black short numeral
class wind question happen complete ship area half rock order fire south problem piece told
knew pass since top whole king space heard best hour better true during hundred five remember
step early hold west ground interest reach fast verb sing listen six table travel less morning
""".split()


def _generator():
    """The shared melody generator as a module, with the extra GM instruments added."""
    path = SHARED / "render_melodies.py"
    if not path.is_file():
        sys.exit(f"render_style_material: {path} is missing (the shared data folder)")
    spec = importlib.util.spec_from_file_location("render_melodies", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, (program, lo, hi) in EXTRA_INSTRUMENTS.items():
        mod.INSTRUMENTS.setdefault(name, dict(program=program, lo=lo, hi=hi))
    return mod


def render_instrument(gen, name: str, seed: int, seconds: float, fs: int, out: Path) -> None:
    perf = gen.make_performance(name, seed, seconds)
    pm = perf.to_midi(gen.INSTRUMENTS[name]["program"])
    with tempfile.TemporaryDirectory() as work:
        gen.render(pm, "/usr/share/sounds/sf2/FluidR3_GM.sf2", str(out), fs, work, perf.total_s)
    print(f"{out} ({name}, seed {seed})")


def _sentence(rng) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(5, 16)))
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def render_speech(seed: int, seconds: float, fs: int, out: Path, variants: list[str]) -> None:
    """espeak-ng sentences with pauses until ``seconds`` long, one voice per clip."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    voice = str(rng.choice(VOICES)) + str(rng.choice(variants))
    pitch, speed = int(rng.integers(20, 80)), int(rng.integers(130, 190))
    pieces, total = [], 0
    with tempfile.TemporaryDirectory() as work:
        while total < seconds * 22050:
            wav = Path(work) / "s.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed),
                            "-w", str(wav), _sentence(rng)], check=True)
            x, sr = sf.read(wav, dtype="float32")
            pieces += [x, np.zeros(int(rng.uniform(0.2, 0.9) * sr), np.float32)]
            total += len(x) + len(pieces[-1])
    y = np.concatenate(pieces)[: int(seconds * 22050)]
    y = resample_poly(y, fs, 22050).astype(np.float32) if fs != 22050 else y
    y *= 0.891 / (np.abs(y).max() + 1e-12)
    sf.write(out, y, fs, subtype="PCM_16")
    print(f"{out} (speech, {voice}, pitch {pitch}, {speed} wpm, seed {seed})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True, help="output folder (train/, heldout/)")
    ap.add_argument("--fs", type=int, default=16000, help="training material's rate (Hz)")
    ap.add_argument("--heldout-fs", type=int, default=48000, help="held-out material's rate")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each training file")
    ap.add_argument("--speech-clips", type=int, default=16, help="spoken training clips")
    ap.add_argument("--split", choices=["train", "heldout", "all"], default="all")
    args = ap.parse_args(argv)
    for tool in ("fluidsynth", "espeak-ng"):
        if shutil.which(tool) is None:
            sys.exit(f"render_style_material: {tool} is not installed")
    gen = _generator()
    out = Path(args.out)
    if args.split in ("train", "all"):
        (out / "train").mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(TRAIN_INSTRUMENTS):
            render_instrument(gen, name, 4000 + i, args.seconds, args.fs,
                              out / "train" / f"{name}_{4000 + i}.wav")
        for i in range(args.speech_clips):
            render_speech(4100 + i, args.seconds / 2, args.fs,
                          out / "train" / f"speech_{4100 + i}.wav", VARIANTS)
    if args.split in ("heldout", "all"):
        (out / "heldout").mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(HELDOUT_SEEN + HELDOUT_UNSEEN):
            render_instrument(gen, name, 9200 + i, 30.0, args.heldout_fs,
                              out / "heldout" / f"{name}_{9200 + i}.wav")
        for i in range(6):
            render_speech(9220 + i, 30.0, args.heldout_fs,
                          out / "heldout" / f"speech_{9220 + i}.wav",
                          HELDOUT_VARIANTS if i % 2 else VARIANTS)
        sung = SHARED / "examples" / "singing_scale.flac"
        if sung.is_file():
            shutil.copy(sung, out / "heldout" / "real_singing_scale.flac")
    return 0


if __name__ == "__main__":
    sys.exit(main())
