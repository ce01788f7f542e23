"""Tone matching against Matchering 2.0 on held-out pairs (issue 20, part 3).

A pair is an OUTPUT (what the instrument plays: a shipped model playing a melody, or a
shared recording) and a REFERENCE (a different recording that it should sound like):
FluidSynth renders of other performances and instruments made with
``../shared/data/render_melodies.py`` (seeds 9400-9449 for ``--split test``, 9450-9499 for
``--split dev``), at 16, 44.1 and 48 kHz, mono and stereo,
most of them through a known EQ and compressor (pedalboard) so that they sound like a
record; the examples' real singing and clarinet; and shared recordings through a known chain
(``truth`` pairs: the same audio, so that the right settings are known).

For each pair it runs

* ours: :func:`ddsp_synth.tone.estimate_tone` and ``preset(1.0)`` (amount 1, all aspects),
  the output rendered through the rack's twins (and through pedalboard, to check that the
  preset means the same on the real devices);
* Matchering 2.0 (GPL-3: installed only in its own venv, ``--matchering-python``, and run
  as a subprocess; skipped when that venv is absent), with its limiter and without it
  (``use_limiter=False, normalize=False``);

and measures against the reference: the 1/3-octave long-term spectrum error (dB RMS over the
bands 25 Hz to 6.3 kHz for a 16 kHz output, after removing the mean difference: the shape,
with level left to loudness), the integrated loudness error (LU, BS.1770, channels averaged),
the loudness range difference (LU, 400 ms blocks), the output's sample peak (dBFS) and the
wall time of each method (one thread; Matchering's ``process`` call, files included).

Prints a Markdown table and writes ``bench/results_tone.json``.

    python bench/bench_tone.py                       # the test split, ours and Matchering
    python bench/bench_tone.py --split dev --peaks 0,1,2,3,4,5,6,8   # choose n_peaks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from machine import machine_info  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
RENDER_SCRIPT = SHARED / "render_melodies.py"
MATCHERING_PYTHON = Path("/work/venv-matchering/bin/python")
SEED_BASE = {"test": 9400, "dev": 9450}
CLIP_S = 20.0

# Reference "records": what a FluidSynth render goes through (pedalboard class, kwargs)
CHAINS = {
    "warm": [("LowShelfFilter", dict(cutoff_frequency_hz=250, gain_db=4, q=0.7)),
             ("PeakFilter", dict(cutoff_frequency_hz=2500, gain_db=-5, q=1.2)),
             ("HighShelfFilter", dict(cutoff_frequency_hz=5000, gain_db=-6, q=0.7)),
             ("Compressor", dict(threshold_db=-28, ratio=3, attack_ms=10, release_ms=150)),
             ("Gain", dict(gain_db=4))],
    "bright": [("LowShelfFilter", dict(cutoff_frequency_hz=300, gain_db=-5, q=0.7)),
               ("PeakFilter", dict(cutoff_frequency_hz=3500, gain_db=6, q=0.8)),
               ("Compressor", dict(threshold_db=-24, ratio=5, attack_ms=5, release_ms=100)),
               ("Gain", dict(gain_db=6))],
    "scoop": [("PeakFilter", dict(cutoff_frequency_hz=800, gain_db=-8, q=1.0)),
              ("HighShelfFilter", dict(cutoff_frequency_hz=4000, gain_db=5, q=0.7)),
              ("Gain", dict(gain_db=-8))],
    "radio": [("LowShelfFilter", dict(cutoff_frequency_hz=400, gain_db=-12, q=0.7)),
              ("PeakFilter", dict(cutoff_frequency_hz=1800, gain_db=8, q=0.7)),
              ("HighShelfFilter", dict(cutoff_frequency_hz=4500, gain_db=-10, q=0.7)),
              ("Compressor", dict(threshold_db=-30, ratio=8, attack_ms=3, release_ms=80))],
    "dark_loud": [("HighShelfFilter", dict(cutoff_frequency_hz=2000, gain_db=-9, q=0.7)),
                  ("PeakFilter", dict(cutoff_frequency_hz=150, gain_db=5, q=1.0)),
                  ("Compressor", dict(threshold_db=-20, ratio=4, attack_ms=10, release_ms=200)),
                  ("Gain", dict(gain_db=8))],
    "gentle": [("PeakFilter", dict(cutoff_frequency_hz=600, gain_db=3, q=0.7)),
               ("HighShelfFilter", dict(cutoff_frequency_hz=6000, gain_db=3, q=0.7)),
               ("Gain", dict(gain_db=-4))],
}

# (name, output, reference): output ("model", instrument, seed offset) or ("shared",
# instrument, which 20 s); reference ("render", instrument, seed offset, rate, chain,
# stereo), ("example", file, chain), ("same", chain): the output itself through a chain
PAIRS = [
    ("violin model > violin record", ("model", "violin", 0),
     ("render", "violin", 10, 44100, "warm", False)),
    ("flute model > flute record 48k", ("model", "flute", 1),
     ("render", "flute", 11, 48000, "bright", False)),
    ("cello model > cello render", ("model", "cello", 2),
     ("render", "cello", 12, 44100, None, False)),
    ("trumpet model > trumpet record", ("model", "trumpet", 3),
     ("render", "trumpet", 13, 16000, "scoop", False)),
    ("altosax model > tenor sax 48k", ("model", "altosax", 4),
     ("render", "tenorsax", 14, 48000, None, False)),
    ("violin model > viola record stereo", ("model", "violin", 5),
     ("render", "viola", 15, 44100, "radio", True)),
    ("flute model > clarinet example", ("model", "flute", 6),
     ("example", "clarinet_melody.flac", None)),
    ("cello model > bassoon record", ("model", "cello", 7),
     ("render", "bassoon", 17, 44100, "dark_loud", False)),
    ("violin rec. > singing example", ("shared", "violin", 0),
     ("example", "singing_scale.flac", "gentle")),
    ("altosax rec. > oboe record", ("shared", "altosax", 0),
     ("render", "oboe", 19, 44100, "warm", False)),
    ("truth: violin rec. > itself, warm", ("shared", "violin", 1), ("same", "warm")),
    ("truth: cello rec. > itself, bright", ("shared", "cello", 1), ("same", "bright")),
    ("truth: trumpet rec. > itself, radio", ("shared", "trumpet", 1), ("same", "radio")),
    ("truth: flute rec. > itself, scoop", ("shared", "flute", 1), ("same", "scoop")),
]


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def render_fluidsynth(instrument: str, seed: int, rate: int, folder: Path) -> Path:
    """A FluidSynth performance (cached): ``folder/INSTRUMENT_SEED_RATE.wav`` and ``.mid``."""
    stem = folder / f"{instrument}_{seed}_{rate}"
    if not stem.with_suffix(".wav").exists():
        subprocess.run([sys.executable, str(RENDER_SCRIPT), "--instrument", instrument,
                        "--seed", str(seed), "--seconds", str(CLIP_S), "--fs", str(rate),
                        "--out", str(stem)], check=True, capture_output=True)
    return stem.with_suffix(".wav")


def render_model(instrument: str, seed: int, folder: Path) -> Path:
    """A shipped model playing the MIDI of a FluidSynth performance (cached)."""
    path = folder / f"model_{instrument}_{seed}.wav"
    if not path.exists():
        from ddsp_synth.midi.curves import render_midi
        from ddsp_synth.model import load_model

        midi = render_fluidsynth(instrument, seed, 16000, folder).with_suffix(".mid")
        model, meta = load_model(HERE.parent / "models" / instrument)
        audio, _ = render_midi(model, meta, midi)
        sf.write(path, audio, model.config.synth.sample_rate, subtype="FLOAT")
    return path


def apply_chain(audio: np.ndarray, rate: int, chain: str | None) -> np.ndarray:
    """[channels, n] through a chain of ``CHAINS`` (pedalboard), or unchanged."""
    if chain is None:
        return audio
    import pedalboard

    board = pedalboard.Pedalboard([getattr(pedalboard, cls)(**kw) for cls, kw in CHAINS[chain]])
    return board(audio.astype(np.float32), rate)


def shared_clip(instrument: str, which: int, split: str) -> tuple[np.ndarray, int]:
    """20 s of a shared recording: for the test split the last 20 s (``which`` 0) or the
    20 s before (1); for dev, 40 and 60 s from the end."""
    audio, rate = sf.read(SHARED / "train" / f"{instrument}.flac", dtype="float32")
    end = len(audio) - int((which + (2 if split == "dev" else 0)) * CLIP_S * rate)
    return audio[end - int(CLIP_S * rate) : end], rate


def make_pair(pair, split: str, folder: Path) -> dict:
    """Write the pair's files; returns {name, output, reference, truth chain or None}."""
    name, out_spec, ref_spec = pair
    base = SEED_BASE[split]
    slug = "".join(c if c.isalnum() else "_" for c in name)
    if out_spec[0] == "model":
        out_path = render_model(out_spec[1], base + out_spec[2], folder)
        out, out_rate = sf.read(out_path, dtype="float32")
    else:
        out, out_rate = shared_clip(out_spec[1], out_spec[2], split)
    out_path = folder / f"{slug}_{split}_output.wav"
    sf.write(out_path, out, out_rate, subtype="FLOAT")
    if ref_spec[0] == "render":
        _, inst, offset, rate, chain, stereo = ref_spec
        ref, ref_rate = sf.read(render_fluidsynth(inst, base + offset, rate, folder),
                                dtype="float32")
        ref = ref[None]
        if stereo:  # a second channel 0.5 ms later and 2 dB down: a stereo file
            delay = int(0.0005 * rate)
            ref = np.concatenate([ref, 0.8 * np.roll(ref, delay, axis=1)])
    elif ref_spec[0] == "example":
        ref, ref_rate = sf.read(SHARED / "examples" / ref_spec[1], dtype="float32")
        ref, chain = ref[None], ref_spec[2]
    else:
        ref, ref_rate, chain = out[None], out_rate, ref_spec[1]
    ref = apply_chain(ref, ref_rate, chain)
    ref_path = folder / f"{slug}_{split}_reference.wav"
    sf.write(ref_path, ref.T, ref_rate, subtype="FLOAT")
    return {"name": name, "output": out_path, "reference": ref_path,
            "truth": chain if ref_spec[0] == "same" else None}


