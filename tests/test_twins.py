"""Effect twins: parameters, the fast IIR against scipy, twins against pedalboard, per-frame
parameters, carried state (chunked = whole signal, one-hop steps = offline)."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from ddsp_synth.chains import fixed_params, make_chain
from ddsp_synth.dsp import iir
from ddsp_synth.dsp.interpolation import frames_to_samples
from ddsp_synth.stages.params import DeviceError, Param, denormalise, from_dict, normalise
from ddsp_synth.stages.registry import BUILTIN_NAMES, PEDALBOARD_CLASSES, make_device
from ddsp_synth.stages.twins import TWINS

SR = 16000


def _noise(n, seed=0, batch=1, scale=0.3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n)) * scale
    x[:, n // 4 : n // 2] *= 0.05  # a quiet stretch: compressor release, filter ringing
    return x


def _stable_sos(batch, n_sections, seed=0, dtype=None):
    dtype = dtype or torch.float64
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(batch, n_sections, generator=g, dtype=dtype) * 0.35 + 0.6
    th = torch.rand(batch, n_sections, generator=g, dtype=dtype) * 2.5 + 0.2
    b = torch.randn(batch, n_sections, 3, generator=g, dtype=dtype)
    a = torch.stack([torch.ones_like(r), -2 * r * torch.cos(th), r * r], -1)
    return torch.cat([b, a], -1)


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------
def test_param_normalise_round_trip_and_log_scale():
    params = (Param("f", "Hz", 20.0, 8000.0, 440.0, "log"), Param("g", "dB", -24, 24, 0))
    nat = np.array([[20.0, -24.0], [8000.0, 24.0], [400.0, 3.0]])
    u = normalise(params, nat)
    np.testing.assert_allclose(u[:2], [[0, 0], [1, 1]], atol=1e-12)
    # log scale: the geometric mean sits at 0.5
    assert params[0].to_normalised(math.sqrt(20 * 8000)) == pytest.approx(0.5)
    np.testing.assert_allclose(denormalise(params, u), nat, rtol=1e-12)
    t = torch.tensor(nat)
    torch.testing.assert_close(denormalise(params, normalise(params, t)), t)


def test_param_gradients_are_finite_at_every_value():
    """Log and linear columns side by side: a linear column with min 0 (drive_db) or a wide
    span must not put NaN into the gradient through the other branch of the mixed formula."""
    params = (Param("drive_db", "dB", 0.0, 40.0, 25.0), Param("f", "Hz", 20.0, 20000.0, 440.0),
              Param("q", "", 0.1, 10.0, 0.7, "log"))
    u = torch.tensor([[0.0, 0.0, 0.0], [0.5, 1.0, 0.5], [1.0, 1.5, 1.0]], requires_grad=True)
    nat = denormalise(params, u)
    nat.sum().backward()
    assert torch.isfinite(u.grad).all()
    v = torch.tensor([[0.0, 20.0, 0.1], [20.0, 20000.0, 1.0]], requires_grad=True)
    normalise(params, v).sum().backward()
    assert torch.isfinite(v.grad).all()
    # per-frame distortion through its twin: finite gradients to drive_db
    dist = TWINS["distortion"](SR, SR // 100)
    x = torch.tensor(_noise(SR // 10))
    drive = torch.full((1, 10, 1), 12.0, dtype=torch.float64, requires_grad=True)
    dist(x, drive)[0].pow(2).sum().backward()
    assert torch.isfinite(drive.grad).all() and drive.grad.abs().sum() > 0


def test_param_validation_and_dict_errors():
    with pytest.raises(DeviceError, match="log scale needs min > 0"):
        Param("x", "", 0.0, 1.0, 0.5, "log")
    with pytest.raises(DeviceError, match="default"):
        Param("x", "", 0.0, 1.0, 2.0)
    peak = make_device("peak", SR)
    with pytest.raises(DeviceError, match="peak has no parameter 'gain'"):
        from_dict(peak.params, {"gain": 3.0}, "peak")
    with pytest.raises(DeviceError, match=r"outside \[-24, 24\]"):
        from_dict(peak.params, {"gain_db": 30.0}, "peak")
    v = from_dict(peak.params, {"gain_db": 6.0}, "peak")
    assert list(v) == [440.0, 6.0, pytest.approx(1 / math.sqrt(2))]


def test_frames_to_samples_matches_numpy_interp():
    frames = torch.tensor(np.random.default_rng(0).standard_normal((2, 5, 3)))
    hop, n = 7, 31
    out = frames_to_samples(frames, hop, n_samples=n).numpy()
    pos = np.arange(n) / hop
    for b in range(2):
        for c in range(3):
            ref = np.interp(pos, np.arange(5), frames[b, :, c].numpy())
            np.testing.assert_allclose(out[b, :, c], ref, atol=1e-12)
    # frames placed elsewhere (a proxy's frames at their last sample): numpy's interp too
    out = frames_to_samples(frames, hop, n_samples=n, first_sample=hop - 1.0).numpy()
    ref = np.interp(np.arange(n), hop - 1.0 + hop * np.arange(5), frames[0, :, 0].numpy())
    np.testing.assert_allclose(out[0, :, 0], ref, atol=1e-12)


# --------------------------------------------------------------------------------------
# Fast IIR
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "torchlpc", "loop"])
def test_sosfilt_matches_scipy(backend):
    n = 2000 if backend != "loop" else 300
    x = torch.tensor(_noise(n, batch=3))
    sos = _stable_sos(3, 3)
    y = iir.sosfilt(x, sos, backend=backend).numpy()
    for b in range(3):
        ref = scipy.signal.sosfilt(sos[b].numpy(), x[b].numpy())
        np.testing.assert_allclose(y[b], ref, atol=1e-10 * np.abs(ref).max())


def _numpy_df1(x, sos_per_sample):
    """Reference: Direct Form I with per-sample coefficients, one section, a plain loop."""
    y = np.zeros_like(x)
    x1 = x2 = y1 = y2 = 0.0
    for n in range(len(x)):
        b0, b1, b2, _, a1, a2 = sos_per_sample[n]
        y[n] = b0 * x[n] + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        x2, x1, y2, y1 = x1, x[n], y1, y[n]
    return y


def test_time_varying_sosfilt_matches_numpy_loop():
    n = 1500
    x = torch.tensor(_noise(n, seed=1, batch=2))
    start, end = _stable_sos(2, 2, seed=3), _stable_sos(2, 2, seed=4)
    w = torch.linspace(0, 1, n, dtype=torch.float64)[None, :, None, None]
    sos = start[:, None] * (1 - w) + end[:, None] * w          # [2, n, 2, 6]
    y = iir.sosfilt(x, sos).numpy()
    for b in range(2):
        ref = x[b].numpy()
        for s in range(2):
            ref = _numpy_df1(ref, sos[b, :, s].numpy())
        np.testing.assert_allclose(y[b], ref, atol=1e-10 * np.abs(ref).max())


def test_iir_gradcheck_float64():
    x = torch.tensor(_noise(40, seed=2, batch=2), requires_grad=True)
    sos = _stable_sos(2, 2, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, s: iir.sosfilt(a, s), (x, sos))
    tv = (_stable_sos(2, 2, seed=6)[:, None].expand(2, 40, 2, 6)
          + 0.01 * torch.randn(2, 40, 2, 6, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, s: iir.sosfilt(a, s), (x, tv))


def test_ballistics_gradcheck_and_loop_reference():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 60, generator=g, dtype=torch.float64).requires_grad_(True)
    ca = (torch.rand(2, 1, generator=g, dtype=torch.float64) * 0.4 + 0.3).requires_grad_(True)
    cr = (torch.rand(2, 60, generator=g, dtype=torch.float64) * 0.1 + 0.85).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: iir.ballistics(a, b, c)[0], (u, ca, cr))
    env, mask = iir.ballistics(u, ca, cr)
    env_ref, mask_ref = iir.ballistics_loop(u, ca, cr)
    torch.testing.assert_close(env, env_ref)
    assert torch.equal(mask, mask_ref) and 0 < int(mask.sum()) < mask.numel()


def test_frequency_sampling_close_to_exact():
    n = 4000
    x = torch.tensor(_noise(n, seed=3, batch=2))
    sos = _stable_sos(2, 2, seed=7)
    exact = iir.sosfilt(x, sos)
    approx = iir.sosfilt_freq_sampling(x, sos)
    assert float((approx - exact).abs().max() / exact.abs().max()) < 1e-6
    hop = 100
    frames = sos[:, None].expand(2, n // hop, 2, 6)
    approx = iir.sosfilt_freq_sampling(x, frames, hop=hop, n_fft=2048)
    assert float((approx - exact).abs().max() / exact.abs().max()) < 1e-6
    # Too short an FIR truncates the ringing: the error must show it.
    short = iir.sosfilt_freq_sampling(x, frames, hop=hop, n_fft=16)
    assert float((short - exact).abs().max() / exact.abs().max()) > 1e-3


# --------------------------------------------------------------------------------------
# Twins
# --------------------------------------------------------------------------------------
# Max abs error of the float32 twin against pedalboard 0.9.26 over 20 random parameter draws
# (uniform in the normalised range) on a 1 s noise signal, relative to the output's peak.
# Biquads differ by float32 rounding of JUCE's coefficients (worst below 50 Hz, where the
# poles sit next to z = 1): measured worst 2.5e-3 (high shelf at 28 Hz), <= 2.5e-4 above
# 100 Hz. Compressor: same algorithm, float32 rounding.
TWIN_TOLERANCE = {"gain": 1e-6, "distortion": 1e-6, "lowpass": 1e-5, "highpass": 1e-5,
                  "compressor": 2e-5, "peak": 4e-3, "lowshelf": 4e-3, "highshelf": 4e-3}


@pytest.mark.parametrize("name", sorted(TWIN_TOLERANCE))
def test_twin_matches_pedalboard(name):
    pb = pytest.importorskip("pedalboard")
    twin = TWINS[name](SR)
    x = _noise(SR, seed=11)[0].astype(np.float32)
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(20):
        nat = denormalise(twin.params, rng.uniform(size=len(twin.params)))
        plugin = getattr(pb, PEDALBOARD_CLASSES[name])(**{p.name: float(v) for p, v in
                                                           zip(twin.params, nat)})
        ref = plugin(x[None], SR)[0]
        out, _ = twin(torch.from_numpy(x)[None], torch.tensor(nat[None], dtype=torch.float32))
        worst = max(worst, float(np.abs(out[0].numpy() - ref).max() / np.abs(ref).max()))
    assert worst < TWIN_TOLERANCE[name]


@pytest.mark.parametrize("name", ["lowpass2", "highpass2"])
def test_second_order_filters_match_scipy_design(name):
    twin = TWINS[name](SR)
    x = torch.tensor(_noise(SR // 4, seed=12))
    for f, q in ((100.0, 0.5), (1000.0, 0.7071), (5000.0, 8.0)):
        y = twin(x, torch.tensor([[f, q]], dtype=torch.float64))[0][0].numpy()
        btype = "lowpass" if name == "lowpass2" else "highpass"
        if q == 0.7071:  # Butterworth: scipy designs the same bilinear filter independently
            b, a = scipy.signal.butter(2, f, btype=btype, fs=SR)
            ref = scipy.signal.lfilter(b, a, x[0].numpy())
            np.testing.assert_allclose(y, ref, atol=1e-4 * np.abs(ref).max())
        # magnitude at the cutoff is q (resonance) for both forms (JUCE/RBJ)
        w, h = scipy.signal.sosfreqz(twin.coefficients(torch.tensor([[f, q]],
                                                                     dtype=torch.float64)).numpy(),
                                     worN=[f], fs=SR)
        assert abs(h[0]) == pytest.approx(q, rel=1e-6)


def test_twin_batch_equals_singles_and_chain_equals_sequence():
    chain = make_chain("peak,compressor,distortion", SR)
    x = torch.tensor(_noise(4000, seed=13, batch=3), dtype=torch.float32)
    u = torch.rand(3, len(chain.params), generator=torch.Generator().manual_seed(1))
    p = denormalise(chain.params, u)
    y, _ = chain(x, p)
    for b in range(3):
        single, _ = chain(x[b : b + 1], p[b : b + 1])
        torch.testing.assert_close(y[b : b + 1], single)
    seq = x
    for stage, chunk in zip(chain.stages(), torch.split(p, [3, 4, 1], -1)):
        seq, _ = stage(seq, chunk)
    torch.testing.assert_close(y, seq)
    assert [q.name for q in chain.params][:4] == ["peak.cutoff_frequency_hz", "peak.gain_db",
                                                  "peak.q", "compressor.threshold_db"]


def _numpy_peak(f, g, q, sr):
    big_a = 10 ** (g / 40)
    w = 2 * np.pi * max(f, 2.0) / sr
    al = np.sin(w) / (2 * q)
    b = np.array([1 + al * big_a, -2 * np.cos(w), 1 - al * big_a])
    a = np.array([1 + al / big_a, -2 * np.cos(w), 1 - al / big_a])
    return np.concatenate([b / a[0], a / a[0]])


def test_per_frame_peak_matches_numpy_reference_loop():
    hop, n_frames = 64, 40
    twin = TWINS["peak"](SR, hop)
    n = hop * n_frames
    x = torch.tensor(_noise(n, seed=14))
    f = np.geomspace(200, 4000, n_frames)
    g = np.linspace(-12, 12, n_frames)
    q = np.full(n_frames, 2.0)
    frames = torch.tensor(np.stack([f, g, q], -1)[None])
    y = twin(x, frames)[0][0].numpy()
    # reference: one section per frame (numpy design), coefficients interpolated per sample
    per_frame = np.stack([_numpy_peak(a, b, 2.0, SR) for a, b in zip(f, g)])
    pos = np.arange(n) / hop
    sos = np.stack([np.interp(pos, np.arange(n_frames), per_frame[:, k]) for k in range(6)], 1)
    ref = _numpy_df1(x[0].numpy(), sos)
    np.testing.assert_allclose(y, ref, atol=1e-9 * np.abs(ref).max())
    # constant frames are the constant filter
    const, _ = twin(x, frames[:, :1].expand(1, n_frames, 3))
    torch.testing.assert_close(const, twin(x, frames[:, 0])[0])


def test_per_frame_compressor_interpolates_its_parameters():
    hop, n_frames = 100, 20
    twin = TWINS["compressor"](SR, hop)
    x = torch.tensor(_noise(hop * n_frames, seed=16, scale=0.5))
    frames = torch.tensor([[-30.0, 4.0, 5.0, 50.0]], dtype=torch.float64).repeat(1, n_frames, 1)
    frames[:, n_frames // 2 :, 0] = -10.0  # threshold step half-way
    y, _ = twin(x, frames)
    per_sample = torch.tensor([-30.0, 4.0, 5.0, 50.0], dtype=torch.float64).repeat(
        x.shape[1], 1)[None]
    pos = torch.arange(x.shape[1], dtype=torch.float64) / hop
    per_sample[0, :, 0] = torch.tensor(np.interp(pos, np.arange(n_frames), frames[0, :, 0]))
    ref, _ = twin._process(x, per_sample, twin.initial_state(1))
    torch.testing.assert_close(y, ref)
    assert not torch.allclose(y, twin(x, frames[:, 0])[0])


def test_compressor_twin_gradcheck_in_params():
    twin = TWINS["compressor"](SR)
    x = torch.tensor(_noise(200, seed=15, scale=0.5))
    p = torch.tensor([[-20.0, 4.0, 2.0, 30.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: twin(x, q)[0], (p,))


def test_make_device_errors_and_fixed_parameters():
    with pytest.raises(DeviceError, match="unknown device 'reverbb'; built-in devices: gain"):
        make_device("reverbb", SR)
    with pytest.raises(DeviceError, match="peak has no parameter 'gian_db'"):
        make_device("peak:gian_db=3", SR)
    with pytest.raises(DeviceError, match="no such device file"):
        make_device("missing.json", SR)
    with pytest.raises(DeviceError, match="no such plugin"):
        make_device("/nowhere/Plugin.vst3", SR)
    with pytest.raises(DeviceError, match="stage of the synthesizer"):
        make_device("reverb", SR)
    chain = make_chain("peak:q=2,compressor", SR)
    assert fixed_params(chain) == {2: 2.0} and len(chain.params) == 7
    assert set(BUILTIN_NAMES) >= set(TWIN_TOLERANCE) | {"lowpass2", "highpass2"}


# --------------------------------------------------------------------------------------
# State: chunks and hops equal the whole signal
# --------------------------------------------------------------------------------------
def _moving_frames(twin, n_frames, seed):
    """Per-frame settings that sweep across each parameter's range."""
    rng = np.random.default_rng(seed)
    u0, u1 = rng.uniform(0.2, 0.8, (2, len(twin.params)))
    w = np.linspace(0, 1, n_frames)[:, None]
    return denormalise(twin.params, torch.tensor((u0 * (1 - w) + u1 * w)[None],
                                                 dtype=torch.float32))


