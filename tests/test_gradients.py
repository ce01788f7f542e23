"""Gradient methods as stages: SPSA against autodiff (per item and per frame), hybrid,
proxies (training, files, accuracy of the shipped ones against the real devices, per-frame
parameters and carried history), CMA-ES, and the method switch."""

import json

import numpy as np
import pytest
import torch

from ddsp_synth.blackbox.specs import CallableSpec
from ddsp_synth.chains import make_chain
from ddsp_synth.dsp.spectral import mr_log_distance
from ddsp_synth.gradients.cma_search import CMAConfig, cma_minimize
from ddsp_synth.gradients.methods import device_stage, local_model, real_stage
from ddsp_synth.gradients.proxy.files import (PROXY_CONFIG, PROXY_FILES, PROXY_WEIGHTS,
                                              ProxyFileError, load_proxy, proxies_dir)
from ddsp_synth.gradients.proxy.net import ProxyConfig
from ddsp_synth.gradients.proxy.source import AudioSource
from ddsp_synth.gradients.proxy.train import ProxyTrainConfig, train_proxy
from ddsp_synth.gradients.spsa import SPSAConfig, spsa_gradient
from ddsp_synth.losses import multi_resolution_stft_loss
from ddsp_synth.stages.params import DeviceError, Param, denormalise
from ddsp_synth.stages.registry import Device, make_device

SR = 16000


def _audio(n, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    tone = sum(np.sin(2 * np.pi * k * 220 * t) / k for k in range(1, 20))
    env = 0.2 + 0.8 * (np.sin(2 * np.pi * 2 * t) > 0)
    x = 0.2 * tone * env + 0.02 * rng.standard_normal((batch, n))
    return torch.tensor(x, dtype=torch.float32)


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0))


def _natural(chain, u):
    return denormalise(chain.params, u)


# --------------------------------------------------------------------------------------
# SPSA
# --------------------------------------------------------------------------------------
def test_spsa_estimate_per_batch_item_agrees_with_autodiff():
    # lowpass2's real device is scipy (no pedalboard needed); its twin gives the exact gradient.
    twins = make_chain("lowpass2,gain", SR)
    spsa = make_chain("lowpass2,gain", SR, method="spsa", n_workers=2,
                      spsa=SPSAConfig(epsilon=0.005, n_pairs=150), seed=1)
    assert spsa.labels == ["lowpass2+gain"]  # consecutive real devices: one stage
    x = _audio(SR // 2, batch=2)
    u = torch.tensor([[0.6, 0.3, 0.65], [0.3, 0.7, 0.35]])
    target = twins(x, _natural(twins, torch.tensor([[0.45, 0.5, 0.5]] * 2)))[0].detach()
    ua = u.clone().requires_grad_(True)
    multi_resolution_stft_loss(twins(x, _natural(twins, ua))[0], target).backward()
    us = u.clone().requires_grad_(True)
    with spsa:
        y, _ = spsa(x, _natural(spsa, us))
        np.testing.assert_allclose(y.detach().numpy(),
                                   twins(x, _natural(twins, u))[0].detach().numpy(), atol=1e-4)
        multi_resolution_stft_loss(y, target).backward()
        assert spsa.stages()[0].calls == 2 + 2 * 2 * 150  # forward + 2 runs per pair and item
    for b in range(2):  # each item's estimate follows its own gradient
        assert _cos(us.grad[b], ua.grad[b]) > 0.9
    assert _cos(ua.grad[0], ua.grad[1]) < 0.5  # the items' gradients differ


def test_spsa_gradient_of_a_loss_is_unbiased_even_at_the_bounds():
    w = np.array([1.0, -2.0, 0.5, 3.0])
    center = np.array([0.2, 0.9, 0.5, 0.0])

    def loss(points):
        return ((points - center) ** 2 * w ** 2).sum(1) + (points * w).sum(1)

    u = np.array([0.5, 0.5, 0.0, 1.0])  # two coordinates pinned at a bound
    exact = 2 * (u - center) * w ** 2 + w
    rng = np.random.default_rng(0)
    est = np.mean([spsa_gradient(loss, u, SPSAConfig(epsilon=0.01, n_pairs=4), rng)[0]
                   for _ in range(300)], 0)
    assert np.dot(est, exact) / np.linalg.norm(est) / np.linalg.norm(exact) > 0.99
    np.testing.assert_allclose(est, exact, rtol=0.15, atol=0.3)


def test_spsa_input_gradient_modes():
    x = _audio(256).requires_grad_(True)
    for mode, expected in (("none", None), ("passthrough", torch.ones_like(x))):
        stage = device_stage([make_device("lowpass2", SR)], "spsa", 160, n_workers=0,
                             spsa=SPSAConfig(input_grad=mode))
        x.grad = None
        p = torch.tensor([[1000.0, 0.7]], requires_grad=True)
        stage(x, p)[0].sum().backward()
        assert (x.grad is None) if expected is None else torch.equal(x.grad, expected)


def test_devices_before_an_spsa_device_still_get_their_gradient():
    """``peak, gain@spsa`` at 0 dB: the straight-through input gradient is exact there, so
    the peak's gradient is the all-twin chain's (it was zero: nothing crossed the SPSA
    device, and a controller never trained an EQ placed before a black box)."""
    x = _audio(4000, batch=2)
    grads = []
    for text in ("peak,gain", "peak,gain@spsa"):
        chain = make_chain(text, SR, n_workers=0)
        try:
            params = chain.default_params(batch=2)
            params[:, 1] = 6.0  # the peak's gain
            params.requires_grad_(True)
            y, _ = chain(x, params)
            (y - 0.5 * x).square().mean().backward()
            grads.append(params.grad[:, :3])
        finally:
            chain.close()
    assert grads[0].abs().min() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-7)


