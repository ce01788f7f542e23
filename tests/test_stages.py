"""Stages: the one interface (parameters, raw mapping, forward with state, one-hop steps),
the synthesizer's sources and room, the chain and the chain syntax."""

import numpy as np
import pytest
import scipy.signal
import torch

from ddsp_synth.chains import make_chain, synth_chain
from ddsp_synth.config import ConfigError
from ddsp_synth.dsp.convolution import frequency_sampling_fir
from ddsp_synth.dsp.interpolation import hold_last_frame
from ddsp_synth.dsp.oscillators import harmonic_synthesis
from ddsp_synth.dsp.units import exp_sigmoid
from ddsp_synth.stages.params import DeviceError, Param, denormalise, from_dict, normalise, to_dict
from ddsp_synth.stages.registry import parse_chain, parse_entry
from ddsp_synth.stages.room import Reverb
from ddsp_synth.stages.synth import FilteredNoise, Harmonic, SynthConfig


# ----------------------------------------------------------------------------- parameters
def test_multichannel_params_normalise_round_trip_and_dicts():
    params = (Param("gain_db", "dB", -24, 24, 0), Param("d", "", 0.1, 10, 1, "log", size=3))
    v = torch.tensor([[6.0, 0.2, 1.0, 5.0]])
    u = normalise(params, v)
    assert u.shape == (1, 4)
    np.testing.assert_allclose(u[0, 1:].numpy(), np.log(v[0, 1:].numpy() / 0.1) / np.log(100),
                               rtol=1e-6)
    torch.testing.assert_close(denormalise(params, u), v)
    d = to_dict(params, v[0].numpy())
    assert d == {"gain_db": 6.0, "d": pytest.approx([0.2, 1.0, 5.0])}
    np.testing.assert_allclose(from_dict(params, d), v[0].numpy(), rtol=1e-6)
    with pytest.raises(DeviceError, match="needs 3 values"):
        from_dict(params, {"d": [1.0]})


def test_default_raw_mapping_is_a_sigmoid_onto_each_range():
    stage = make_chain("compressor", 16000).compressor
    raw = torch.tensor([[-30.0, 0.0, 0.0, 30.0]])
    p = stage.params_from_raw(raw)
    assert p[0, 0] == pytest.approx(-60.0, abs=1e-6)          # threshold: bottom of range
    assert p[0, 1] == pytest.approx(np.sqrt(20.0), rel=1e-5)  # ratio: geometric middle
    assert p[0, 3] == pytest.approx(1000.0, rel=1e-5)         # release: top of range


# ----------------------------------------------------------------------------- sources
def test_harmonic_stage_scales_and_synthesises():
    stage = Harmonic(16000, 160, 10)
    amp_raw, dist_raw = torch.randn(2, 5, 1), torch.randn(2, 5, 10)
    f0 = torch.full((2, 5, 1), 300.0)
    params = stage.params_from_raw(torch.cat([amp_raw, dist_raw], dim=-1), f0)
    assert params.shape == (2, 5, 12) and stage.n_params == 12 and stage.n_raw == 11
    torch.testing.assert_close(params[..., 1:2], exp_sigmoid(amp_raw))
    torch.testing.assert_close(params[..., 2:], exp_sigmoid(dist_raw))
    audio, (phase,) = stage(None, hold_last_frame(params))
    ref, _ = harmonic_synthesis(f0, params[..., 1:2], params[..., 2:], 16000, 160)
    torch.testing.assert_close(audio, ref)
    assert audio.shape == (2, 800) and phase.shape == (2, 1)


def test_noise_stage_bias_makes_untrained_output_quiet():
    stage = FilteredNoise(16000, 160, 65)
    mags = stage.params_from_raw(torch.zeros(1, 100, 65))
    np.testing.assert_allclose(mags.numpy(), float(exp_sigmoid(torch.tensor(-5.0))), rtol=1e-6)
    y, _ = stage(None, hold_last_frame(mags), generator=torch.Generator().manual_seed(0))
    assert y.shape == (1, 16000)
    assert 0 < float(y.abs().max()) < 0.01