def _chunked(twin, x, params, per_frame, carry: bool):
    hop, n_frames = twin.hop, x.shape[1] // twin.hop
    state, outs = twin.initial_state(1), []
    for a, b in ((0, 1), (1, 7), (7, 30), (30, n_frames)):  # chunks of whole frames
        p = params[:, a : b + 1] if per_frame else params
        y, new_state = twin(x[:, a * hop : b * hop], p, state)
        state = new_state if carry else twin.initial_state(1)
        outs.append(y)
    return torch.cat(outs, 1)


@pytest.mark.parametrize("name", sorted(TWINS))
@pytest.mark.parametrize("per_frame", [False, True])
def test_chunked_equals_whole_signal_for_every_twin(name, per_frame):
    hop, n_frames = 160, 50
    twin = TWINS[name](SR, hop)
    x = torch.tensor(_noise(hop * n_frames, seed=20, scale=0.5), dtype=torch.float32)
    frames = _moving_frames(twin, n_frames + 1, seed=21)
    params = frames if per_frame else frames[:, 0]
    whole, _ = twin(x, params)
    scale = float(whole.abs().max())
    assert scale > 1e-3
    # float32 rounding (the order of a few operations at each join) and nothing more
    assert float((_chunked(twin, x, params, per_frame, True) - whole).abs().max()) <= 1e-4 * scale
    if len(twin.initial_state(1)):  # the state is what makes it so
        restarted = _chunked(twin, x, params, per_frame, False)
        assert float((restarted - whole).abs().max()) > 1e-3 * scale


