"""The dsp package against independent float64 numpy/scipy references and measured properties."""

import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from ddsp_synth.dsp import convolution, interpolation, oscillators, spectral, units

SR = 16000
HOP = 160


# ----------------------------------------------------------------------------- helpers
def numpy_harmonic_reference(f0_frames, amp_frames, dist_frames, sr, hop, phase0=0.0):
    """Float64 sum of sines with per-sample Nyquist masking and renormalisation.

    Written from the definition, independently of the torch code: linear f0, raised-cosine
    amplitude interpolation, phase = exclusive cumulative sum of 2*pi*f0/sr.
    """
    n_frames, n_harm = dist_frames.shape
    n = n_frames * hop
    pos = np.arange(n) / hop
    f0 = np.interp(pos, np.arange(n_frames), f0_frames)
    t = np.floor(pos).astype(int)
    frac = pos - t
    w = 0.5 - 0.5 * np.cos(np.pi * frac)
    t1 = np.minimum(t + 1, n_frames - 1)
    amp = amp_frames[t] * (1 - w) + amp_frames[t1] * w
    dist = dist_frames[t] * (1 - w)[:, None] + dist_frames[t1] * w[:, None]
    phase = phase0 + 2 * np.pi * np.concatenate([[0.0], np.cumsum(f0)[:-1]]) / sr
    k = np.arange(1, n_harm + 1)
    mask = (k[None, :] * f0[:, None]) < sr / 2
    dist = dist * mask
    dist = dist / np.maximum(dist.sum(1, keepdims=True), 1e-7)
    return amp * np.sum(dist * np.sin(phase[:, None] * k[None, :]), axis=1)


def measured_pitch_hz(x, sr):
    """FFT peak of a Hann-windowed, 16x zero-padded signal, refined by a parabola on log|X|."""
    n_fft = 16 * len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft))
    i = int(np.argmax(spec))
    a, b, c = np.log(spec[i - 1 : i + 2])
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    return (i + delta) * sr / n_fft


def cents(f, ref):
    return 1200 * math.log2(f / ref)


def tone(f0_hz, n_frames, n_harmonics=1, amp=0.5):
    f0 = torch.full((1, n_frames, 1), float(f0_hz))
    a = torch.full((1, n_frames, 1), amp)
    d = torch.zeros(1, n_frames, n_harmonics)
    d[..., 0] = 1.0
    return f0, a, d


# ----------------------------------------------------------------------------- scaling
def test_exp_sigmoid_matches_formula_and_range():
    x = torch.linspace(-20, 20, 101, dtype=torch.float64)
    expected = 2.0 * (1 / (1 + np.exp(-x.numpy()))) ** np.log(10.0) + 1e-7
    np.testing.assert_allclose(units.exp_sigmoid(x).numpy(), expected, rtol=1e-12)
    assert float(units.exp_sigmoid(x).min()) > 0 and float(units.exp_sigmoid(x).max()) < 2.0 + 1e-6
    assert torch.autograd.gradcheck(units.exp_sigmoid, (torch.randn(7, dtype=torch.float64,
                                                                   requires_grad=True),))


# ----------------------------------------------------------------------------- upsampling
def test_upsample_linear_matches_numpy_interp_and_length():
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    y = interpolation.frames_to_samples(x, 5, "linear")
    assert y.shape == (2, 45, 3)
    pos = np.arange(45) / 5
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[b, :, c].numpy(), np.interp(pos, np.arange(9), x[b, :, c]),
                                       atol=1e-12)


def test_upsample_hann_is_smooth_crossfade_through_frame_values():
    x = torch.tensor([[[0.0], [1.0], [1.0], [-2.0]]], dtype=torch.float64)
    y = interpolation.frames_to_samples(x, 8, "hann")[0, :, 0].numpy()
    assert y.shape == (32,)
    np.testing.assert_allclose(y[[0, 8, 16, 24]], [0.0, 1.0, 1.0, -2.0], atol=1e-12)
    # Raised cosine: derivative ~0 at frame points, so the first step is smaller than linear.
    assert 0 < y[1] < 1 / 8
    np.testing.assert_allclose(y[4], 0.5, atol=1e-12)
    assert np.all(y[24:] == -2.0)


