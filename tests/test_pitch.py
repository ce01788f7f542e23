"""Pitch: deterministic Viterbi decoding of CREPE activations and bin refinement."""

import librosa
import numpy as np

from ddsp_synth.dsp.units import hz_to_cents
from ddsp_synth.pitch import decode_f0, viterbi_bins


def test_viterbi_matches_librosa_with_the_same_transitions():
    rng = np.random.default_rng(0)
    act = rng.uniform(0, 1, (60, 360)) ** 8
    act[:, 100:110] += 0.5  # a ridge to follow, with noise around it
    ours = viterbi_bins(act)
    xx, yy = np.meshgrid(range(360), range(360))
    trans = np.maximum(12 - abs(xx - yy), 0).astype(float)
    trans /= trans.sum(axis=1, keepdims=True)
    probs = act / act.sum(axis=1, keepdims=True)
    ref = librosa.sequence.viterbi(probs.T, trans)
    np.testing.assert_array_equal(ours, ref)


def test_decode_is_deterministic_and_refines_between_bins():
    act = np.zeros((5, 360), np.float32)
    act[:, 150] = 1.0
    act[:, 151] = 1.0  # equal neighbours: the refined pitch sits half-way (10 cents up)
    f0, conf = decode_f0(act)
    cents = hz_to_cents(f0)
    np.testing.assert_allclose(cents, 20 * 150 + 1997.3794084376191 + 10, atol=1e-3)
    np.testing.assert_allclose(conf, 1.0)
    f0b, _ = decode_f0(act.copy())
    np.testing.assert_array_equal(f0, f0b)