def test_stream_equals_offline_for_a_chain_with_effects():
    """The synthesizer followed by effect twins, one hop at a time through the chain's step,
    equals the offline rendering of the whole signal (one hop later)."""
    from ddsp_synth.stages.synth import SynthConfig

    chain = make_chain("harmonic,noise,peak,compressor,reverb", SR,
                       synth=SynthConfig(reverb_s=0.05)).eval()
    n = 60
    g = torch.Generator().manual_seed(0)
    f0 = torch.full((1, n, 1), 220.0) * (1 + 0.1 * torch.sin(torch.arange(n) / 5.0))[None, :, None]
    raw = torch.randn(1, n, chain.n_raw, generator=g)
    params = chain.params_from_raw(raw, f0)
    params[..., -7:-4] = torch.tensor([1200.0, 9.0, 1.5])   # a peak that matters
    params[..., -4:] = torch.tensor([-40.0, 6.0, 3.0, 60.0])  # a compressor that acts
    noise = torch.rand(1, n * chain.hop, generator=g) * 2 - 1
    with torch.no_grad():
        ref, _ = chain(None, params, noise=noise)
        step = chain.make_step()
        state, flat, out = step.initial_state(1), torch.cat([params[0], params[0, -1:]]), []
        ones = torch.ones(1, len(chain.labels))
        for t in range(n):
            y, state = step(flat[t : t + 1], flat[t + 1 : t + 2],
                            noise[:, t * chain.hop : (t + 1) * chain.hop], ones, state)
            out.append(y)
    got = torch.cat(out, 1)
    assert not step.exportable  # the recursions run in numba: eager streaming only
    assert float(ref.abs().max()) > 1e-3
    assert float((got - ref).abs().max()) < 2e-5 * max(1.0, float(ref.abs().max()))