def test_upsample_gradcheck():
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    for kind in ("linear", "hann"):
        assert torch.autograd.gradcheck(lambda v: interpolation.frames_to_samples(v, 3, kind), (x,))


# ----------------------------------------------------------------------------- oscillators
def test_harmonic_matches_float64_numpy_sum_of_sines():
    rng = np.random.default_rng(0)
    n_frames, n_harm = 60, 40
    f0 = np.linspace(150.0, 900.0, n_frames) + 30 * np.sin(np.arange(n_frames) / 4)
    amp = rng.uniform(0.1, 0.9, n_frames)
    dist = rng.uniform(0.0, 1.0, (n_frames, n_harm))
    y, _ = oscillators.harmonic_synthesis(
        torch.tensor(f0)[None, :, None], torch.tensor(amp)[None, :, None],
        torch.tensor(dist)[None], SR, HOP)
    ref = numpy_harmonic_reference(f0, amp, dist, SR, HOP)
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y[0].numpy(), ref, atol=1e-9)
    # float32 path agrees to float32 precision
    y32, _ = oscillators.harmonic_synthesis(
        torch.tensor(f0, dtype=torch.float32)[None, :, None],
        torch.tensor(amp, dtype=torch.float32)[None, :, None],
        torch.tensor(dist, dtype=torch.float32)[None], SR, HOP)
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32[0].numpy(), ref, atol=2e-5)


@pytest.mark.parametrize("f0_hz", [110.0, 440.0, 1000.0])
def test_measured_pitch_within_one_cent(f0_hz):
    f0, a, d = tone(f0_hz, 100, n_harmonics=8)
    d[:] = 1.0 / torch.arange(1, 9)
    y, _ = oscillators.harmonic_synthesis(f0, a, d, SR, HOP)
    measured = measured_pitch_hz(y[0].numpy().astype(np.float64), SR)
    assert abs(cents(measured, f0_hz)) < 1.0


def _exact_harmonic_phase(k, f0_int, n, sr):
    """Exact 2*pi*k*f0*n/sr mod 2*pi for integer f0 and sr (integer arithmetic)."""
    return 2 * np.pi * ((k * f0_int * n) % sr) / sr


def test_phase_drift_after_60s_below_1e3_rad_on_every_harmonic():
    f0_int, seconds = 440, 60
    n_frames = seconds * SR // HOP
    n_harm = 20  # 18 below Nyquist at 440 Hz
    f0 = torch.full((1, n_frames, 1), float(f0_int))
    a = torch.full((1, n_frames, 1), 0.9)
    d = torch.ones(1, n_frames, n_harm)
    y, final = oscillators.harmonic_synthesis(f0, a, d, SR, HOP)
    y = y[0].numpy().astype(np.float64)
    n_tail = 8000  # 0.5 s = 220 periods of 440 Hz: harmonics are orthogonal over it
    n = np.arange(len(y) - n_tail, len(y), dtype=np.int64)
    seg = y[-n_tail:]
    below = [k for k in range(1, n_harm + 1) if k * f0_int < SR / 2]
    assert len(below) == 18
    errors = []
    for k in below:
        theta = _exact_harmonic_phase(k, f0_int, n, SR)
        err = math.atan2(np.dot(seg, np.cos(theta)), np.dot(seg, np.sin(theta)))
        errors.append(abs(err))
        amp = 2 * math.hypot(np.dot(seg, np.cos(theta)), np.dot(seg, np.sin(theta))) / n_tail
        assert abs(amp - 0.9 / 18) < 1e-4  # equal share of the renormalised distribution
    assert max(errors) < 1e-3, errors
    for k in range(19, n_harm + 1):  # above Nyquist: silent
        theta = _exact_harmonic_phase(k, f0_int, n, SR)
        assert abs(np.dot(seg, np.sin(theta))) / n_tail < 1e-6
    exact_final = _exact_harmonic_phase(1, f0_int, np.int64(len(y)), SR)
    assert abs(float(final) - exact_final) < 1e-6