def test_filtered_noise_matches_reference_and_keeps_tails():
    rng = np.random.default_rng(2)
    stage = FilteredNoise(16000, 64, 33)
    mags = torch.tensor(rng.uniform(0, 1, (1, 10, 33)))
    noise = torch.tensor(rng.uniform(-1, 1, (1, 10 * 64)))
    out, (tail,) = stage(None, hold_last_frame(mags), noise=noise)
    irs = frequency_sampling_fir(mags).numpy()
    ref = np.zeros(10 * 64 + 63)
    for t in range(10):
        seg = scipy.signal.fftconvolve(noise[0, t * 64 : (t + 1) * 64].numpy(), irs[0, t])
        ref[t * 64 : t * 64 + len(seg)] += seg
    assert out.shape == (1, 640)
    np.testing.assert_allclose(torch.cat([out, tail], 1)[0].numpy(), ref, atol=1e-10)


def test_filtered_noise_follows_band_magnitudes_within_1db_over_10s():
    sr, n_bands, hop = 16000, 65, 160
    n_frames = 10 * sr // hop
    f = np.linspace(0, 1, n_bands)
    shape_db = -30 * f + 6 * np.sin(2 * np.pi * 1.5 * f)  # smooth tilt with a ripple
    mags = torch.tensor(10 ** (shape_db / 20), dtype=torch.float32).expand(1, n_frames + 1,
                                                                            n_bands)
    y, _ = FilteredNoise(sr, hop, n_bands)(None, mags.contiguous(),
                                           generator=torch.Generator().manual_seed(0))
    freqs, psd = scipy.signal.welch(y[0].numpy().astype(np.float64), fs=sr, nperseg=1024)
    expected = (10 ** (shape_db / 10)) * (1 / 3) * 2 / sr  # |H|^2 * var(U[-1,1]) one-sided
    err_db = 10 * np.log10(np.interp(f * sr / 2, freqs, psd)[1:-1] / expected[1:-1])
    assert np.max(np.abs(err_db)) < 1.0, err_db


def test_filtered_noise_gradcheck_and_batch():
    stage = FilteredNoise(16000, 4, 5)
    mags = torch.rand(2, 4, 5, dtype=torch.float64, requires_grad=True)
    noise = torch.rand(2, 3 * 4, dtype=torch.float64) * 2 - 1
    assert torch.autograd.gradcheck(lambda m: stage(None, m, noise=noise)[0], (mags,))
    batch, _ = stage(None, mags.detach(), noise=noise)
    for i in range(2):
        single, _ = stage(None, mags.detach()[i : i + 1], noise=noise[i : i + 1])
        np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- room