# --------------------------------------------------------------------------------------
# Per-frame parameters through every method
# --------------------------------------------------------------------------------------
def _per_frame_problem():
    """A gain automation curve: the target is louder in its second half."""
    x = _audio(SR // 2, batch=1)
    n_frames = x.shape[1] // 160
    target_db = torch.where(torch.arange(n_frames + 1) < n_frames // 2, -6.0, 6.0)
    return x, target_db[None, :, None], n_frames


@pytest.mark.parametrize("method", ["autodiff", "spsa", "hybrid", "proxy"])
def test_per_frame_parameters_through_every_method(method):
    """An automation curve (one gain per 10 ms frame) through each method: the forward is
    the per-frame device, and the gradient of each frame agrees in sign with autodiff's where
    autodiff's is clearly non-zero."""
    x, target_db, n_frames = _per_frame_problem()
    twins = make_chain("lowpass2,gain", SR)
    chain = make_chain("lowpass2,gain", SR, method=method, n_workers=1,
                       spsa=SPSAConfig(epsilon=0.01, n_pairs=400), seed=3)
    lowpass = torch.tensor([3000.0, 0.7]).expand(1, n_frames + 1, 2)
    target, _ = twins(x, torch.cat([lowpass, target_db], -1))
    start = torch.cat([lowpass, torch.zeros(1, n_frames + 1, 1)], -1)

    def grad_of(c):
        p = start.clone().requires_grad_(True)
        y, _ = c(x, p)
        (y - target.detach()).square().sum().backward()
        return y.detach(), p.grad[0, :, 2]

    with chain:
        y_ref, g_ref = grad_of(twins)
        y, g = grad_of(chain)
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), atol=2e-4)  # the same automation
    strong = g_ref.abs() > 0.2 * g_ref.abs().max()
    agree = (torch.sign(g[strong]) == torch.sign(g_ref[strong])).float().mean()
    assert agree >= (0.85 if method == "spsa" else 1.0), (method, float(agree))
    if method in ("autodiff", "hybrid", "proxy"):  # exact here: both devices have twins
        torch.testing.assert_close(g, g_ref, rtol=1e-3, atol=1e-4)


def test_twin_gradcheck_with_per_frame_parameters():
    stage = device_stage([make_device("peak", SR)], "autodiff", 20).double()
    x = _audio(100).double()
    p = torch.tensor([[1000.0, 6.0, 1.0]], dtype=torch.float64).expand(1, 6, 3).clone()
    p[:, :, 1] = torch.linspace(-6, 6, 6)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: stage(x, q)[0], (p,))