def test_phase_continues_across_blocks():
    f0 = torch.linspace(200, 600, 40)[None, :, None]
    a = torch.full((1, 40, 1), 0.5)
    d = torch.rand(1, 40, 10)
    whole, final_whole = oscillators.harmonic_synthesis(f0, a, d, SR, HOP)
    # Frames 0..19 with frame 20 as the last block's interpolation target (look-ahead), then
    # frames 20.. from the phase that call returned.
    first, phase_20 = oscillators.harmonic_synthesis(f0[:, :21], a[:, :21], d[:, :21], SR, HOP,
                                                     lookahead=True)
    assert first.shape[1] == 20 * HOP
    _, held = oscillators.harmonic_synthesis(f0[:, :20], a[:, :20], d[:, :20], SR, HOP)
    assert not torch.allclose(held, phase_20)  # holding frame 19 is another signal
    second, final = oscillators.harmonic_synthesis(f0[:, 20:], a[:, 20:], d[:, 20:], SR, HOP,
                                                   initial_phase=phase_20)
    np.testing.assert_allclose(torch.cat([first, second], 1).numpy(), whole.numpy(), atol=2e-6)
    assert abs(float(final - final_whole)) < 1e-9


def test_no_aliasing_in_sweep_to_4khz_with_100_harmonics():
    n_harm, seconds = 100, 4.0
    n_frames = int(seconds * SR / HOP)
    t = np.arange(n_frames) / (n_frames - 1)
    f0_frames = (110.0 * (4000.0 / 110.0) ** t).astype(np.float32)
    f0 = torch.tensor(f0_frames)[None, :, None]
    a = torch.full((1, n_frames, 1), 0.5)
    d = torch.ones(1, n_frames, n_harm)
    y, _ = oscillators.harmonic_synthesis(f0, a, d, SR, HOP)
    y = y[0].numpy().astype(np.float64)

    f0_s = np.interp(np.arange(n_frames * HOP) / HOP, np.arange(n_frames), f0_frames)
    phase = 2 * np.pi * np.concatenate([[0.0], np.cumsum(f0_s)[:-1]]) / SR

    def residual_db(signal):
        """Energy not explained by the harmonic lines below Nyquist, relative to the signal.

        Segments end where a harmonic crosses Nyquist and are at most 512 samples long;
        each is least-squares fitted with sin/cos of k*phase for the harmonics below Nyquist.
        """
        n_active = np.sum(np.arange(1, n_harm + 1)[None, :] * f0_s[:, None] < SR / 2, axis=1)
        crossings = [0, *(np.flatnonzero(np.diff(n_active)) + 1), len(signal)]
        edges = [0]
        for s, e in zip(crossings[:-1], crossings[1:]):
            n_pieces = -(-(e - s) // 512)
            edges += [s + (e - s) * (i + 1) // n_pieces for i in range(n_pieces)]
        resid = total = skipped = 0.0
        for s, e in zip(edges[:-1], edges[1:]):
            ks = np.arange(1, n_active[s] + 1)
            if e - s < 3 * len(ks):  # too short to be an honest fit (2 basis per harmonic)
                skipped += e - s
                continue
            basis = np.concatenate([np.sin(np.outer(phase[s:e], ks)),
                                    np.cos(np.outer(phase[s:e], ks))], axis=1)
            coef, *_ = np.linalg.lstsq(basis, signal[s:e], rcond=None)
            resid += np.sum((signal[s:e] - basis @ coef) ** 2)
            total += np.sum(signal[s:e] ** 2)
        assert skipped < 0.05 * len(signal)
        return 10 * np.log10(resid / total)

    assert residual_db(y) < -80.0
    # The measure can fail: the same sweep without the Nyquist mask aliases badly.
    k = np.arange(1, n_harm + 1)
    naive = 0.5 / n_harm * np.sum(np.sin(phase[:, None] * k[None, :]), axis=1)
    assert residual_db(naive) > -30.0


def test_harmonics_at_or_above_nyquist_are_silent():
    # 4000 Hz: harmonic 2 sits exactly at Nyquist -> only the fundamental remains.
    f0, a, d = tone(4000.0, 50, n_harmonics=3)
    d[:] = 1.0
    y, _ = oscillators.harmonic_synthesis(f0, a, d, SR, HOP)
    ref = 0.5 * np.sin(2 * np.pi * 4000.0 * np.arange(50 * HOP) / SR)
    np.testing.assert_allclose(y[0].numpy(), ref, atol=1e-5)


def test_harmonic_batch_equals_singles():
    f0 = torch.rand(3, 30, 1) * 800 + 60
    a = torch.rand(3, 30, 1)
    d = torch.rand(3, 30, 50)
    batch, _ = oscillators.harmonic_synthesis(f0, a, d, SR, HOP)
    for i in range(3):
        single, _ = oscillators.harmonic_synthesis(f0[i : i + 1], a[i : i + 1], d[i : i + 1], SR, HOP)
        np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), atol=1e-6)


