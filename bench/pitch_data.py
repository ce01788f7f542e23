"""Performances with a known pitch for the tracker benchmark and the harmonic check's fit.

Every render comes from the shared generator (``../shared/data/render_melodies.py``) with its
MIDI truth beside it (``.f0.csv``: MIDI pitch + bend at 100 Hz, ``.notes.csv``). Seeds:

* benchmark (``bench/bench_pitch.py``): 8000..8099 only, never trained on, never used to
  choose a setting;
* the harmonic check's fit (``bench/fit_harmonic_check.py``): 9000..9103.

Training used 1000..1004, 2000..2004, 3001, 3100, 3200; the held-out sets 7000..7024, 7100, 7200.

A low speech-like voice has no generator, so :func:`synth_voice` makes one with a known
contour: a glottal pulse train (Rosenberg pulses, 70..250 Hz, gliding intonation, jitter-free)
through the formant filters of five vowels, with unvoiced gaps; its truth is written in the
generator's format.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT.parent / "shared" / "data" / "render_melodies.py"
SAMPLE_RATE = 16000
# Every instrument the generator knows (its INSTRUMENTS table).
GENERATOR_INSTRUMENTS = ("violin", "viola", "cello", "trumpet", "altosax", "tenorsax", "flute",
                         "clarinet", "oboe", "bassoon", "horn", "voiceoohs")
# Benchmark: one 60 s performance per instrument (seeds 8000..8011), two more of the lowest
# instruments (the cello's and bassoon's lowest notes: 8012..8015) and the synthetic voice.
BENCH_SET = (tuple((name, 8000 + i) for i, name in enumerate(GENERATOR_INSTRUMENTS))
             + (("cello", 8012), ("cello", 8013), ("bassoon", 8014), ("bassoon", 8015)))
BENCH_VOICE_SEEDS = (8050, 8051)
# The harmonic check's fit: one per instrument (9000..9011) and four more low ones.
FIT_SET = (tuple((name, 9000 + i) for i, name in enumerate(GENERATOR_INSTRUMENTS))
           + (("bassoon", 9100), ("bassoon", 9101), ("cello", 9102), ("tenorsax", 9103)))
SECONDS = 60.0


def render(name: str, seed: int, folder: Path, seconds: float = SECONDS) -> Path:
    """``folder/NAME_SEED.wav`` with its sidecars, rendered unless it exists."""
    wav = folder / f"{name}_{seed}.wav"
    if wav.exists() and Path(f"{wav.with_suffix('')}.notes.csv").exists():
        return wav
    if shutil.which("fluidsynth") is None or not GENERATOR.exists():
        sys.exit("error: rendering needs ../shared/data/render_melodies.py and the fluidsynth "
                 "binary (apt-get install fluidsynth fluid-soundfont-gm)")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(GENERATOR), "--instrument", name, "--seed", str(seed),
                    "--seconds", f"{seconds:g}", "--fs", str(SAMPLE_RATE),
                    "--out", str(wav.with_suffix(""))], check=True, stdout=subprocess.DEVNULL)
    return wav


# Formants (Hz) and bandwidths (Hz) of five vowels (a, e, i, o, u), an adult male voice.
VOWELS = (((730, 1090, 2440), (90, 110, 160)), ((530, 1840, 2480), (80, 100, 160)),
          ((270, 2290, 3010), (60, 90, 150)), ((570, 840, 2410), (80, 100, 160)),
          ((300, 870, 2240), (60, 90, 150)))


def _voice_contour(rng, seconds: float, rate: float = 100.0) -> tuple[np.ndarray, list]:
    """f0 [n_frames] at 100 Hz (0 = unvoiced) and the voiced segments [(start_s, end_s)]."""
    n = int(seconds * rate)
    f0 = np.zeros(n)
    segments, t = [], 0.3
    while t < seconds - 1.0:
        dur = float(rng.uniform(0.4, 2.5))
        start_hz, end_hz = np.exp(rng.uniform(np.log(70.0), np.log(250.0), 2))
        i0, i1 = int(t * rate), min(n, int((t + dur) * rate))
        x = np.linspace(0.0, 1.0, i1 - i0)
        bump = np.sin(np.pi * x) * float(rng.uniform(-0.15, 0.25))  # a phrase accent
        f0[i0:i1] = np.exp(np.log(start_hz) + (np.log(end_hz) - np.log(start_hz)) * x + bump)
        f0[i0:i1] = np.clip(f0[i0:i1], 65.0, 260.0)
        segments.append((i0 / rate, i1 / rate))
        t += dur + float(rng.uniform(0.1, 0.6))
    return f0, segments


def _glottal_source(f0_hz: np.ndarray, rate: float = 100.0) -> np.ndarray:
    """Rosenberg glottal-flow derivative pulses following ``f0_hz`` (0 = silence)."""
    n = int(len(f0_hz) / rate * SAMPLE_RATE)
    t_frames = np.arange(len(f0_hz)) / rate
    f = np.interp(np.arange(n) / SAMPLE_RATE, t_frames, f0_hz)
    phase = np.cumsum(f / SAMPLE_RATE) % 1.0
    open_q, close_q = 0.4, 0.16  # opening and closing phases (shares of the period)
    flow = np.where(phase < open_q, 0.5 * (1 - np.cos(np.pi * phase / open_q)),
                    np.where(phase < open_q + close_q,
                             np.cos(np.pi / 2 * (phase - open_q) / close_q), 0.0))
    return np.diff(flow, prepend=0.0) * (f > 0)


def synth_voice(seed: int, folder: Path, seconds: float = SECONDS) -> Path:
    """``folder/voice_synth_SEED.wav`` (a low speech-like voice) with truth sidecars."""
    wav = folder / f"voice_synth_{seed}.wav"
    if wav.exists():
        return wav
    rng = np.random.default_rng(seed)
    f0, segments = _voice_contour(rng, seconds)
    src = _glottal_source(f0)
    out = np.zeros_like(src)
    for start, end in segments:  # one vowel per voiced segment, with a 20 ms fade either side
        i0, i1 = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        freqs, bws = VOWELS[int(rng.integers(len(VOWELS)))]
        seg = src[max(0, i0 - 800) : i1]
        for fc, bw in zip(freqs, bws):
            r = np.exp(-np.pi * bw / SAMPLE_RATE)
            a = [1.0, -2 * r * np.cos(2 * np.pi * fc / SAMPLE_RATE), r * r]
            seg = scipy.signal.lfilter([1.0 - r], a, seg)
        out[max(0, i0 - 800) : i1] += seg
    out += 1e-3 * np.std(out) * rng.standard_normal(len(out))  # a little breath noise
    out *= 0.891 / np.max(np.abs(out))
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(wav, out.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    stem = wav.with_suffix("")
    t = np.arange(len(f0)) / 100.0
    np.savetxt(f"{stem}.f0.csv", np.c_[t, f0, (f0 > 0).astype(int)], delimiter=",",
               fmt=["%.2f", "%.3f", "%d"], header="time_s,f0_hz,voiced", comments="")
    with open(f"{stem}.notes.csv", "w") as fh:
        fh.write("start_s,end_s,midi_pitch,velocity,segment\n")
        for start, end in segments:
            fh.write(f"{start:.4f},{end:.4f},0,100,voice\n")
    return wav