# ------------------------------------------------------------------------------------------
# Methods
# ------------------------------------------------------------------------------------------
def run_ours(output: Path, reference: Path, n_peaks: int) -> dict:
    """Ours at amount 1: the preset, the output through the twins, the time taken."""
    import torch

    from ddsp_synth.tone import estimate_tone

    torch.set_num_threads(1)
    audio, rate = sf.read(output, dtype="float32")
    start = time.perf_counter()
    estimate = estimate_tone(audio, rate, str(reference), n_peaks=n_peaks)
    natural = estimate.natural(1.0)
    seconds = time.perf_counter() - start
    rendered = estimate.render(natural)
    return {"preset": estimate.preset(1.0).to_dict(rate), "natural": natural,
            "audio": rendered[None],
            "rate": rate, "seconds": seconds, "estimate": estimate}


def pedalboard_render(audio: np.ndarray, rate: int, preset: dict) -> np.ndarray:
    """[n] through the preset on pedalboard's own devices."""
    import pedalboard

    from ddsp_synth.stages.registry import PEDALBOARD_CLASSES

    board = pedalboard.Pedalboard([getattr(pedalboard, PEDALBOARD_CLASSES[e["device"]])(
        **e["params"]) for e in preset["chain"]])
    return board(audio[None].astype(np.float32), rate)[0]