# --------------------------------------------------------------------------------------
# Hybrid and the switch
# --------------------------------------------------------------------------------------
def test_hybrid_is_real_forward_and_twin_backward_without_proxies():
    twins = make_chain("lowpass2,highpass2", SR)
    hybrid = make_chain("lowpass2,highpass2", SR, method="hybrid", n_workers=1)
    stage = hybrid.stages()[0]
    assert stage.kinds == ["twin", "twin"]
    x = _audio(4000, batch=2).requires_grad_(True)
    u = torch.tensor([[0.7, 0.5, 0.2, 0.6], [0.9, 0.3, 0.1, 0.4]], requires_grad=True)
    target = _audio(4000, batch=2, seed=5)
    with hybrid:
        y, _ = hybrid(x, _natural(hybrid, u))
        multi_resolution_stft_loss(y, target).backward()
        assert stage.calls == 2  # one real run per item; the backward runs none
        real = stage.real.run(x.detach().numpy(),
                              denormalise(hybrid.params, u.detach().numpy()))
        np.testing.assert_allclose(y.detach().numpy(), real, atol=1e-6)
    gx, gu = x.grad.clone(), u.grad.clone()
    x.grad = u.grad = None
    multi_resolution_stft_loss(twins(x, _natural(twins, u))[0], target).backward()
    # Equal up to float32 rounding of the real (float64 scipy) stage outputs, to which the
    # log-magnitude loss is sensitive where the spectrum is nearly empty.
    for b in range(2):
        assert _cos(gu[b], u.grad[b]) > 0.999 and _cos(gx[b], x.grad[b]) > 0.999
    torch.testing.assert_close(gu, u.grad, rtol=0.05, atol=1e-3)


def _cubic(audio, params, sample_rate):
    return np.tanh(audio * 10 ** (params["drive_db"] / 20)).astype(np.float32)


DRIVE = (Param("drive_db", "dB", 0.0, 30.0, 10.0),)
CUBIC = Device("shaper", SR, DRIVE, None, CallableSpec("shaper", _cubic, DRIVE))


def test_switch_errors():
    with pytest.raises(DeviceError, match="no PyTorch twin, so no autodiff"):
        device_stage([CUBIC], "autodiff", 160)
    with pytest.raises(DeviceError, match="unknown method 'adam'"):
        device_stage([CUBIC], "adam", 160)
    with pytest.raises(DeviceError, match="proxy train"):
        device_stage([CUBIC], "proxy", 160, proxy_dirs=[])
    with pytest.raises(DeviceError, match="synthesizer's stages take no fixed parameters and "
                                          "only autodiff"):
        make_chain("reverb@spsa", SR)


def test_cma_finds_the_minimum_of_a_bounded_quadratic():
    center = np.array([0.2, 0.8, 0.55])
    u, best, evals = cma_minimize(lambda p: ((p - center) ** 2).sum(1), np.full(3, 0.5),
                                  CMAConfig(sigma0=0.3), max_evals=1500, seed=0)
    np.testing.assert_allclose(u, center, atol=1e-3)
    assert best < 1e-5 and 1500 <= evals < 1500 + 2000  # restarts use the budget


# --------------------------------------------------------------------------------------
# Proxies
# --------------------------------------------------------------------------------------
TINY = ProxyConfig(channels=8, kernel_size=3, dilations=(1, 2), film_hidden=16, output="gain")


def test_train_proxy_learns_and_round_trips(tmp_path):
    cfg = ProxyTrainConfig(segment_seconds=0.1, batch_size=4, learning_rate=1e-2,
                           held_out_examples=8, held_out_seconds=0.25)
    paths = []  # synthetic tones: runs without the shared data
    untrained = train_proxy(CUBIC, tmp_path / "p0", steps=1, max_minutes=None, progress=False,
                            architecture=TINY, config=cfg, audio_paths=paths, n_workers=0)
    result = train_proxy(CUBIC, tmp_path / "p", steps=150, max_minutes=None, progress=False,
                         architecture=TINY, config=cfg, audio_paths=paths, n_workers=0)
    assert result["steps"] == 150
    acc, acc0 = result["accuracy"], untrained["accuracy"]
    assert acc["spec_distance_median"] < 0.5 * acc0["spec_distance_median"]
    assert acc["snr_db_median"] > acc0["snr_db_median"] + 6
    proxy = load_proxy(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / PROXY_CONFIG).read_text())
    assert meta["device"] == "shaper" and meta["accuracy"] == acc
    assert meta["training"]["steps"] == 150 and (tmp_path / "p" / "MODEL_CARD.md").exists()
    x, p = _audio(800), torch.tensor([[15.0]])
    torch.testing.assert_close(proxy(x, p)[0], load_proxy(tmp_path / "p")(x, p)[0])
    for existing in (PROXY_CONFIG, "MODEL_CARD.md"):  # neither is replaced without --force
        (tmp_path / "q").mkdir(exist_ok=True)
        (tmp_path / "q" / existing).write_text("mine")
        with pytest.raises(ProxyFileError, match="exists; pass --force"):
            train_proxy(CUBIC, tmp_path / "q", steps=1, max_minutes=None, progress=False,
                        architecture=TINY, config=cfg, audio_paths=paths, n_workers=0)
        assert (tmp_path / "q" / existing).read_text() == "mine"
        (tmp_path / "q" / existing).unlink()
    with pytest.raises(DeviceError, match="without fixed parameters"):
        train_proxy("peak:q=2", tmp_path / "r", steps=1, max_minutes=None, progress=False)


