"""Matplotlib figures for the web demo: feature curves and spectrograms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import core  # noqa: E402


def curves_figure(frame_rate_hz: float, input_features: dict, adjusted: dict):
    """f0 (Hz, log scale) and loudness (dB) of the input and of what the model was given."""
    t = np.arange(len(input_features["f0_hz"])) / frame_rate_hz
    voiced = input_features["confidence"] >= 0.5
    fig, (ax_f0, ax_ld) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True)
    ax_f0.semilogy(t, np.where(voiced, input_features["f0_hz"], np.nan), label="input", lw=1.2)
    ax_f0.semilogy(t, np.where(voiced, adjusted["f0_hz"], np.nan), label="to the model", lw=1.2)
    shown = np.concatenate([input_features["f0_hz"][voiced], adjusted["f0_hz"][voiced]])
    if len(shown):
        ax_f0.set_ylim(shown.min() / 1.3, shown.max() * 1.3)
    ax_f0.set_ylabel("f0 (Hz)")
    ax_f0.legend(loc="upper right", fontsize=8)
    ax_ld.plot(t, input_features["loudness_db"], label="input", lw=1.2)
    ax_ld.plot(t, adjusted["loudness_db"], label="to the model", lw=1.2)
    ax_ld.set_ylim(-100, 5)
    ax_ld.set_ylabel("loudness (dB A)")
    ax_ld.set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def spectrograms_figure(input_audio: np.ndarray, output_audio: np.ndarray, sample_rate: int):
    """Log-magnitude spectrograms of the input and the output, one above the other."""
    import torch

    fig, axes = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True)
    for ax, y, title in ((axes[0], input_audio, "input"), (axes[1], output_audio, "output")):
        with torch.no_grad():
            mag = core.magnitude_spectrogram(torch.as_tensor(np.asarray(y, np.float32))[None],
                                             1024, 256)[0].numpy()
        db = 20 * np.log10(mag + 1e-6)
        extent = (0, len(y) / sample_rate, 0, sample_rate / 2000)
        ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                  vmin=db.max() - 90, vmax=db.max())
        ax.set_ylabel("kHz")
        ax.set_title(title, fontsize=9)
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    return fig
