"""Devices: parameters, the fast IIR against scipy, twins against pedalboard, black boxes and
their worker pool (reset, crash, hang), device files.

Worker processes import this module to find the test callables (``_gain_fn``...), so its
module-level imports stay light: torch, the twins and the IIR code are imported by the tests
that use them (a torch import costs a worker seconds on a busy machine).
"""

import json
import math
import os
import sys
import time

import numpy as np
import pytest

from ddsp_synth.effects.blackbox import CallableSpec, PedalboardSpec, load_device_file
from ddsp_synth.effects.devices import BUILTIN_NAMES, make_chain, make_device
from ddsp_synth.effects.params import (DeviceError, Param, denormalise, frames_to_samples,
                                       from_dict, normalise)
from ddsp_synth.effects.pool import DevicePool

torch = None
iir = scipy = TWINS = None


@pytest.fixture(autouse=True)
def _heavy_imports():
    global torch, iir, scipy, TWINS
    import scipy.signal as _signal
    import torch as _torch

    from ddsp_synth.effects import iir as _iir
    from ddsp_synth.effects.twins import TWINS as _twins

    torch, iir, TWINS = _torch, _iir, _twins
    scipy = sys.modules["scipy"]
    assert _signal is scipy.signal

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
    dist = make_device("distortion", SR)
    x = torch.tensor(_noise(SR // 10))
    drive = torch.full((1, 10, 1), 12.0, dtype=torch.float64, requires_grad=True)
    dist.twin(x, drive, hop=SR // 100).pow(2).sum().backward()
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
    out = frames_to_samples(frames, n, hop).numpy()
    pos = np.arange(n) / hop
    for b in range(2):
        for c in range(3):
            ref = np.interp(pos, np.arange(5), frames[b, :, c].numpy())
            np.testing.assert_allclose(out[b, :, c], ref, atol=1e-12)
    with pytest.raises(DeviceError, match="cover"):
        frames_to_samples(frames, 5 * hop + 1, hop)


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
    from ddsp_synth.effects.devices import PEDALBOARD_CLASSES

    twin = TWINS[name](SR)
    x = _noise(SR, seed=11)[0].astype(np.float32)
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(20):
        nat = denormalise(twin.params, rng.uniform(size=len(twin.params)))
        plugin = getattr(pb, PEDALBOARD_CLASSES[name])(**{p.name: float(v) for p, v in
                                                           zip(twin.params, nat)})
        ref = plugin(x[None], SR)[0]
        out = twin(torch.from_numpy(x)[None], torch.tensor(nat[None], dtype=torch.float32))
        worst = max(worst, float(np.abs(out[0].numpy() - ref).max() / np.abs(ref).max()))
    assert worst < TWIN_TOLERANCE[name]


@pytest.mark.parametrize("name", ["lowpass2", "highpass2"])
def test_second_order_filters_match_scipy_design(name):
    twin = TWINS[name](SR)
    x = torch.tensor(_noise(SR // 4, seed=12))
    for f, q in ((100.0, 0.5), (1000.0, 0.7071), (5000.0, 8.0)):
        y = twin(x, torch.tensor([[f, q]], dtype=torch.float64))[0].numpy()
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
    y = chain.twin.forward_normalised(x, u)
    for b in range(3):
        single = chain.twin.forward_normalised(x[b : b + 1], u[b : b + 1])
        torch.testing.assert_close(y[b : b + 1], single)
    seq = x
    for part, chunk in zip(chain.parts, torch.split(u, [3, 4, 1], -1)):
        seq = part.twin.forward_normalised(seq, chunk)
    torch.testing.assert_close(y, seq)
    assert [p.name for p in chain.params][:4] == ["0.peak.cutoff_frequency_hz", "0.peak.gain_db",
                                                  "0.peak.q", "1.compressor.threshold_db"]


def _numpy_peak(f, g, q, sr):
    big_a = 10 ** (g / 40)
    w = 2 * np.pi * max(f, 2.0) / sr
    al = np.sin(w) / (2 * q)
    b = np.array([1 + al * big_a, -2 * np.cos(w), 1 - al * big_a])
    a = np.array([1 + al / big_a, -2 * np.cos(w), 1 - al / big_a])
    return np.concatenate([b / a[0], a / a[0]])


def test_per_frame_peak_matches_numpy_reference_loop():
    twin = TWINS["peak"](SR)
    hop, n_frames = 64, 40
    n = hop * n_frames
    x = torch.tensor(_noise(n, seed=14))
    f = np.geomspace(200, 4000, n_frames)
    g = np.linspace(-12, 12, n_frames)
    q = np.full(n_frames, 2.0)
    frames = torch.tensor(np.stack([f, g, q], -1)[None])
    y = twin(x, frames, hop=hop)[0].numpy()
    # reference: one section per frame (numpy design), coefficients interpolated per sample
    per_frame = np.stack([_numpy_peak(a, b, 2.0, SR) for a, b in zip(f, g)])
    pos = np.arange(n) / hop
    sos = np.stack([np.interp(pos, np.arange(n_frames), per_frame[:, k]) for k in range(6)], 1)
    ref = _numpy_df1(x[0].numpy(), sos)
    np.testing.assert_allclose(y, ref, atol=1e-9 * np.abs(ref).max())
    # constant frames are the constant filter
    const = twin(x, frames[:, :1].expand(1, n_frames, 3), hop=hop)
    torch.testing.assert_close(const, twin(x, frames[:, 0]))


def test_per_frame_compressor_interpolates_its_parameters():
    twin = TWINS["compressor"](SR)
    hop, n_frames = 100, 20
    x = torch.tensor(_noise(hop * n_frames, seed=16, scale=0.5))
    frames = torch.tensor([[-30.0, 4.0, 5.0, 50.0]], dtype=torch.float64).repeat(1, n_frames, 1)
    frames[:, n_frames // 2 :, 0] = -10.0  # threshold step half-way
    y = twin(x, frames, hop=hop)
    per_sample = torch.tensor([-30.0, 4.0, 5.0, 50.0], dtype=torch.float64).repeat(
        x.shape[1], 1)[None]
    pos = torch.arange(x.shape[1], dtype=torch.float64) / hop
    per_sample[0, :, 0] = torch.tensor(np.interp(pos, np.arange(n_frames), frames[0, :, 0]))
    ref = twin._process(x, per_sample)
    torch.testing.assert_close(y, ref)
    assert not torch.allclose(y, twin(x, frames[:, 0]))


def test_compressor_twin_gradcheck_in_params():
    twin = TWINS["compressor"](SR)
    x = torch.tensor(_noise(200, seed=15, scale=0.5))
    p = torch.tensor([[-20.0, 4.0, 2.0, 30.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: twin(x, q), (p,))


# --------------------------------------------------------------------------------------
# Black boxes and the worker pool
# --------------------------------------------------------------------------------------
def _gain_fn(audio, params, sample_rate):
    return audio * 10 ** (params["gain_db"] / 20)


def _crash_fn(audio, params, sample_rate):
    os._exit(3)


def _hang_fn(audio, params, sample_rate):
    time.sleep(120)
    return audio


GAIN_PARAMS = (Param("gain_db", "dB", -24, 24, 0),)


def test_pool_runs_batch_items_in_parallel_workers_like_in_process():
    spec = CallableSpec("pygain", _gain_fn, GAIN_PARAMS)
    x = _noise(1000, seed=16, batch=5).astype(np.float32)
    params = np.array([[-6.0], [0.0], [3.0], [6.0], [12.0]])
    with DevicePool(spec, SR, n_workers=2) as pool:
        y = pool.process(x, params)
        assert pool.calls == 5
    np.testing.assert_allclose(y, x * 10 ** (params / 20), rtol=1e-6)
    local = DevicePool(spec, SR, n_workers=0).process(x, params)
    np.testing.assert_allclose(local, y)


@pytest.mark.parametrize("class_name,params,values", [
    ("Reverb", (Param("room_size", "", 0.0, 1.0, 0.9),), [0.95]),
    ("Compressor", (Param("threshold_db", "dB", -60, 0, -24), Param("ratio", "", 1, 20, 4),
                    Param("attack_ms", "ms", 0.1, 100, 10), Param("release_ms", "ms", 5, 1000,
                                                                    100)),
     [-40.0, 10.0, 1.0, 1000.0]),
])
def test_worker_resets_device_between_calls(class_name, params, values):
    pb = pytest.importorskip("pedalboard")
    burst = np.zeros(SR // 2, np.float32)
    burst[:2000] = 0.8 * np.random.default_rng(0).standard_normal(2000)
    probe = np.zeros(SR // 2, np.float32)
    probe[-1000:] = 0.01  # quiet: a leaking compressor envelope would still attenuate it
    # Control: without a reset the same pedalboard object leaks the first call into the next.
    plugin = getattr(pb, class_name)(**{p.name: v for p, v in zip(params, values)})
    plugin(burst[None], SR, reset=False)
    leaked = plugin(probe[None], SR, reset=False)[0]
    fresh = getattr(pb, class_name)(**{p.name: v for p, v in zip(params, values)})(probe[None],
                                                                                   SR)[0]
    assert np.abs(leaked - fresh).max() > 1e-4
    spec = PedalboardSpec(class_name.lower(), class_name, params)
    with DevicePool(spec, SR, n_workers=1) as pool:
        pool.process(burst, np.array(values))
        y = pool.process(probe, np.array(values))
    np.testing.assert_allclose(y, fresh, atol=1e-7)


def test_crashed_worker_gives_one_line_error_and_pool_recovers():
    with DevicePool(CallableSpec("crasher", _crash_fn, GAIN_PARAMS), SR, n_workers=1) as pool:
        with pytest.raises(DeviceError, match=r"device 'crasher': worker crashed .*exit code 3"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))
    spec = CallableSpec("pygain", _gain_fn, GAIN_PARAMS)
    with DevicePool(spec, SR, n_workers=1) as pool:
        dead = pool._workers[0].process
        dead.kill()  # dies between calls: replaced before the next one
        dead.wait()
        np.testing.assert_allclose(pool.process(np.ones(10, np.float32), np.array([6.0])),
                                   10 ** (6 / 20), rtol=1e-6)
        assert pool._workers[0].process is not dead


def test_hung_worker_times_out_with_clear_error():
    t0 = time.monotonic()
    with DevicePool(CallableSpec("sleeper", _hang_fn, GAIN_PARAMS), SR, n_workers=1,
                    timeout_s=1.0) as pool:
        with pytest.raises(DeviceError, match="'sleeper': worker did not answer within the "
                                              "timeout"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))
        assert pool._workers[0] is None  # killed, replaced on the next call
    assert time.monotonic() - t0 < 30


def test_unpicklable_callable_is_refused():
    spec = CallableSpec("lam", lambda a, p, s: a, GAIN_PARAMS)
    with pytest.raises(DeviceError, match="cannot be sent to a worker process"):
        DevicePool(spec, SR, n_workers=1)
    assert DevicePool(spec, SR, n_workers=0).process(np.ones(4, np.float32),
                                                     np.array([0.0])).sum() == 4


def _write_device_file(tmp_path, command, params=None, name="pygain"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({
        "name": name, "command": command,
        "params": params or [{"name": "gain_db", "unit": "dB", "min": -24, "max": 24,
                              "default": 0}]}))
    return path


GAIN_SCRIPT = ("import sys, soundfile as sf; x, sr = sf.read(sys.argv[1], dtype='float32'); "
               "sf.write(sys.argv[2], x * 10 ** (float(sys.argv[3]) / 20), sr, subtype='FLOAT')")


def test_command_device_from_json_file(tmp_path):
    path = _write_device_file(tmp_path, [sys.executable, "-c", GAIN_SCRIPT, "{input}", "{output}",
                                         "{gain_db:.4f}"])
    device = make_device(str(path), SR)
    assert device.name == "pygain" and device.twin is None
    x = _noise(800, seed=17, batch=2).astype(np.float32)
    with device.pool(n_workers=2) as pool:
        y = pool.process(x, np.array([[6.0], [-6.0]]))
    np.testing.assert_allclose(y, x * 10 ** (np.array([[6.0], [-6.0]]) / 20), rtol=1e-4)


def test_command_device_errors(tmp_path):
    bad = _write_device_file(tmp_path, ["cp", "{input}", "{output}", "{drive}"], name="bad")
    with pytest.raises(DeviceError, match=r"unknown parameter '\{drive\}'"):
        make_device(str(bad), SR)
    noout = _write_device_file(tmp_path, ["cp", "{input}"], name="noout")
    with pytest.raises(DeviceError, match=r"must contain '\{output\}'"):
        load_device_file(noout)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DeviceError, match="not valid JSON"):
        make_device(str(tmp_path / "broken.json"), SR)
    failing = _write_device_file(tmp_path, [sys.executable, "-c",
                                            "import sys; sys.exit('boom: no luck')", "{input}",
                                            "{output}", "{gain_db}"], name="failing")
    with make_device(str(failing), SR).pool(n_workers=1) as pool:
        with pytest.raises(DeviceError, match="'failing': command exited with 1: boom: no luck"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))


@pytest.mark.skipif(not any(os.access(os.path.join(d, "sox"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="sox not installed")
def test_sox_command_device(tmp_path):
    path = _write_device_file(tmp_path, ["sox", "{input}", "{output}", "gain", "{gain_db:.3f}"],
                              name="soxgain")
    x = _noise(1600, seed=18).astype(np.float32) * 0.1
    with make_device(str(path), SR).pool(n_workers=1) as pool:
        y = pool.process(x, np.array([[-6.0]]))
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), atol=2e-4)


def test_make_device_errors():
    with pytest.raises(DeviceError, match="unknown device 'reverbb'; built-in devices: gain"):
        make_device("reverbb", SR)
    with pytest.raises(DeviceError, match="peak has no parameter 'gian_db'"):
        make_device("peak:gian_db=3", SR)
    with pytest.raises(DeviceError, match="no such device file"):
        make_device("missing.json", SR)
    with pytest.raises(DeviceError, match="no such plugin"):
        make_device("/nowhere/Plugin.vst3", SR)
    d = make_chain("peak:q=2,compressor", SR)
    assert d.fixed == {2: 2.0} and len(d.params) == 7
    assert set(BUILTIN_NAMES) >= set(TWIN_TOLERANCE) | {"lowpass2", "highpass2"}


def test_missing_pedalboard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pedalboard", None)
    with pytest.raises(DeviceError, match=r"optional 'effects' extra \(GPL-3.0\)"):
        DevicePool(make_device("peak", SR).spec, SR, n_workers=0)