def test_damaged_proxy_files_give_one_line_errors(tmp_path):
    cfg = ProxyTrainConfig(segment_seconds=0.05, batch_size=2, held_out_examples=2,
                           held_out_seconds=0.05)
    train_proxy(CUBIC, tmp_path / "p", steps=1, max_minutes=None, progress=False,
                architecture=TINY, config=cfg, audio_paths=[], n_workers=0)
    weights = (tmp_path / "p" / PROXY_WEIGHTS).read_bytes()
    meta = json.loads((tmp_path / "p" / PROXY_CONFIG).read_text())

    def variant(name, json_text=None, weight_bytes=None):
        d = tmp_path / name
        d.mkdir()
        (d / PROXY_CONFIG).write_text(json_text if json_text is not None else json.dumps(meta))
        (d / PROXY_WEIGHTS).write_bytes(weight_bytes if weight_bytes is not None else weights)
        return d

    flipped = bytearray(weights)
    flipped[-5] ^= 0xFF
    cases = [
        (variant("json", json_text="{oops"), "damaged JSON"),
        (variant("version", json.dumps({**meta, "format_version": 99})), "version 99"),
        (variant("flip", weight_bytes=bytes(flipped)), "do not match the checksum"),
        (variant("trunc", json.dumps({**meta, "weights_sha256": None}), weights[:50]),
         "damaged or truncated"),
        (variant("arch", json.dumps({**meta, "weights_sha256": None,
                                     "architecture": {**meta["architecture"], "channels": 9}})),
         "has shape"),
        (variant("huge", json.dumps({**meta, "architecture": {**meta["architecture"],
                                                              "channels": 4000,
                                                              "dilations": [1] * 60}})),
         "exceeds"),
        (tmp_path / "nowhere", "no such proxy folder"),
    ]
    for path, message in cases:
        with pytest.raises(ProxyFileError, match=message):
            load_proxy(path)


SHIPPED = ("compressor", "distortion")


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_proxy_accuracy_on_held_out_params(name):
    pytest.importorskip("pedalboard")
    folder = proxies_dir() / name
    if not (folder / PROXY_CONFIG).exists():
        pytest.skip(f"no shipped proxy for {name}")
    proxy = load_proxy(folder)
    card = proxy.meta["accuracy"]
    device = make_device(name, proxy.sample_rate)
    source = AudioSource(proxy.sample_rate, seed=99)  # shared data if present, else synthetic
    rng = np.random.default_rng(2024)  # parameters never seen in training or on the card
    x = source.batch(12, proxy.sample_rate, (-36.0, 0.0), held_out=True, rng=rng)
    p = denormalise(proxy.params, rng.uniform(size=(12, len(proxy.params))))
    with real_stage([device], 160, n_workers=1) as real:
        y = torch.from_numpy(real.run(x, p))
    with torch.no_grad():
        yp, _ = proxy(torch.from_numpy(x), torch.from_numpy(p).float())
        dist = float(mr_log_distance(yp, y).median())
        dry = float(mr_log_distance(torch.from_numpy(x), y).median())
    # The proxy must be much closer to the device than doing nothing, and within reach of
    # what its card states (a different draw of 12 examples).
    assert dist < 0.6 * dry
    assert dist < 2.0 * card["spec_distance_median"] + 0.05