MATCHERING_SCRIPT = r"""
import json, sys, time
import matchering as mg
target, reference, limited, plain = sys.argv[1:5]
start = time.perf_counter()
mg.process(target=target, reference=reference,
           results=[mg.Result(limited, "FLOAT"),
                    mg.Result(plain, "FLOAT", use_limiter=False, normalize=False)])
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def run_matchering(output: Path, reference: Path, folder: Path, python: Path) -> dict | None:
    """Matchering 2.0 in its own venv: {"limiter": (audio, rate), "no_limiter": ...,
    "seconds"} or None when it is not installed."""
    if not python.exists():
        return None
    limited, plain = folder / f"{output.stem}_mg_limited.wav", folder / f"{output.stem}_mg.wav"
    script = folder / "run_matchering.py"
    script.write_text(MATCHERING_SCRIPT)
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([str(python), str(script), str(output), str(reference), str(limited),
                           str(plain)], capture_output=True, text=True, env=env, check=True)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    out = {"seconds": seconds}
    for key, path in (("limiter", limited), ("no_limiter", plain)):
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        out[key] = (audio.T, rate)
    return out


# ------------------------------------------------------------------------------------------
# Measures
# ------------------------------------------------------------------------------------------
def measures(result: np.ndarray, rate: int, reference: np.ndarray, ref_rate: int,
             bands: np.ndarray) -> dict:
    """LTAS shape error (dB), loudness error (LU), loudness range difference (LU), peak."""
    from ddsp_synth.tone import (active_block_loudness, integrated_loudness, loudness_spread,
                                 ltas_db, shape_error_db)

    result = np.asarray(result, np.float64)
    return {
        "ltas_db": shape_error_db(ltas_db(result, rate, bands), ltas_db(reference, ref_rate,
                                                                          bands)),
        # channels averaged: a mono result against a stereo reference (see dsp/loudness.py)
        "loudness_lu": integrated_loudness(result, rate, channels="mean")
        - integrated_loudness(reference, ref_rate, channels="mean"),
        "range_lu": loudness_spread(active_block_loudness(result, rate, channels="mean"))
        - loudness_spread(active_block_loudness(reference, ref_rate, channels="mean")),
        "peak_dbfs": float(20 * np.log10(np.abs(result).max() + 1e-12)),
    }


def truth_eq_error(estimate, preset: dict, chain: str) -> dict:
    """How far the estimated EQ's response is from the known chain's (dB RMS over the
    bands, mean removed), and the known compressor next to the estimate."""
    import torch

    from ddsp_synth.chains import make_chain

    names = {"LowShelfFilter": "lowshelf", "PeakFilter": "peak", "HighShelfFilter": "highshelf"}
    eq_truth = [(names[c], kw) for c, kw in CHAINS[chain] if c in names]
    eq_ours = [(e["device"], e["params"]) for e in preset["chain"] if e["device"] in
               ("lowshelf", "peak", "highshelf")]
    rate = estimate.sample_rate
    impulse = np.zeros(1 << 15, np.float32)
    impulse[0] = 1.0
    responses = []
    for devices in (eq_truth, eq_ours):
        eq = make_chain(",".join(d for d, _ in devices), rate)
        params = torch.tensor([[v for _, kw in devices for v in (
            kw["cutoff_frequency_hz"], kw["gain_db"], kw["q"])]], dtype=torch.float32)
        with torch.no_grad():
            h = eq(torch.tensor(impulse)[None], params)[0][0].numpy()
        freqs = np.fft.rfftfreq(len(h), 1 / rate)
        mag = 20 * np.log10(np.abs(np.fft.rfft(h)) + 1e-12)
        responses.append(np.interp(estimate.bands_hz[:, 1], freqs, mag))
    diff = responses[1] - responses[0]
    comp = dict(CHAINS[chain]).get("Compressor")
    ours = next(e["params"] for e in preset["chain"] if e["device"] == "compressor")
    return {"eq_response_db": float(np.sqrt(np.mean(np.square(diff - diff.mean())))),
            "compressor_truth": comp, "compressor_ours": ours}


def summarise(rows: list[dict], key: str, method: str) -> float | None:
    values = [abs(r[method][key]) for r in rows if r.get(method) and key in r[method]]
    return float(np.median(values)) if values else None


# ------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------
def evaluate(pair: dict, n_peaks: int, folder: Path, matchering: Path | None) -> dict:
    """Every method on one pair: measures, presets, times."""
    reference, ref_rate = sf.read(pair["reference"], dtype="float32", always_2d=True)
    reference = reference.T
    output, rate = sf.read(pair["output"], dtype="float32")
    ours = run_ours(pair["output"], pair["reference"], n_peaks)
    bands = ours["estimate"].bands_hz
    row = {"pair": pair["name"], "output_rate": rate, "reference_rate": ref_rate,
           "reference_channels": reference.shape[0], "bands_hz": [bands[0, 1], bands[-1, 1]],
           "before": measures(output[None], rate, reference, ref_rate, bands),
           "ours": dict(measures(ours["audio"], rate, reference, ref_rate, bands),
                        seconds=ours["seconds"]),
           "preset": ours["preset"]}
    real = pedalboard_render(output, rate, ours["preset"])
    row["twin_vs_pedalboard"] = float(np.abs(real - ours["audio"][0]).max()
                                      / np.abs(real).max())
    if pair["truth"]:
        row["truth"] = truth_eq_error(ours["estimate"], ours["preset"], pair["truth"])
    mg = run_matchering(pair["output"], pair["reference"], folder, matchering) \
        if matchering else None
    if mg is not None:
        for key in ("limiter", "no_limiter"):
            audio, mg_rate = mg[key]
            row[f"matchering_{key}"] = dict(measures(audio, mg_rate, reference, ref_rate, bands),
                                            seconds=mg["seconds"])
    return row


def sweep_peaks(pairs: list[dict], counts: list[int]) -> list[dict]:
    """LTAS error of ours for each number of peaks (medians over the pairs) and time."""
    out = []
    for n in counts:
        errors, times = [], []
        for pair in pairs:
            reference, ref_rate = sf.read(pair["reference"], dtype="float32", always_2d=True)
            ours = run_ours(pair["output"], pair["reference"], n)
            m = measures(ours["audio"], ours["rate"], reference.T, ref_rate,
                         ours["estimate"].bands_hz)
            errors.append(m["ltas_db"])
            times.append(ours["seconds"])
        out.append({"n_peaks": n, "median_ltas_db": float(np.median(errors)),
                    "mean_ltas_db": float(np.mean(errors)), "per_pair": errors,
                    "median_seconds": float(np.median(times))})
        print(f"n_peaks {n}: LTAS error median {out[-1]['median_ltas_db']:.2f} dB, mean "
              f"{out[-1]['mean_ltas_db']:.2f} dB, {out[-1]['median_seconds']:.2f} s", flush=True)
    return out


def _fmt(m: dict | None, key: str, digits: int = 2) -> str:
    return "-" if not m else f"{m[key]:+.{digits}f}" if key != "ltas_db" else f"{m[key]:.2f}"


def print_table(rows: list[dict]) -> None:
    methods = [("before", "output as is"), ("ours", "ours"),
               ("matchering_limiter", "Matchering"),
               ("matchering_no_limiter", "Matchering, no limiter")]
    print("\n| pair | " + " | ".join(f"{label}: LTAS dB / loudness LU" for _, label in methods)
          + " | time ours / Matchering (s) |")
    print("|---" * (len(methods) + 2) + "|")
    for r in rows:
        cells = [f"{_fmt(r.get(k), 'ltas_db')} / {_fmt(r.get(k), 'loudness_lu')}"
                 for k, _ in methods]
        mg = r.get("matchering_limiter")
        times = f"{r['ours']['seconds']:.2f} / {mg['seconds']:.2f}" if mg else \
            f"{r['ours']['seconds']:.2f} / -"
        print(f"| {r['pair']} | " + " | ".join(cells) + f" | {times} |")
    med = []
    for k, _ in methods:
        a, b = summarise(rows, "ltas_db", k), summarise(rows, "loudness_lu", k)
        med.append("-" if a is None else f"**{a:.2f}** / **{b:.2f}**")
    t_ours = summarise(rows, "seconds", "ours")
    t_mg = summarise(rows, "seconds", "matchering_limiter")
    print("| median (abs) | " + " | ".join(med) + f" | {t_ours:.2f} / "
          + (f"{t_mg:.2f}" if t_mg is not None else "-") + " |")
    wins = wins_over_matchering(rows)
    if wins:
        print(f"\nours at least as close as Matchering (with its limiter) on the spectrum in "
              f"{wins['ltas']} of {wins['pairs']} pairs, on loudness in {wins['loudness']}; "
              f"within 1 LU of the reference: ours {wins['ours_within_1lu']}, Matchering "
              f"{wins['matchering_within_1lu']}; output peaks above 0 dBFS (ours, no limiter): "
              f"{wins['ours_over_0dbfs']}")


def wins_over_matchering(rows: list[dict]) -> dict | None:
    """Per-pair counts: ours vs Matchering (with its limiter)."""
    both = [r for r in rows if r.get("matchering_limiter")]
    if not both:
        return None
    mg = [r["matchering_limiter"] for r in both]
    ours = [r["ours"] for r in both]
    return {"pairs": len(both),
            "ltas": sum(o["ltas_db"] <= m["ltas_db"] for o, m in zip(ours, mg)),
            "loudness": sum(abs(o["loudness_lu"]) <= abs(m["loudness_lu"])
                            for o, m in zip(ours, mg)),
            "ours_within_1lu": sum(abs(o["loudness_lu"]) <= 1.0 for o in ours),
            "matchering_within_1lu": sum(abs(m["loudness_lu"]) <= 1.0 for m in mg),
            "ours_over_0dbfs": sum(o["peak_dbfs"] > 0.0 for o in ours)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=sorted(SEED_BASE), default="test")
    ap.add_argument("--n-peaks", type=int, default=None, help="default: the library's")
    ap.add_argument("--peaks", default=None,
                    help="comma-separated peak counts: sweep ours only (no Matchering)")
    ap.add_argument("--matchering-python", default=str(MATCHERING_PYTHON))
    ap.add_argument("--no-matchering", action="store_true")
    ap.add_argument("--data", default=None, help="folder for the renders (default: the cache)")
    ap.add_argument("--out", default=str(HERE / "results_tone.json"))
    args = ap.parse_args(argv)

    from ddsp_synth.audio_io import cache_dir
    from ddsp_synth.tone import DEFAULT_PEAKS

    folder = Path(args.data) if args.data else cache_dir() / "bench_tone"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [make_pair(p, args.split, folder) for p in PAIRS]
    info = machine_info()
    if args.peaks:
        sweep = sweep_peaks(pairs, [int(n) for n in args.peaks.split(",")])
        result = {"machine": info, "split": args.split, "peaks_sweep": sweep,
                  "load_average_end": os.getloadavg()}
        out = Path(args.out).with_name(f"results_tone_peaks_{args.split}.json")
    else:
        n_peaks = DEFAULT_PEAKS if args.n_peaks is None else args.n_peaks
        mg = None if args.no_matchering else Path(args.matchering_python)
        if mg is not None and not mg.exists():
            print(f"Matchering skipped: {mg} not found (python3 -m venv /work/venv-matchering "
                  "&& /work/venv-matchering/bin/pip install matchering)")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for pair in pairs:
                rows.append(evaluate(pair, n_peaks, Path(tmp), mg))
                print(f"{pair['name']}: ours LTAS {rows[-1]['ours']['ltas_db']:.2f} dB",
                      flush=True)
        print_table(rows)
        summary = {k: {"median_abs_ltas_db": summarise(rows, "ltas_db", k),
                       "median_abs_loudness_lu": summarise(rows, "loudness_lu", k),
                       "median_abs_range_lu": summarise(rows, "range_lu", k),
                       "median_seconds": summarise(rows, "seconds", k)}
                   for k in ("before", "ours", "matchering_limiter", "matchering_no_limiter")}
        summary["wins_over_matchering"] = wins_over_matchering(rows)
        result = {"machine": info, "split": args.split, "n_peaks": n_peaks, "summary": summary,
                  "rows": rows, "load_average_end": os.getloadavg()}
        out = Path(args.out)
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"\nload average (1, 5, 15 min) at start {info['load_average']}, at end "
          f"{os.getloadavg()}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
