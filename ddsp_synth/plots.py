"""Matplotlib figures for the web demo: feature curves, spectrograms and a piano roll.

Figures are built with :class:`matplotlib.figure.Figure`, not ``pyplot``: no global figure
registry holds them, so they are freed when the caller drops them. Pitch axes are labelled with note names (C4 = MIDI 60, A4 = 440 Hz); legends
sit above the plotting area so they never hide a curve.
"""

from __future__ import annotations

import matplotlib

# Gradio imports pyplot to close figures; in a server it must not pick a GUI backend.
matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

from .dsp.spectral import magnitude_spectrogram
from .dsp import units
from .dsp.units import midi_to_hz

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NATURAL_PITCH_CLASSES = (0, 2, 4, 5, 7, 9, 11)
TICK_CLASSES_BY_SPAN = (  # widest span (semitones) -> pitch classes that get a tick
    (7.0, tuple(range(12))),
    (16.0, NATURAL_PITCH_CLASSES),
    (30.0, (0, 4, 7)),
    (float("inf"), (0,)),
)
SPEC_N_FFT, SPEC_HOP = 1024, 256
SPEC_RANGE_DB = 90.0  # colour scale depth below the louder signal's peak
# Top of the colour scale is never below a -40 dBFS sine's peak bin (Hann window, n_fft
# 1024: amplitude * n_fft / 4), so an almost silent pair of signals still looks dark.
SPEC_MIN_TOP_DB = 20.0 * np.log10(10 ** (-40 / 20) * SPEC_N_FFT / 4)
SPEC_FLOOR = 1e-6
VOICED_CONFIDENCE = 0.5
LOUDNESS_AXIS_DB = (-100.0, 5.0)


def note_name(midi: float) -> str:
    """MIDI pitch -> nearest note name with octave (60 -> ``C4``, 69 -> ``A4``)."""
    m = int(np.round(midi))
    return f"{NOTE_NAMES[m % 12]}{m // 12 - 1}"


def hz_to_midi(f_hz):
    """Hz -> fractional MIDI pitch (elementwise; non-positive -> NaN)."""
    f = np.asarray(f_hz, np.float64)
    return np.where(f > 0, units.hz_to_midi(f), np.nan)


def note_ticks(lo_midi: float, hi_midi: float) -> list[int]:
    """MIDI pitches to mark between ``lo_midi`` and ``hi_midi``: every semitone over a narrow
    range, the naturals over about an octave, C-E-G over two, the Cs beyond; at least two."""
    span = hi_midi - lo_midi
    classes = next(c for limit, c in TICK_CLASSES_BY_SPAN if span <= limit)
    ticks = [m for m in range(int(np.ceil(lo_midi)), int(np.floor(hi_midi)) + 1)
             if m % 12 in classes]
    if len(ticks) < 2:  # a very narrow or odd range: mark the semitones inside it
        ticks = list(range(int(np.ceil(lo_midi)), int(np.floor(hi_midi)) + 1))
    return ticks


def _legend_above(ax, ncol: int = 3) -> None:
    """Legend in the margin above ``ax``, at its right end: it never covers the data, and
    the app's panel label sits at the top left."""
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.01), ncol=ncol, fontsize=8,
              frameon=False, borderaxespad=0.0)


def _label_pitch_axis(ax, lo_midi: float, hi_midi: float, in_hz: bool) -> None:
    ticks = note_ticks(lo_midi, hi_midi)
    ax.set_yticks(midi_to_hz(ticks) if in_hz else ticks, [note_name(m) for m in ticks])
    ax.minorticks_off()
    ax.set_ylabel("pitch")


def curves_figure(frame_rate_hz: float, input_features: dict, adjusted: dict) -> Figure:
    """f0 (log scale, note names) and loudness (dB) of the input and of what the model got.

    Args:
        frame_rate_hz: frames per second of both curves.
        input_features: ``f0_hz``, ``loudness_db`` [n_frames] and optionally ``confidence``
            (frames below 0.5 are not drawn).
        adjusted: ``f0_hz``, ``loudness_db`` [n_frames] given to the model.
    """
    f0_in = np.asarray(input_features["f0_hz"], np.float64)
    conf = np.asarray(input_features.get("confidence", np.ones_like(f0_in)), np.float64)
    f0_adj = np.asarray(adjusted["f0_hz"], np.float64)
    t = np.arange(len(f0_in)) / frame_rate_hz
    voiced = (conf >= VOICED_CONFIDENCE) & (f0_in > 0) & (f0_adj > 0)
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax_f0, ax_ld = fig.subplots(2, 1, sharex=True)
    ax_f0.semilogy(t, np.where(voiced, f0_in, np.nan), label="input", lw=1.2)
    ax_f0.semilogy(t, np.where(voiced, f0_adj, np.nan), label="to the model", lw=1.2)
    shown = hz_to_midi(np.concatenate([f0_in[voiced], f0_adj[voiced]]))
    if len(shown):
        lo, hi = float(shown.min()) - 1.0, float(shown.max()) + 1.0
    else:
        lo, hi = 48.0, 84.0
    ax_f0.set_ylim(midi_to_hz(lo), midi_to_hz(hi))
    _label_pitch_axis(ax_f0, lo, hi, in_hz=True)
    ax_f0.grid(True, axis="y", alpha=0.3)
    _legend_above(ax_f0)
    ax_ld.plot(t, input_features["loudness_db"], label="input", lw=1.2)
    ax_ld.plot(t, adjusted["loudness_db"], label="to the model", lw=1.2)
    ax_ld.set_ylim(*LOUDNESS_AXIS_DB)
    ax_ld.set_ylabel("loudness (dB A)")
    ax_ld.set_xlabel("time (s)")
    return fig


