"""Multi-resolution STFT loss: scipy reference, identity, symmetry, monotonicity, gradients."""

import numpy as np
import pytest
import scipy.signal
import torch

from ddsp_synth.dsp.spectral import magnitude_spectrogram
from ddsp_synth.losses import MultiResolutionSTFTLoss, SpectralLossConfig, multi_resolution_stft_loss

SR = 16000


def scipy_magnitudes(x, n_fft, hop):
    _, _, z = scipy.signal.stft(x, window="hann", nperseg=n_fft, noverlap=n_fft - hop,
                                boundary="zeros", padded=False)
    return np.abs(z) * np.hanning(n_fft + 1)[:-1].sum()  # undo scipy's 1/sum(window)


def numpy_loss(p, t, sizes, eps=1e-5):
    total = 0.0
    for n_fft in sizes:
        hop = n_fft // 4
        mp = np.stack([scipy_magnitudes(x, n_fft, hop) for x in p])
        mt = np.stack([scipy_magnitudes(x, n_fft, hop) for x in t])
        total += np.mean(np.abs(mp - mt)) + np.mean(np.abs(np.log(mp + eps) - np.log(mt + eps)))
    return total


def test_magnitudes_match_scipy_stft():
    x = np.random.default_rng(0).standard_normal(3000)
    for n_fft in (2048, 512, 64):
        ours = magnitude_spectrogram(torch.tensor(x)[None], n_fft, n_fft // 4)[0].numpy()
        ref = scipy_magnitudes(x, n_fft, n_fft // 4)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-8)


def test_loss_matches_numpy_scipy_reference():
    rng = np.random.default_rng(1)
    p, t = rng.standard_normal((2, 4000)), rng.standard_normal((2, 4000)) * 0.3
    ours = multi_resolution_stft_loss(torch.tensor(p), torch.tensor(t))
    ref = numpy_loss(p, t, SpectralLossConfig().fft_sizes)
    np.testing.assert_allclose(float(ours), ref, rtol=1e-6)


def test_loss_zero_for_identical_and_symmetric():
    x = torch.randn(2, 8000)
    y = torch.randn(2, 8000)
    assert float(multi_resolution_stft_loss(x, x)) == 0.0
    np.testing.assert_allclose(float(multi_resolution_stft_loss(x, y)),
                               float(multi_resolution_stft_loss(y, x)), rtol=1e-6)
    assert float(multi_resolution_stft_loss(x, y)) > 0.1


def test_loss_weights_are_configurable():
    x, y = torch.randn(1, 4000), torch.randn(1, 4000)
    lin = multi_resolution_stft_loss(x, y, SpectralLossConfig(log_weight=0.0))
    log = multi_resolution_stft_loss(x, y, SpectralLossConfig(linear_weight=0.0))
    both = multi_resolution_stft_loss(x, y, SpectralLossConfig(linear_weight=2.0, log_weight=3.0))
    np.testing.assert_allclose(float(both), 2 * float(lin) + 3 * float(log), rtol=1e-5)
    one = multi_resolution_stft_loss(x, y, SpectralLossConfig(fft_sizes=(256,)))
    assert float(one) < float(multi_resolution_stft_loss(x, y))


def _harmonic_tone(f0_hz, n=16000):
    t = np.arange(n) / SR
    return sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 9)) * 0.3


def test_loss_grows_monotonically_with_gain_mismatch():
    x = torch.tensor(_harmonic_tone(220.0))[None]
    losses = [float(multi_resolution_stft_loss(g * x, x)) for g in (1.0, 1.25, 1.5, 2.0, 4.0)]
    assert losses[0] == 0.0
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_loss_grows_monotonically_with_pitch_mismatch():
    target = torch.tensor(_harmonic_tone(220.0))[None]
    losses = []
    for cents in (0, 10, 30, 100, 300, 700):
        pred = torch.tensor(_harmonic_tone(220.0 * 2 ** (cents / 1200)))[None]
        losses.append(float(multi_resolution_stft_loss(pred, target)))
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_loss_gradcheck_and_module():
    cfg = SpectralLossConfig(fft_sizes=(16, 8))
    p = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 40, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: multi_resolution_stft_loss(a, t, cfg), (p,))
    module = MultiResolutionSTFTLoss(cfg)
    assert float(module(p, t).detach()) == float(multi_resolution_stft_loss(p, t, cfg).detach())


@pytest.mark.parametrize("w_lin,w_log", [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (2.0, 0.5)])
@pytest.mark.parametrize("target_learns", [False, True])
def test_spectral_l1_backward_equals_autograd_of_both_terms(w_lin, w_log, target_learns):
    # reference: autograd through the two terms written out on the magnitudes
    cfg = SpectralLossConfig(fft_sizes=(256, 64), linear_weight=w_lin, log_weight=w_log)
    g = torch.Generator().manual_seed(1)
    p = torch.randn(3, 2000, dtype=torch.float64, generator=g).requires_grad_()
    t = torch.randn(3, 2000, dtype=torch.float64, generator=g).requires_grad_(target_learns)
    ref = 0.0
    for n_fft in cfg.fft_sizes:
        mp, mt = (magnitude_spectrogram(x, n_fft, n_fft // 4) for x in (p, t))
        ref = ref + w_lin * (mp - mt).abs().mean() + w_log * (
            torch.log(mp + cfg.log_eps) - torch.log(mt + cfg.log_eps)).abs().mean()
    inputs = [p, t] if target_learns else [p]
    ref_grads = torch.autograd.grad(ref, inputs)
    loss = multi_resolution_stft_loss(p, t, cfg)
    grads = torch.autograd.grad(loss, inputs)
    assert abs(loss.item() - ref.item()) < 1e-12
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)
        assert float(got.abs().max()) > 0


def test_loss_validates_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        multi_resolution_stft_loss(torch.zeros(1, 100), torch.zeros(1, 101))
    with pytest.raises(ValueError, match="prediction must have rank 2"):
        multi_resolution_stft_loss(torch.zeros(100), torch.zeros(100))


def test_loudness_loss_measures_level_difference_in_db():
    from ddsp_synth.losses import loudness_loss

    t = torch.arange(16000) / SR
    x = (0.3 * torch.sin(2 * np.pi * 440 * t))[None]
    assert float(loudness_loss(x, x, SR, 160, 1024)) == 0.0
    six_db = float(loudness_loss(x * 10 ** (6 / 20), x, SR, 160, 1024))
    np.testing.assert_allclose(six_db, 6.0, atol=1e-3)
    # below the floor nothing counts: silence against near-silence costs nothing
    assert float(loudness_loss(x * 1e-6, torch.zeros_like(x), SR, 160, 1024, -80.0)) == 0.0
    p = torch.randn(1, 64, dtype=torch.float64, requires_grad=True)
    q = torch.randn(1, 64, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: loudness_loss(a, q, 8000, 16, 32), (p,))