def test_proxy_carries_its_history_across_chunks():
    from ddsp_synth.gradients.proxy.net import Proxy, ProxyTCN

    torch.manual_seed(0)
    model = ProxyTCN(1, ProxyConfig(channels=4, kernel_size=3, dilations=(1, 4), film_hidden=8,
                                    output="gain", frame_hop=32))
    torch.nn.init.normal_(model.out.weight, std=0.3)  # not the identity it starts as
    proxy = Proxy(model.eval(), "shaper", SR, DRIVE, hop=160)
    x, p = _audio(4800), torch.tensor([[12.0]])
    with torch.no_grad():
        whole, _ = proxy(x, p)
        state, parts = proxy.initial_state(1), []
        for a, b in ((0, 160), (160, 1600), (1600, 4800)):  # whole frames of the TCN
            y, state = proxy(x[:, a:b], p, state)
            parts.append(y)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-6, rtol=1e-5)


def test_per_frame_settings_through_a_proxy_at_a_hop_off_its_frames_are_one_line():
    """At 22.05 kHz the 10 ms hop is 220 samples, not a whole number of a gain proxy's
    32-sample frames: per-frame settings were a plain ValueError from inside the network
    (for hybrid, in the backward pass, after the real device had run). Per clip they work."""
    from ddsp_synth.gradients.proxy.net import Proxy, ProxyTCN

    model = ProxyTCN(1, ProxyConfig(channels=4, kernel_size=3, dilations=(1, 4), film_hidden=8,
                                    output="gain", frame_hop=32))
    proxy = Proxy(model.eval(), "shaper", 22050, DRIVE, hop=220)
    x = torch.randn(1, 2200)
    assert proxy(x, torch.tensor([[12.0]]))[0].shape == x.shape
    with pytest.raises(DeviceError, match=r"per-frame settings need a hop that is a multiple "
                                          r"of 32; this chain's is 220 at 22050 Hz"):
        proxy(x, torch.full((1, 11, 1), 12.0))


def test_proxy_at_another_sample_rate_is_an_error_not_a_silent_twin(tmp_path):
    folder = tmp_path / "peak"
    folder.mkdir()
    (folder / PROXY_CONFIG).write_text(json.dumps({
        "format": PROXY_FILES.tag, "format_version": PROXY_FILES.version, "device": "peak",
        "sample_rate": 8000}))
    with pytest.raises(DeviceError, match="proxy of 'peak' is for 8000 Hz, the audio is 16000"):
        local_model(make_device("peak", SR), 160, proxy_dirs=[tmp_path])
    assert local_model(make_device("peak", SR), 160, proxy_dirs=[])[0] == "twin"


def test_shipped_proxy_gradients_are_finite_through_digital_silence():
    """A clip with exact zeros (a pause, a zero-padded window) has frames of RMS 0, where
    sqrt has no derivative: the proxy's gradients must stay finite there (a controller's
    training skipped every step before)."""
    chain = make_chain("peak,compressor", 16000, method="proxy")
    x = torch.randn(2, 16000) * 0.1
    x[:, 4000:12000] = 0.0
    x.requires_grad_(True)
    p = chain.default_params(batch=2).requires_grad_(True)
    y, _ = chain(x, p)
    mr_log_distance(y, torch.randn(2, 16000) * 0.05).mean().backward()
    assert torch.isfinite(p.grad).all() and torch.isfinite(x.grad).all()
    assert p.grad.abs().sum() > 0
    chain.close()


def test_a_shipped_proxy_loads_by_name_and_training_audio_may_be_a_folder(tmp_path):
    """``load_proxy("compressor")`` as ``load_model("violin")``; ``proxy train --audio DIR``
    as ``prepare DIR`` (a folder was 'not a regular file')."""
    from ddsp_synth.gradients.proxy.files import load_proxy, proxies_dir

    if not (proxies_dir() / "compressor" / PROXY_CONFIG).is_file():
        pytest.skip("no shipped compressor proxy")
    assert load_proxy("compressor").device_name == "compressor"
    sub = tmp_path / "takes" / "a"
    sub.mkdir(parents=True)
    import soundfile as sf

    sf.write(sub / "one.wav", _audio(SR * 2)[0].numpy(), SR)
    source = AudioSource(SR, [tmp_path / "takes"])
    assert source.paths == [str(sub / "one.wav")] and len(source.train[0]) > 0
