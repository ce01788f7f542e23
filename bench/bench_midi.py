"""MIDI rendering quality on the shared FluidSynth performances (re-runnable).

For each shipped model and each excerpt of its instrument's shared ``.mid``: render with
``ddsp_synth.midi.render_midi``, measure the output's pitch with ``compute_f0`` against the
generator's reference f0 (``NAME.f0.csv``: MIDI pitch + pitch bend) on confidently voiced
frames away from note edges, the output length against MIDI length + release, and the
output's loudness against the FluidSynth rendering's loudness (same MIDI) on note frames.

Usage: OMP_WAIT_POLICY=PASSIVE python bench/bench_midi.py [--seconds 10] [--starts 20,90]
       [--json OUT.json]
"""
import argparse
import json
import sys
import time

import numpy as np
import pretty_midi
import soundfile as sf
import torch

from ddsp_synth.features import FeatureConfig, compute_f0, compute_loudness
from ddsp_synth.midi import MidiOptions, midi_excerpt, render_midi
from ddsp_synth.model import load_model, resolve_model

DATA = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "train")
EDGE_S = 0.08  # frames this close to a note's start or end are left out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--starts", default="20,90")
    ap.add_argument("--models", default="violin,flute,trumpet,altosax,cello")
    ap.add_argument("--json", default=None)
    ap.add_argument("--pitch-model", default="tiny", help="CREPE size for measuring the output "
                    "(tiny is unsure of low cello notes; full measures more frames)")
    ap.add_argument("--cross", action="store_true",
                    help="also play every instrument's file with every model, transposed by "
                         "whole octaves toward the model's range (pitch only)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    fc = FeatureConfig(crepe_model=a.pitch_model)
    rows = []
    names = a.models.split(",")
    pairs = [(m, f) for m in names for f in (names if a.cross else [m])]
    for name, file in pairs:
        model, meta = load_model(resolve_model(name))
        pm = pretty_midi.PrettyMIDI(f"{DATA}/{file}.mid")
        ref = np.loadtxt(f"{DATA}/{file}.f0.csv", delimiter=",", skiprows=1)
        fluid, sr = sf.read(f"{DATA}/{file}.flac", dtype="float32")
        pitches = [n.pitch for n in pm.instruments[0].notes]
        shift = 12 * round((np.median(meta["dataset_stats"]["pitch_midi_quantiles"])
                            - np.median(pitches)) / 12)
        for t0 in (float(x) for x in a.starts.split(",")):
            t1 = t0 + a.seconds
            ex = midi_excerpt(pm, t0, t1)
            t = time.perf_counter()
            audio, info = render_midi(model, meta, ex, transpose=shift)
            render_s = time.perf_counter() - t
            f0, conf = compute_f0(audio, fc)
            i0 = int(round(t0 * 100))
            n = int(round(a.seconds * 100))
            ref_f0 = ref[i0 : i0 + n, 1] * 2.0 ** (shift / 12)
            inside = np.zeros(n, bool)
            for note in ex.instruments[0].notes:
                lo, hi = int(np.ceil((note.start + EDGE_S) * 100)), int((note.end - EDGE_S) * 100)
                inside[max(lo, 0) : max(min(hi, n), 0)] = True
            ok = inside & (ref_f0 > 0) & (conf[:n] >= 0.85)
            cents = 1200 * np.log2(f0[:n][ok] / ref_f0[ok])
            ld_out = compute_loudness(audio, fc)[:n]
            ld_fluid = compute_loudness(fluid[i0 * 160 : (i0 + n) * 160], fc)[:n]
            expected = int(np.ceil(round((ex.get_end_time() + MidiOptions().release_s) * 100, 6))) * 160
            rows.append({
                "model": name, "midi": file, "pitch_model": a.pitch_model, "transpose": shift, "excerpt_s": [t0, t1], "frames_measured": int(ok.sum()),
                "frames_in_notes": int((inside & (ref_f0 > 0)).sum()),
                "median_abs_cents": float(np.median(np.abs(cents))),
                "p90_abs_cents": float(np.percentile(np.abs(cents), 90)),
                "loudness_vs_fluidsynth_median_abs_db": float(np.median(np.abs(
                    ld_out[inside] - ld_fluid[inside]))),
                "length_s": len(audio) / sr, "expected_length_s": expected / sr,
                "length_ok": len(audio) == expected, "render_s": render_s,
            })
            r = rows[-1]
            print(f"{name:8s} {file + f' {shift:+d}':12s} {t0:5.0f}-{t1:<5.0f} frames {r['frames_measured']:4d}/"
                  f"{r['frames_in_notes']:4d}  pitch median {r['median_abs_cents']:5.1f} c  "
                  f"p90 {r['p90_abs_cents']:5.1f} c  loudness vs FluidSynth "
                  f"{r['loudness_vs_fluidsynth_median_abs_db']:4.1f} dB  length "
                  f"{r['length_s']:.2f} s (expected {r['expected_length_s']:.2f})  "
                  f"render {render_s:.2f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
