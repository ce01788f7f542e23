"""Figures of the web demo: note-name pitch axes, legends off the data, one colour scale."""

import re

import numpy as np
import pytest

from ddsp_synth.plots import (
    curves_figure,
    hz_to_midi,
    note_name,
    note_ticks,
    piano_roll_figure,
    spectrograms_figure,
)

FR = 100.0
SR = 16000
NOTE_RE = r"^[A-G]#?-?\d$"


def _features(n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FR
    f0 = 440.0 * 2 ** (np.round(6 * np.sin(t)) / 12)  # a tune around A4
    conf = np.where((t % 1.0) < 0.8, 0.9, 0.1)
    ld = -30 + 5 * rng.standard_normal(n)
    return {"f0_hz": f0, "confidence": conf, "loudness_db": ld}


def _render(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend_clear_of_axes(fig, ax):
    renderer = _render(fig)
    legend = ax.get_legend()
    assert legend is not None
    lb = legend.get_window_extent(renderer)
    ab = ax.get_window_extent(renderer)
    fb = fig.bbox
    assert not lb.overlaps(ab), (lb, ab)  # outside the plotting area
    assert lb.y0 >= ab.y1 - 1  # above it
    assert fb.x0 - 1 <= lb.x0 and lb.x1 <= fb.x1 + 1 and lb.y1 <= fb.y1 + 1  # not cut off


def test_note_names_and_ticks():
    assert [note_name(m) for m in (21, 60, 61, 69, 71.4, 108)] == ["A0", "C4", "C#4", "A4", "B4",
                                                                   "C8"]
    np.testing.assert_allclose(hz_to_midi([440.0, 261.6256, 880.0]), [69.0, 60.0, 81.0], atol=1e-4)
    assert note_ticks(60, 65) == [60, 61, 62, 63, 64, 65]
    assert note_ticks(57, 72) == [57, 59, 60, 62, 64, 65, 67, 69, 71, 72]
    assert note_ticks(48, 72) == [48, 52, 55, 60, 64, 67, 72]
    assert note_ticks(30, 90) == [36, 48, 60, 72, 84]


def test_curves_figure_note_axis_and_legend_outside():
    feats = _features()
    adjusted = {"f0_hz": feats["f0_hz"] * 2.0, "loudness_db": feats["loudness_db"] + 3.0}
    fig = curves_figure(FR, feats, adjusted)
    ax_f0, _ax_ld = fig.axes[:2]
    _render(fig)
    labels = [t.get_text() for t in ax_f0.get_yticklabels()]
    lo, hi = ax_f0.get_ylim()
    shown = [lab for lab, y in zip(labels, ax_f0.get_yticks()) if lo <= y <= hi]
    assert len(shown) >= 3
    assert all(re.match(NOTE_RE, s) for s in shown), shown
    # Ticks sit on the notes they name: C4 at 261.63 Hz, and so on.
    for lab, y in zip(labels, ax_f0.get_yticks()):
        m = float(hz_to_midi(y))
        assert note_name(m) == lab and abs(m - round(m)) < 1e-6
    # The range covers the voiced input and the octave-up adjusted curve, a semitone spare.
    voiced = feats["confidence"] >= 0.5
    assert lo < feats["f0_hz"][voiced].min() / 2 ** (0.9 / 12)
    assert hi > adjusted["f0_hz"][voiced].max() * 2 ** (0.9 / 12)
    _legend_clear_of_axes(fig, ax_f0)


def test_curves_figure_without_confidence_and_unvoiced():
    n = 120
    feats = {"f0_hz": np.full(n, 220.0), "loudness_db": np.full(n, -40.0)}
    fig = curves_figure(FR, feats, {"f0_hz": np.full(n, 220.0), "loudness_db": np.full(n, -40.0)})
    assert len(fig.axes[0].lines) == 2
    silent = dict(feats, confidence=np.zeros(n))
    fig = curves_figure(FR, silent, {"f0_hz": feats["f0_hz"], "loudness_db": feats["loudness_db"]})
    _render(fig)  # nothing voiced: still a figure with a default pitch range
    assert fig.axes[0].get_ylim()[0] > 0


def _images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images]


def test_spectrograms_share_one_colour_scale():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = (1e-3 * x).astype(np.float32)  # 60 dB quieter
    fig = spectrograms_figure(x, y, SR)
    ims = _images(fig)
    assert len(ims) == 2
    assert ims[0].get_clim() == ims[1].get_clim()
    vmin, vmax = ims[0].get_clim()
    assert vmax == pytest.approx(float(np.max(ims[0].get_array())), abs=1e-3)
    # The quiet output's peak sits ~60 dB under the top of the shared scale: it looks dark.
    assert vmax - float(np.max(ims[1].get_array())) == pytest.approx(60.0, abs=1.0)
    # The same if the output is the louder one: the scale follows the louder signal.
    ims2 = _images(spectrograms_figure(y, x, SR))
    assert ims2[0].get_clim() == ims2[1].get_clim() == (vmin, vmax)


def test_spectrogram_of_near_silence_looks_dark_alone():
    quiet = (1e-5 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    ims = _images(spectrograms_figure(None, quiet, SR))
    assert len(ims) == 1
    _vmin, vmax = ims[0].get_clim()
    assert vmax - float(np.max(ims[0].get_array())) > 40.0


def test_piano_roll_with_f0_overlay():
    notes = [(0.2, 0.7, 60, 100), (0.7, 1.2, 64, 40), (1.5, 2.0, 71.5, 127)]
    n = 230
    f0 = np.full(n, 440.0)
    ld = np.full(n, -140.0)
    for s, e, p, _ in notes:
        f0[int(s * FR):int(e * FR)] = 440 * 2 ** ((p - 69) / 12)
        ld[int(s * FR):int(e * FR)] = -20.0
    fig = piano_roll_figure(notes, FR, f0, ld)
    ax = fig.axes[0]
    bars = [c for c in ax.collections if len(c.get_paths()) == len(notes)]
    assert len(bars) == 1  # one collection: drawn in bounded time however many notes
    alphas = bars[0].get_facecolors()[:, 3]
    assert alphas[1] < alphas[0] < alphas[2]  # velocity shows as opacity
    ext = [path.get_extents() for path in bars[0].get_paths()]
    for (s, e, p, _), bb in zip(notes, ext):
        assert bb.x0 == pytest.approx(s) and bb.x1 == pytest.approx(e)
        assert (bb.y0 + bb.y1) / 2 == pytest.approx(p)
    line = next(ln for ln in ax.lines if ln.get_label() == "f0 played")
    y = line.get_ydata()
    assert np.all(np.isnan(y[ld <= -140])) and np.allclose(y[int(0.3 * FR)], 60.0)
    _render(fig)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "C4" in labels and all(re.match(NOTE_RE, s) for s in labels)
    lo, hi = ax.get_ylim()
    assert lo < 60 and hi > 71.5
    _legend_clear_of_axes(fig, ax)


def test_piano_roll_notes_only_and_empty():
    fig = piano_roll_figure([(0.0, 1.0, 69, 90)])
    assert not [ln for ln in fig.axes[0].lines if ln.get_label() == "f0 played"]
    empty = piano_roll_figure([])
    assert any(t.get_text() == "no notes" for t in empty.axes[0].texts)
    with pytest.raises(ValueError):
        piano_roll_figure([(0.0, 1.0, 69, 90)], None, np.full(10, 440.0))