def _spectrogram_db(y: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        mag = magnitude_spectrogram(torch.as_tensor(np.asarray(y, np.float32))[None],
                                         SPEC_N_FFT, SPEC_HOP)[0].numpy()
    return 20.0 * np.log10(mag + SPEC_FLOOR)


def spectrograms_figure(input_audio: np.ndarray | None, output_audio: np.ndarray,
                        sample_rate: int) -> Figure:
    """Log-magnitude spectrograms of the input (if any) and the output on one colour scale.

    Both images share ``vmin``/``vmax`` (dB): the top is the louder signal's peak (at least
    a -40 dBFS tone's), so an output much quieter than its input looks much darker.

    Args:
        input_audio: [n_samples] or None (a MIDI input has no audio: only the output is drawn).
        output_audio: [n_samples].
    """
    signals = ([] if input_audio is None else [("input", input_audio)]) + [("output", output_audio)]
    dbs = [_spectrogram_db(y) for _, y in signals]
    vmax = max(max(float(d.max()) for d in dbs), SPEC_MIN_TOP_DB)
    vmin = vmax - SPEC_RANGE_DB
    fig = Figure(figsize=(8, 2.5 + 2.1 * len(signals)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(signals), 1, sharex=True, squeeze=False)[:, 0])
    im = None
    for ax, (title, y), db in zip(axes, signals, dbs):
        extent = (0, len(y) / sample_rate, 0, sample_rate / 2000)
        im = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                       vmin=vmin, vmax=vmax)
        ax.set_ylabel("kHz")
        ax.set_title(title, fontsize=9)
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(im, ax=list(axes), label="dB", shrink=0.9)
    return fig


def _note_bars(notes: np.ndarray):
    """[n, 4] (start_s, end_s, pitch, velocity) -> one collection of bars, opacity by
    velocity."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba

    start, end, pitch, vel = notes.T
    end = np.maximum(end, start + 1e-3)
    verts = np.stack([np.stack([start, pitch - 0.4], 1), np.stack([end, pitch - 0.4], 1),
                      np.stack([end, pitch + 0.4], 1), np.stack([start, pitch + 0.4], 1)], 1)
    colours = np.tile(to_rgba("tab:blue"), (len(notes), 1))
    colours[:, 3] = 0.25 + 0.75 * np.clip(vel / 127, 0, 1)
    return PolyCollection(verts, facecolors=colours, edgecolors="none")


def piano_roll_figure(notes, frame_rate_hz: float | None = None, f0_hz=None,
                      loudness_db=None) -> Figure:
    """The notes as a piano roll, optionally with the f0 curve that was played over them.

    Args:
        notes: iterable of (start_s, end_s, pitch, velocity); pitch is MIDI (fractional after
            a transpose), velocity 1..127 sets the bar's opacity.
        frame_rate_hz, f0_hz: the rendered f0 [n_frames] and its frame rate (both or neither).
        loudness_db: [n_frames]; frames at its minimum (muted) are not drawn in the f0 curve.
    """
    notes = [tuple(float(x) for x in n[:4]) for n in notes]
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.subplots()
    if notes:  # one artist for every note: drawing time grows with the notes, not faster
        ax.add_collection(_note_bars(np.asarray(notes, np.float64)))
    ax.plot([], [], color="tab:blue", lw=6, alpha=0.6, label="notes")  # legend proxy
    lo = min((n[2] for n in notes), default=60.0)
    hi = max((n[2] for n in notes), default=72.0)
    t_end = max((n[1] for n in notes), default=1.0)
    if f0_hz is not None:
        if frame_rate_hz is None:
            raise ValueError("f0_hz needs frame_rate_hz")
        pitch = hz_to_midi(f0_hz)
        if loudness_db is not None:
            ld = np.asarray(loudness_db, np.float64)
            pitch = np.where(ld > ld.min(), pitch, np.nan)
        t = np.arange(len(pitch)) / frame_rate_hz
        ax.plot(t, pitch, color="tab:orange", lw=1.0, label="f0 played")
        if np.any(np.isfinite(pitch)):
            lo, hi = min(lo, float(np.nanmin(pitch))), max(hi, float(np.nanmax(pitch)))
        t_end = max(t_end, len(pitch) / frame_rate_hz)
    lo, hi = lo - 1.5, hi + 1.5
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, t_end)
    _label_pitch_axis(ax, lo, hi, in_hz=False)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_xlabel("time (s)")
    if not notes:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center")
    _legend_above(ax)
    return fig
