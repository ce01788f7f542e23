"""Gradient methods: SPSA against autodiff, hybrid, proxies (training, files, accuracy of the
shipped ones against the real devices), CMA-ES, and the method switch."""

import json

import numpy as np
import pytest
import torch

from ddsp_synth.effects.blackbox import CallableSpec
from ddsp_synth.effects.devices import Device, make_chain, make_device
from ddsp_synth.effects.params import DeviceError, Param, denormalise
from ddsp_synth.gradients import (CMAConfig, ProxyConfig, ProxyFileError, ProxyTrainConfig,
                                  SPSAConfig, cma_minimize, device_function, load_proxy,
                                  spsa_gradient, train_proxy)
from ddsp_synth.gradients.proxy import PROXY_CONFIG, PROXY_WEIGHTS, AudioSource, proxies_dir
from ddsp_synth.losses import multi_resolution_stft_loss

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


# --------------------------------------------------------------------------------------
# SPSA
# --------------------------------------------------------------------------------------
def test_spsa_estimate_per_batch_item_agrees_with_autodiff():
    # lowpass2's real device is scipy (no pedalboard needed); its twin gives the exact gradient.
    device = make_chain("lowpass2,gain", SR)
    x = _audio(SR // 2, batch=2)
    u = torch.tensor([[0.6, 0.3, 0.65], [0.3, 0.7, 0.35]])
    target = device.twin.forward_normalised(x, torch.tensor([[0.45, 0.5, 0.5]] * 2)).detach()
    ua = u.clone().requires_grad_(True)
    multi_resolution_stft_loss(device.twin.forward_normalised(x, ua), target).backward()
    with device.pool(n_workers=2) as pool:
        fn = device_function(device, "spsa", pool=pool, spsa=SPSAConfig(epsilon=0.005,
                                                                         n_pairs=150), seed=1)
        us = u.clone().requires_grad_(True)
        y = fn(x, us)
        np.testing.assert_allclose(y.detach().numpy(), device.twin.forward_normalised(x, u)
                                   .detach().numpy(), atol=1e-4)
        multi_resolution_stft_loss(y, target).backward()
        assert fn.calls == 2 + 2 * 2 * 150  # forward + 2 runs per pair and item
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
    device = make_device("lowpass2", SR)
    x = _audio(256).requires_grad_(True)
    u = torch.tensor([[0.5, 0.5]])
    with device.pool(n_workers=0) as pool:
        fn = device_function(device, "spsa", pool=pool)
        fn(x, u).sum().backward()
        assert x.grad is None
        fn = device_function(device, "spsa", pool=pool, spsa=SPSAConfig(input_grad="passthrough"))
        fn(x, u).sum().backward()
        assert torch.equal(x.grad, torch.ones_like(x))


# --------------------------------------------------------------------------------------
# Hybrid and the switch
# --------------------------------------------------------------------------------------
def test_hybrid_is_real_forward_and_twin_backward_without_proxies():
    device = make_chain("lowpass2,highpass2", SR)
    x = _audio(4000, batch=2).requires_grad_(True)
    u = torch.tensor([[0.7, 0.5, 0.2, 0.6], [0.9, 0.3, 0.1, 0.4]], requires_grad=True)
    target = _audio(4000, batch=2, seed=5)
    with device.pool(n_workers=1) as pool:
        fn = device_function(device, "hybrid", pool=pool)
        assert fn.kinds == ["twin", "twin"]
        y = fn(x, u)
        multi_resolution_stft_loss(y, target).backward()
        assert fn.calls == 2  # one real run per item; the backward runs none
        real = pool.process(x.detach().numpy(), denormalise(device.params, u.detach().numpy()))
        np.testing.assert_allclose(y.detach().numpy(), real, atol=1e-6)
    gx, gu = x.grad.clone(), u.grad.clone()
    x.grad = u.grad = None
    multi_resolution_stft_loss(device.twin.forward_normalised(x, u), target).backward()
    # Equal up to float32 rounding of the real (float64 scipy) stage outputs, to which the
    # log-magnitude loss is sensitive where the spectrum is nearly empty.
    for b in range(2):
        assert _cos(gu[b], u.grad[b]) > 0.999 and _cos(gx[b], x.grad[b]) > 0.999
    torch.testing.assert_close(gu, u.grad, rtol=0.05, atol=1e-3)


def _cubic(audio, params, sample_rate):
    return np.tanh(audio * 10 ** (params["drive_db"] / 20)).astype(np.float32)


CUBIC = Device("shaper", SR, (Param("drive_db", "dB", 0.0, 30.0, 10.0),), None,
               CallableSpec("shaper", _cubic, (Param("drive_db", "dB", 0.0, 30.0, 10.0),)))


def test_switch_errors():
    with pytest.raises(DeviceError, match="no PyTorch twin, so no autodiff"):
        device_function(CUBIC, "autodiff")
    with pytest.raises(DeviceError, match="give a pool"):
        device_function(CUBIC, "spsa")
    with pytest.raises(DeviceError, match="unknown method 'adam'"):
        device_function(CUBIC, "adam")
    with pytest.raises(DeviceError, match="cma is gradient-free"):
        device_function(CUBIC, "cma")
    with pytest.raises(DeviceError, match="proxy train"):
        device_function(CUBIC, "proxy", proxy_dirs=[])


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
    x = _audio(800)
    y1 = proxy(x, torch.tensor([[0.5]]))
    y2 = load_proxy(tmp_path / "p")(x, torch.tensor([[0.5]]))
    torch.testing.assert_close(y1, y2)
    with pytest.raises(ProxyFileError, match="exists; pass --force"):
        train_proxy(CUBIC, tmp_path / "p", steps=1, max_minutes=None, progress=False,
                    architecture=TINY, config=cfg, audio_paths=paths, n_workers=0)


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
        (variant("flip", weight_bytes=bytes(flipped)), "checksum does not match"),
        (variant("trunc", json.dumps({**meta, "weights_sha256": None}), weights[:50]),
         "damaged or truncated"),
        (variant("arch", json.dumps({**meta, "weights_sha256": None,
                                     "architecture": {**meta["architecture"], "channels": 9}})),
         "do not match the architecture"),
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
    n = proxy.sample_rate
    x = source.batch(12, n, (-36.0, 0.0), held_out=True, rng=rng)
    u = rng.uniform(size=(12, len(proxy.params)))
    with device.pool(n_workers=1) as pool:
        y = torch.from_numpy(pool.process(x, denormalise(proxy.params, u)))
    from ddsp_synth.gradients.metrics import mr_log_distance

    with torch.no_grad():
        yp = proxy(torch.from_numpy(x), torch.from_numpy(u).float())
        dist = float(mr_log_distance(yp, y).median())
        dry = float(mr_log_distance(torch.from_numpy(x), y).median())
    # The proxy must be much closer to the device than doing nothing, and within reach of
    # what its card states (a different draw of 12 examples).
    assert dist < 0.6 * dry
    assert dist < 2.0 * card["spec_distance_median"] + 0.05


def test_proxy_at_another_sample_rate_is_an_error_not_a_silent_twin(tmp_path):
    from ddsp_synth.gradients import local_models
    from ddsp_synth.gradients.proxy import PROXY_FORMAT, PROXY_FORMAT_VERSION

    folder = tmp_path / "peak"
    folder.mkdir()
    (folder / PROXY_CONFIG).write_text(json.dumps({
        "format": PROXY_FORMAT, "format_version": PROXY_FORMAT_VERSION, "device": "peak",
        "sample_rate": 8000}))
    chain = make_chain("gain,peak", SR)
    with pytest.raises(DeviceError, match="proxy of 'peak' is for 8000 Hz, the audio is 16000"):
        local_models(chain, proxy_dirs=[tmp_path])
    assert [k for k, _ in local_models(chain, proxy_dirs=[])][0] == "twin"