def test_harmonic_gradcheck():
    torch.manual_seed(0)
    f0 = (torch.rand(2, 4, 1, dtype=torch.float64) * 300 + 200).requires_grad_()
    a = torch.rand(2, 4, 1, dtype=torch.float64, requires_grad=True)
    d = torch.rand(2, 4, 5, dtype=torch.float64, requires_grad=True)
    fn = lambda f, amp, dist: oscillators.harmonic_synthesis(f, amp, dist, 8000, 6)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f0, a, d))


# ----------------------------------------------------------------------------- FIR / noise
def test_fir_is_linear_phase_with_smoothed_requested_response():
    mags = torch.rand(3, 17, dtype=torch.float64) + 0.1
    ir = convolution.frequency_sampling_fir(mags)
    assert ir.shape == (3, 32)
    centre = 16
    np.testing.assert_allclose(ir[:, centre + 1 :].numpy(), ir[:, 1:centre].flip(-1).numpy(),
                               atol=1e-12)  # symmetric about the centre tap -> linear phase
    response = np.abs(np.fft.rfft(ir.numpy(), axis=-1))
    m = mags.numpy()
    # Hann window in time = [1/4, 1/2, 1/4] kernel over neighbouring bands in frequency.
    expected = 0.5 * m[:, 1:-1] + 0.25 * (m[:, :-2] + m[:, 2:])
    np.testing.assert_allclose(response[:, 1:-1], expected, rtol=1e-9)


def test_time_varying_fir_matches_scipy_fftconvolve_overlap_add():
    rng = np.random.default_rng(1)
    n_frames, hop, ir_size = 12, 50, 128  # taps longer than a block: tails span 3 blocks
    x = rng.standard_normal((2, n_frames * hop))
    irs = rng.standard_normal((2, n_frames, ir_size))
    y = convolution.time_varying_fir(torch.tensor(x), torch.tensor(irs), hop).numpy()
    ref = np.zeros((2, n_frames * hop + ir_size - 1))
    for b in range(2):
        for t in range(n_frames):
            seg = scipy.signal.fftconvolve(x[b, t * hop : (t + 1) * hop], irs[b, t])
            ref[b, t * hop : t * hop + len(seg)] += seg
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_exp_decay_ir_gradcheck_and_formula():
    noise = torch.randn(1, 30, dtype=torch.float64)
    gain = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    decay = torch.tensor(0.001, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, dcy: convolution.exp_decay_ir(noise, g, dcy, 8000),
                                    (gain, decay))
    ir_np = convolution.exp_decay_ir(noise, gain, decay, 8000).detach().numpy()
    expected = 0.5 * noise.numpy() * np.exp(-np.arange(30) / 8000 / 0.001)
    np.testing.assert_allclose(ir_np, expected, rtol=1e-12)


def test_fft_convolve_matches_scipy():
    rng = np.random.default_rng(3)
    x, ir = rng.standard_normal((2, 1000)), rng.standard_normal((1, 300))
    y = convolution.fft_convolve(torch.tensor(x), torch.tensor(ir)).numpy()
    for b in range(2):
        np.testing.assert_allclose(y[b], scipy.signal.fftconvolve(x[b], ir[0]), atol=1e-10)