@pytest.mark.parametrize("param", ["free", "exp_decay"])
def test_reverb_direct_path_wet_mix_and_gradients(param):
    rev = Reverb(16000, 160, 1600, parameterization=param)
    ir = rev.impulse_response()
    assert ir.shape == (1, 1600) and ir[0, 0].item() == 1.0  # direct path
    x = torch.randn(2, 4000)
    out, (tail,) = rev(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert out.shape[1] + tail.shape[1] == 4000 + 1599  # the ring-out is kept in the state
    out.square().sum().backward()
    grads = [p.grad for p in rev.parameters()]
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_reverb_matches_scipy_and_the_chain_mixes_it():
    rng = np.random.default_rng(3)
    chain = synth_chain(SynthConfig(reverb_s=300 / 16000, processors=("noise", "reverb")))
    with torch.no_grad():
        chain.reverb.tail.copy_(torch.tensor(rng.standard_normal((1, 300)), dtype=torch.float32))
    x = torch.tensor(rng.standard_normal((2, 1000)), dtype=torch.float32)
    wet, _ = chain.reverb(x)
    ir = chain.reverb.impulse_response().detach().numpy()[0].astype(np.float64)
    for b in range(2):
        np.testing.assert_allclose(wet[b].detach().numpy(),
                                   scipy.signal.fftconvolve(x[b].numpy(), ir)[:1000], atol=1e-4)
    from ddsp_synth.stages.chain import _combine

    # the mix plays the dry signal at the room's gain over 50 Hz - 8 kHz, each octave
    # counting the same (here from scipy's frequency response on a log grid)
    f_hz = np.geomspace(50.0, 7200.0, 4000)  # 0.45 x 16 kHz
    _, h = scipy.signal.freqz(ir, worN=f_hz, fs=16000)
    g = float(np.sqrt(np.mean(np.abs(h) ** 2)))
    assert abs(chain.reverb.dry_level() / g - 1) < 0.01
    g = chain.reverb.dry_level()
    mixed = _combine(chain.reverb, x, wet, 0.3)
    torch.testing.assert_close(mixed, 0.7 * g * x + 0.3 * wet)
    torch.testing.assert_close(_combine(chain.reverb, x, wet, 0.0), g * x)
    assert _combine(chain.reverb, x, wet, 1.0) is wet


def test_reverb_gradcheck():
    rev = Reverb(8000, 10, 7).double()
    x = torch.randn(2, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: rev(a)[0], (x,))


def test_minimum_phase_room_keeps_the_colour_and_streams_the_same():
    learned = Reverb(16000, 160, 1600, seed=4)
    with torch.no_grad():  # a room much louder than the direct path and mostly over in 25 ms,
        t = torch.arange(1600) / 16000.0  # as the shipped models' trained rooms are
        learned.tail.copy_(torch.randn(1, 1600, generator=torch.Generator().manual_seed(2))
                           * 0.7 * torch.exp(-t / 0.01))
    minimum = Reverb(16000, 160, 1600, seed=4, phase="minimum")
    minimum.load_state_dict(learned.state_dict())
    h, hm = learned.impulse_response().detach(), minimum.impulse_response().detach()
    mag, mag_m = (torch.fft.rfft(v[0], 16384).abs() for v in (h, hm))
    assert float((20 * torch.log10(mag_m / mag)).abs().quantile(0.99)) < 0.05
    # the energy as early as causality allows: more of it by every tap, its centre sooner
    energy, energy_m = h[0].square().cumsum(0), hm[0].square().cumsum(0)
    assert bool((energy_m >= energy - 1e-4 * energy[-1]).all())
    centre, centre_m = (float((v[0].square() * torch.arange(1600)).sum() / v.square().sum())
                        for v in (h, hm))
    assert centre_m < 0.6 * centre, (centre_m, centre)
    minimum.impulse_response().square().sum().backward()
    assert float(minimum.tail.grad.abs().sum()) > 0  # it can be trained this way too
    # the one-hop step plays the same response
    with torch.no_grad():
        x = torch.randn(1, 4000, generator=torch.Generator().manual_seed(1))
        ref, _ = minimum(x)
        step = minimum.make_step()
        state, out = step.initial_state(1), []
        for t in range(0, 4000, 160):
            y, state = step(None, None, state, x[:, t : t + 160], None)
            out.append(y)
    torch.testing.assert_close(torch.cat(out, 1), ref, atol=2e-4, rtol=1e-4)


def test_reverb_rejects_bad_settings():
    with pytest.raises(ValueError, match="phase"):
        Reverb(16000, 160, 100, phase="linear")
    with pytest.raises(ValueError, match="parameterization"):
        Reverb(16000, 160, 100, parameterization="plate")
    with pytest.raises(ValueError, match="ir_samples"):
        Reverb(16000, 160, 1)


# ----------------------------------------------------------------------------- the synth chain
def test_harmonic_plus_noise_end_to_end_is_differentiable():
    cfg = SynthConfig(reverb_s=0.1)
    synth = synth_chain(cfg)
    b, t = 2, 20
    f0 = torch.full((b, t, 1), 220.0)
    raw = [torch.randn(b, t, 1, requires_grad=True),
           torch.randn(b, t, cfg.n_harmonics, requires_grad=True),
           torch.randn(b, t, cfg.n_noise_bands, requires_grad=True)]
    params = synth.params_from_raw(torch.cat(raw, dim=-1), f0)
    audio, _ = synth(None, params, generator=torch.Generator().manual_seed(0))
    assert audio.shape == (b, t * cfg.hop)
    audio.square().mean().backward()
    assert all(r.grad is not None and float(r.grad.abs().sum()) > 0 for r in raw)
    # amounts: harmonic-only and noise-only outputs add up to the mix (reverb is linear)
    p = params.detach()

    def render(**amounts):
        return synth(None, p, amounts=amounts, generator=torch.Generator().manual_seed(1))[0]

    torch.testing.assert_close(render(), render(noise=0.0) + render(harmonic=0.0),
                               atol=1e-6, rtol=1e-5)


def _random_params(chain, n_frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_frames) / 100.0
    f0 = (330.0 * 2 ** (0.3 * torch.sin(2 * torch.pi * 0.7 * t)))[None, :, None]
    f0[:, n_frames // 2 : n_frames // 2 + 20, 0] = torch.linspace(500, 3000, 20)  # Nyquist
    raw = torch.randn(1, n_frames, chain.n_raw, generator=g)
    return chain.params_from_raw(raw, f0)


def _stepped(chain, params, noise, amounts):
    """Render frame by frame with the chain's one-hop step (block t once frame t+1 is known,
    the last frame held), as the streaming engine does."""
    step = chain.make_step()
    flat = torch.cat([params[0], params[0, -1:]])
    state = step.initial_state(1)
    out = []
    for t in range(flat.shape[0] - 1):
        y, state = step(flat[t : t + 1], flat[t + 1 : t + 2],
                        noise[:, t * chain.hop : (t + 1) * chain.hop], amounts, state)
        out.append(y)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("stage", ["harmonic", "noise", "reverb", "all"])
def test_one_hop_step_equals_offline_render(stage):
    chain = synth_chain(SynthConfig(reverb_s=0.3)).eval()
    with torch.no_grad():
        chain.reverb.tail.mul_(50.0)  # a tail loud enough to matter
        n = 120
        params = _random_params(chain, n)
        noise = torch.rand(1, n * chain.hop, generator=torch.Generator().manual_seed(3)) * 2 - 1
        amounts = {"harmonic": 1.0, "noise": 1.0, "reverb": 1.0}
        if stage != "all":  # isolate one stage: the others silent / dry
            amounts = {k: (1.0 if k == stage else 0.0) for k in amounts}
            if stage == "reverb":
                amounts["harmonic"] = 1.0
        ref, _ = chain(None, params, amounts=amounts, noise=noise)
        got = _stepped(chain, params, noise, torch.tensor([[amounts[k] for k in chain.labels]]))
    assert got.shape == ref.shape
    err = float((got - ref).abs().max())
    assert err < 2e-5 * max(1.0, float(ref.abs().max())), err
    assert float(ref.abs().max()) > 1e-3


def test_chunked_state_equals_one_shot_render():
    chain = synth_chain(SynthConfig(reverb_s=0.5)).eval()
    with torch.no_grad():
        chain.reverb.tail.mul_(50.0)
        params = _random_params(chain, 300, seed=1)
        noise = torch.rand(1, 300 * chain.hop, generator=torch.Generator().manual_seed(5)) * 2 - 1
        whole, _ = chain(None, params, noise=noise)
        # chunks shorter than the reverb; the last frame of each waits for the next chunk
        state, parts, done = chain.initial_state(1), [], 0
        for t0 in range(0, 300, 37):
            final = t0 + 37 >= 300
            n_out = (min(300, t0 + 37) - t0 - (0 if final else 1) + (1 if t0 else 0)) * chain.hop
            y, state = chain(None, params[:, t0 : t0 + 37], state, final=final,
                             noise=noise[:, done : done + n_out])
            done += y.shape[1]
            parts.append(y)
    chunked = torch.cat(parts, dim=1)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=2e-5, rtol=0)


def test_synth_config_is_data_and_rejects_bad_lists():
    dry = synth_chain(SynthConfig(processors=("harmonic", "noise")))
    assert dry.labels == ["harmonic", "noise"] and not hasattr(dry, "reverb")
    assert dry.n_raw == 1 + 100 + 65 and dry.n_params == 2 + 100 + 65
    with pytest.raises(ConfigError, match="must be one of harmonic, noise, reverb"):
        SynthConfig(processors=("harmonic", "plate"))
    with pytest.raises(ConfigError, match="distinct"):
        SynthConfig(processors=("harmonic", "harmonic"))
    with pytest.raises(ConfigError, match="start with a source"):
        SynthConfig(processors=("reverb", "harmonic"))


# ----------------------------------------------------------------------------- chain syntax
def test_chain_syntax_names_fixed_parameters_and_methods():
    entries = parse_chain("harmonic,noise,peak:q=0.7,compressor@spsa,reverb")
    assert [e.name for e in entries] == ["harmonic", "noise", "peak", "compressor", "reverb"]
    assert entries[2].fixed == {"q": 0.7} and entries[3].method == "spsa"
    assert entries[0].method is None
    e = parse_entry("dir:x/fx.json:gain_db=3@hybrid")
    assert (e.name, e.fixed, e.method) == ("dir:x/fx.json", {"gain_db": 3.0}, "hybrid")
    assert parse_chain(["peak", "gain"])[1].name == "gain"
    for bad, message in (("peak@fast", "unknown method 'fast'"), ("peak:q", "name:param=value"),
                         ("peak:q=x", "must be a number"), ("peak,,gain", "comma-separated"),
                         ("peak:q=inf", "finite")):
        with pytest.raises(DeviceError, match=message):
            parse_chain(bad)


def test_a_chain_of_synth_stages_and_effects_is_one_chain():
    chain = make_chain("harmonic,noise,peak:q=0.7,compressor,reverb", 16000,
                       synth=SynthConfig(reverb_s=0.05))
    assert chain.labels == ["harmonic", "noise", "peak", "compressor", "reverb"]
    assert chain.kind == "source"
    f0 = torch.full((1, 11, 1), 220.0)
    raw = torch.zeros(1, 11, chain.n_raw)
    params = chain.params_from_raw(raw, f0)
    assert params.shape[-1] == chain.n_params == 2 + 100 + 65 + 3 + 4
    audio, _ = chain(None, params, generator=torch.Generator().manual_seed(0))
    assert audio.shape == (1, 11 * 160) and bool(torch.isfinite(audio).all())


@pytest.mark.parametrize("sr", [16000, 22050])
def test_a_chain_of_effects_refuses_too_few_parameter_frames_instead_of_cutting_the_audio(sr):
    """One frame per 10 ms for 1 s at 22.05 kHz is 100 frames for 101 blocks of 220
    samples: the chain returned 22000 samples of the 22050 (and half of them for half the
    frames), though it returns as many samples as it is given."""
    from ddsp_synth.errors import InputError

    chain = make_chain("peak,compressor,gain", sr)
    x = torch.randn(2, sr)
    blocks = -(-sr // chain.hop)
    for frames in (blocks, blocks + 1):
        params = chain.default_params(batch=2)[:, None].repeat(1, frames, 1)
        assert chain(x, params)[0].shape == x.shape
    for frames in (blocks - 1, blocks // 2):
        params = chain.default_params(batch=2)[:, None].repeat(1, frames, 1)
        with pytest.raises(InputError, match=f"{frames} parameter frames for {sr} samples "
                                             f"\\({blocks} blocks"):
            chain(x, params)
