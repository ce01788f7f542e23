"""Render performances of an instrument heard through an effect chain, from its data recipe.

    python scripts/render_fx_data.py models/tenorsax_amp/data_recipe.json -o data/renders/tenorsax_amp
    python scripts/render_fx_data.py models/tenorsax_amp/data_recipe.json --seeds 9400 9401 -o OUT

A data recipe (``models/NAME/data_recipe.json``) says everything a render needs: the General
MIDI program and note range given to the project's shared melody generator
(``../shared/data/render_melodies.py``: seeded random melodies rendered dry by FluidSynth with
FluidR3_GM), the seeds and lengths of the training and held-out performances, and the effect
chain as a preset in ``match``'s format (``{"chain": [{"device", "params"}]}``, pedalboard's
names and units). Each seed gives ``OUT/SEED.dry.wav`` (the generator's dry render, with its
``.mid``, ``.notes.csv`` and ``.f0.csv``) and ``OUT/SEED.wav``: the dry render through the real
devices of the chain (``ddsp-synth fx``), nothing after it.

Needs the ``fluidsynth`` binary and the FluidR3_GM soundfont (Debian: ``apt-get install
fluidsynth fluid-soundfont-gm``), pretty_midi, and pedalboard (the ``effects`` extra).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT.parent / "shared" / "data" / "render_melodies.py"


def load_generator(path: Path = GENERATOR):
    """The shared generator as a module (its melody maker and FluidSynth renderer)."""
    if not path.exists():
        sys.exit(f"error: {path} is missing: the generator is part of the project's shared "
                 "data, a folder 'shared' beside the checkout")
    spec = importlib.util.spec_from_file_location("render_melodies", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_dry(gen, recipe: dict, seed: int, seconds: float, out: Path) -> Path:
    """The generator's dry render of one seed (what its command line writes), for the
    recipe's program and note range."""
    g = recipe["generator"]
    name = f"program{g['program']}"
    gen.INSTRUMENTS[name] = dict(program=int(g["program"]), lo=int(g["lo"]), hi=int(g["hi"]))
    perf = gen.make_performance(name, seed, seconds)
    pm = perf.to_midi(int(g["program"]))
    sf2 = g["soundfont"].split(" ")[0]
    wav = out.with_suffix(".dry.wav")
    with tempfile.TemporaryDirectory() as work:
        duration = gen.render(pm, sf2, str(wav), int(g["sample_rate"]), work, perf.total_s)
    pm.write(str(out.with_suffix(".mid")))
    with open(out.with_suffix(".notes.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["start_s", "end_s", "midi_pitch", "velocity", "segment"])
        for n in perf.notes:
            w.writerow([f"{n['start']:.4f}", f"{n['end']:.4f}", n["pitch"], n["vel"], n["seg"]])
    t, f0 = perf.f0_track(duration)
    np.savetxt(out.with_suffix(".f0.csv"), np.c_[t, f0, (f0 > 0).astype(int)], delimiter=",",
               fmt=["%.2f", "%.3f", "%d"], header="time_s,f0_hz,voiced", comments="")
    return wav


def apply_chain(recipe_path: Path, dry: Path, wet: Path) -> dict:
    """The dry render through the recipe's chain by the real devices (``ddsp-synth fx``)."""
    from ddsp_synth.fx import fx_file
    from ddsp_synth.rack import read_preset

    preset = read_preset(recipe_path, sample_rate=16000)
    return fx_file(preset, dry, wet)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="models/NAME/data_recipe.json")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="seeds to render (default: the recipe's training and held-out "
                             "seeds); --seconds gives their length")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of each --seeds performance (s)")
    parser.add_argument("--split", choices=("train", "heldout", "all"), default="all",
                        help="which of the recipe's seeds to render (without --seeds)")
    args = parser.parse_args()
    if shutil.which("fluidsynth") is None:
        sys.exit("error: the fluidsynth binary is missing: apt-get install fluidsynth "
                 "fluid-soundfont-gm")
    recipe_path = Path(args.recipe)
    recipe = json.loads(recipe_path.read_text())
    if args.seeds:
        jobs = [(s, args.seconds, "") for s in args.seeds]
    else:
        parts = ("train", "heldout") if args.split == "all" else (args.split,)
        jobs = [(s, float(recipe[p]["seconds"]), p) for p in parts for s in recipe[p]["seeds"]]
    gen = load_generator()
    out_dir = Path(args.out)
    for seed, seconds, part in jobs:
        folder = out_dir / part if part else out_dir
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / f"{recipe['name']}_{seed}"
        wet = base.with_suffix(".wav")
        if wet.exists():
            print(f"{wet} exists: kept")
            continue
        dry = render_dry(gen, recipe, seed, seconds, base)
        info = apply_chain(recipe_path, dry, wet)
        print(f"{wet}: {info['seconds']:.1f} s, peak {20 * np.log10(max(info['peak'], 1e-9)):.1f}"
              f" dBFS after the chain", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