def test_minimum_phase_reflects_outer_zeros_and_keeps_the_magnitude():
    # (1 - 2 z^-1)(1 - 0.5 z^-1): the zero at 2 reflected to 0.5, gain 2 keeps |H|
    mixed = torch.tensor([[1.0, -2.5, 1.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(convolution.minimum_phase(mixed)[0].numpy(), [2.0, -2.0, 0.5, 0.0],
                               atol=1e-6)
    already = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)  # its zero at -0.5 is inside
    np.testing.assert_allclose(convolution.minimum_phase(already)[0].numpy(), [1.0, 0.5, 0.0],
                               atol=1e-6)
    # a room-like response: smeared noise with a pre-delay; the magnitude is kept, the energy
    # comes as early as it can (partial energies at least those of the original, everywhere)
    rng = np.random.default_rng(0)
    n = 800
    h = rng.standard_normal(n) * np.exp(-np.arange(n) / 150.0) * (np.arange(n) > 40)
    h[0] = 1.0
    hm = convolution.minimum_phase(torch.tensor(h)[None])[0].numpy()
    mag, mag_m = (np.abs(np.fft.rfft(v, 8192)) for v in (h, hm))
    err_db = 20 * np.log10(mag_m / mag)
    assert np.quantile(np.abs(err_db), 0.99) < 0.05, np.quantile(np.abs(err_db), 0.99)
    np.testing.assert_allclose(np.sum(hm**2), np.sum(h**2), rtol=1e-3)
    assert np.all(np.cumsum(hm**2) >= np.cumsum(h**2) - 1e-4 * np.sum(h**2))
    assert np.sum(hm[:40] ** 2) > 0.5 * np.sum(hm**2) > np.sum(h[:40] ** 2)


def test_minimum_phase_gradcheck():
    ir = torch.tensor([[1.0, -0.3, 0.8, 0.2, -0.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(convolution.minimum_phase, (ir,))


# ----------------------------------------------------------------------------- loudness
def test_a_weighting_matches_librosa():
    freqs = np.linspace(10, 8000, 500)  # librosa's formula is -inf at 0 Hz
    np.testing.assert_allclose(spectral.a_weighting_db(freqs), librosa.A_weighting(freqs), atol=1e-6)
    np.testing.assert_allclose(spectral.a_weighting_db(torch.tensor(freqs)).numpy(),
                               librosa.A_weighting(freqs), atol=1e-6)


def test_loudness_matches_numpy_reference_with_librosa_weights():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(SR) * np.linspace(0, 0.5, SR)
    n_fft = 1024
    got = spectral.a_weighted_loudness(torch.tensor(x)[None], SR, HOP, n_fft)[0, :, 0].numpy()
    _, _, z = scipy.signal.stft(x, window="hann", nperseg=n_fft, noverlap=n_fft - HOP,
                                boundary="zeros", padded=False)
    spec = np.abs(z * np.hanning(n_fft + 1)[:-1].sum())  # undo scipy's 1/sum(w) scaling
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    freqs[0] = 1e-3  # librosa gives -inf at 0 Hz; both floor at -120 dB
    weight = 10 ** (np.maximum(librosa.A_weighting(freqs), -120) / 10)
    power = (spec**2 * weight[:, None]).sum(0) / (n_fft * (np.hanning(n_fft + 1)[:-1] ** 2).sum() / 4)
    ref = 10 * np.log10(power + 1e-12)[: SR // HOP]
    assert got.shape == (SR // HOP,)
    np.testing.assert_allclose(got, ref, atol=1e-6)


# At 100 Hz the weighting falls ~0.35 dB per 2 Hz: averaging it across the window's main
# lobe (+-31 Hz) moves the level by 0.1 dB, hence the wider tolerance there.
@pytest.mark.parametrize("freq,amp,tol_db", [(1000.0, 0.5, 0.02), (1000.0, 0.05, 0.02),
                                             (100.0, 0.5, 0.15), (4000.0, 0.25, 0.02)])
def test_loudness_of_sines_is_calibrated(freq, amp, tol_db):
    x = amp * np.sin(2 * np.pi * freq * np.arange(2 * SR) / SR)
    loud = spectral.a_weighted_loudness(torch.tensor(x)[None], SR, HOP, 1024)[0, 20:-20, 0].numpy()
    expected = 20 * np.log10(amp) + librosa.A_weighting(freq)
    np.testing.assert_allclose(loud, expected, atol=tol_db)


def test_loudness_frame_grid_silence_floor_batch_and_gradcheck():
    for n in (16000, 16001, 15999):
        assert spectral.a_weighted_loudness(torch.zeros(1, n), SR, HOP, 1024).shape == (
            1, interpolation.n_frames_for(n, HOP), 1)
    assert interpolation.n_frames_for(16001, HOP) == 101
    silent = spectral.a_weighted_loudness(torch.zeros(1, 1600), SR, HOP, 1024)
    np.testing.assert_allclose(silent.numpy(), -120.0, atol=1e-3)
    x = torch.randn(3, 1600)
    batch = spectral.a_weighted_loudness(x, SR, HOP, 512)
    for i in range(3):
        np.testing.assert_allclose(batch[i].numpy(),
                                   spectral.a_weighted_loudness(x[i : i + 1], SR, HOP, 512)[0].numpy(),
                                   atol=1e-4)
    xs = torch.randn(1, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: spectral.a_weighted_loudness(a, 8000, 16, 32), (xs,))


# ----------------------------------------------------------------------------- validation
def test_validation_errors_name_the_argument():
    f0 = torch.full((1, 4, 1), 200.0)
    a = torch.ones(1, 4, 1)
    d = torch.ones(1, 4, 3)
    with pytest.raises(ValueError, match="f0_hz must have rank 3"):
        oscillators.harmonic_synthesis(f0[0], a, d, SR, HOP)
    with pytest.raises(ValueError, match="amplitude has shape"):
        oscillators.harmonic_synthesis(f0, torch.ones(1, 5, 1), d, SR, HOP)
    with pytest.raises(ValueError, match="harmonic_distribution has shape"):
        oscillators.harmonic_synthesis(f0, a, torch.ones(1, 3, 3), SR, HOP)
    with pytest.raises(ValueError, match="f0_hz must be non-negative"):
        oscillators.harmonic_synthesis(-f0, a, d, SR, HOP)
    with pytest.raises(ValueError, match="f0_hz contains NaN"):
        oscillators.harmonic_synthesis(f0 * float("nan"), a, d, SR, HOP)
    with pytest.raises(ValueError, match="amplitude contains NaN"):
        oscillators.harmonic_synthesis(f0, a * float("nan"), d, SR, HOP)
    with pytest.raises(ValueError, match="hop must be a positive integer"):
        oscillators.harmonic_synthesis(f0, a, d, SR, 0)
    with pytest.raises(ValueError, match="initial_phase must be"):
        oscillators.harmonic_synthesis(f0, a, d, SR, HOP, initial_phase=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="signal has 100 samples, expected n_frames \\* hop"):
        convolution.time_varying_fir(torch.zeros(1, 100), torch.zeros(1, 4, 8), 30)
    with pytest.raises(ValueError, match="at least 2 bands"):
        convolution.frequency_sampling_fir(torch.ones(1, 4, 1))
    with pytest.raises(ValueError, match="kernel batch"):
        convolution.fft_convolve(torch.zeros(2, 10), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="audio must have rank 2"):
        spectral.a_weighted_loudness(torch.zeros(10), SR, HOP, 256)
    with pytest.raises(ValueError, match="frames must have rank 3"):
        interpolation.frames_to_samples(torch.zeros(4, 2), 3)
    with pytest.raises(ValueError, match="kind must be"):
        interpolation.frames_to_samples(torch.zeros(1, 4, 2), 3, "cubic")


@pytest.mark.parametrize("n_fft,hop", [(64, 16), (256, 64), (1024, 160), (2048, 512)])
def test_magnitude_spectrogram_equals_torch_stft_with_exact_gradient(n_fft, hop):
    torch.manual_seed(0)
    x = torch.randn(2, 3001, dtype=torch.float64, requires_grad=True)
    w = torch.hann_window(n_fft, dtype=torch.float64)
    ref = torch.stft(x, n_fft, hop, window=w, center=True, pad_mode="constant",
                     return_complex=True).abs()
    got = spectral.magnitude_spectrogram(x, n_fft, hop)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
    # the whole Jacobian on a short signal (one perturbation per sample); the long one's
    # gradient is compared with torch.stft's below
    short = x[:1, :400].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: spectral.magnitude_spectrogram(a, n_fft, hop),
                                    (short,), eps=1e-6, atol=1e-5)
    g_ref, = torch.autograd.grad(ref.square().sum() + ref.sum(), x)
    g, = torch.autograd.grad(got.square().sum() + got.sum(), x)
    torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=1e-9)
    zero = torch.zeros(1, 500, dtype=torch.float64, requires_grad=True)
    spectral.magnitude_spectrogram(zero, n_fft, hop).sum().backward()
    assert torch.isfinite(zero.grad).all() and not zero.grad.any()  # abs' zero subgradient
