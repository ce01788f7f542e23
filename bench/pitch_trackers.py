"""The trackers the pitch benchmark compares, as functions ``audio [n] 16 kHz -> f0_hz [n_frames]``.

* ``tiny_old``: CREPE tiny decoded as ddsp_synth shipped it before issue 23: the banded
  Viterbi alone (no jump) and no harmonic check;
* ``tiny``: CREPE tiny as ddsp_synth analyses now (Viterbi with jumps, harmonic check):
  ``prepare``, ``transfer``, ``eval`` and the app;
* ``tiny_stream``: the streaming front end (online filters, 32 ms look-ahead);
* ``full_old`` / ``full``: the same two decodings of CREPE full (about 20 times slower).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ddsp_synth import pitch
from ddsp_synth.features import FeatureConfig, compute_f0

HOP = 160


@contextlib.contextmanager
def old_decoding():
    """The decoding before issue 23: no jump in the Viterbi prior (and no frames passed, so
    no harmonic check)."""
    saved = pitch.VITERBI_JUMP_LOG_PROB
    pitch.VITERBI_JUMP_LOG_PROB = -np.inf
    try:
        yield
    finally:
        pitch.VITERBI_JUMP_LOG_PROB = saved


def decode_old(activations: np.ndarray) -> np.ndarray:
    with old_decoding():
        return pitch.decode_f0(activations)[0]


def decode_new(audio: np.ndarray, activations: np.ndarray, model: str = "tiny") -> np.ndarray:
    """As ddsp_synth decodes ``model``'s activations (CREPE full needs no second opinion)."""
    return pitch.decode_f0(activations, frames_fn=lambda i, j: pitch.analysis_frames(
        audio, HOP, i, j), second_model=pitch.second_model_for(model))[0]


def streamed(audio: np.ndarray) -> np.ndarray:
    from ddsp_synth.streaming import StreamingFeatures

    live = StreamingFeatures(FeatureConfig())
    frames = []
    for i in range(0, len(audio), HOP):
        frames += live.push(audio[i : i + HOP])
    frames += live.finish()
    return np.array([f.f0_hz for f in frames], np.float32)


def offline(audio: np.ndarray, crepe_model: str = "tiny") -> np.ndarray:
    """The library's own path (features.compute_f0), as prepare / transfer / eval run it."""
    return compute_f0(audio, FeatureConfig(crepe_model=crepe_model))[0]
