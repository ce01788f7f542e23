"""Processors: get_controls / get_signal contracts and the full synth."""

import numpy as np
import pytest
import torch

from ddsp_synth import core
from ddsp_synth.processors import FilteredNoise, Harmonic, ProcessorChain, Reverb, SynthConfig


def test_harmonic_processor_scales_and_synthesises():
    proc = Harmonic(16000, 160, 10)
    amp_raw, dist_raw = torch.randn(2, 5, 1), torch.randn(2, 5, 10)
    f0 = torch.full((2, 5, 1), 300.0)
    ctrl = proc.get_controls(torch.cat([amp_raw, dist_raw], dim=-1), f0)
    torch.testing.assert_close(ctrl["amplitude"], core.exp_sigmoid(amp_raw))
    torch.testing.assert_close(ctrl["harmonic_distribution"], core.exp_sigmoid(dist_raw))
    audio, (phase,) = proc.get_signal({k: core.hold_last_frame(v) for k, v in ctrl.items()})
    ref, ref_phase = core.harmonic_synthesis(f0, ctrl["amplitude"], ctrl["harmonic_distribution"],
                                             16000, 160)
    torch.testing.assert_close(audio, ref)
    assert audio.shape == (2, 800) and phase.shape == (2, 1)


def test_noise_processor_bias_makes_untrained_output_quiet():
    proc = FilteredNoise(160, 65)
    ctrl = proc.get_controls(torch.zeros(1, 100, 65), None)
    np.testing.assert_allclose(ctrl["magnitudes"].numpy(), float(core.exp_sigmoid(torch.tensor(-5.0))),
                               rtol=1e-6)
    y, _ = proc.get_signal({"magnitudes": core.hold_last_frame(ctrl["magnitudes"])},
                           generator=torch.Generator().manual_seed(0))
    assert y.shape == (1, 16000)
    assert 0 < float(y.abs().max()) < 0.01


@pytest.mark.parametrize("param", ["free", "exp_decay"])
def test_reverb_processor_direct_path_and_gradients(param):
    rev = Reverb(16000, 1600, parameterization=param)
    ir = rev.impulse_response()
    assert ir.shape == (1, 1600)
    assert ir[0, 0].item() == 1.0  # direct path
    x = torch.randn(2, 4000)
    torch.testing.assert_close(rev.get_signal({}, None, x, amount=0.0)[0], x)
    out, (tail,) = rev.get_signal({}, None, x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert out.shape[1] + tail.shape[1] == 4000 + 1599  # the ring-out is kept in the state
    out.square().sum().backward()
    grads = [p.grad for p in rev.parameters()]
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_reverb_rejects_bad_settings():
    with pytest.raises(ValueError, match="parameterization"):
        Reverb(16000, 100, parameterization="plate")
    with pytest.raises(ValueError, match="ir_samples"):
        Reverb(16000, 1)


def test_harmonic_plus_noise_end_to_end_is_differentiable():
    cfg = SynthConfig(reverb_s=0.1)
    synth = ProcessorChain(cfg)
    b, t = 2, 20
    f0 = torch.full((b, t, 1), 220.0)
    raw = [torch.randn(b, t, 1, requires_grad=True), torch.randn(b, t, cfg.n_harmonics, requires_grad=True),
           torch.randn(b, t, cfg.n_noise_bands, requires_grad=True)]
    audio = synth(f0, torch.cat(raw, dim=-1), generator=torch.Generator().manual_seed(0))
    assert audio.shape == (b, t * cfg.hop)
    audio.square().mean().backward()
    assert all(r.grad is not None and float(r.grad.abs().sum()) > 0 for r in raw)
    # gains: harmonic-only and noise-only outputs add up to the mix (reverb is linear)
    ctrl = synth.get_controls(torch.cat([r.detach() for r in raw], dim=-1), f0)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    both = synth.get_signal(ctrl, generator=gen())[0]
    h = synth.get_signal(ctrl, amounts={"noise": 0.0}, generator=gen())[0]
    n = synth.get_signal(ctrl, amounts={"harmonic": 0.0}, generator=gen())[0]
    torch.testing.assert_close(both, h + n, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------
# The one-hop (exportable) variant of each stage equals its offline rendering.
# --------------------------------------------------------------------------------------
def _random_controls(chain, n_frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_frames) / 100.0
    f0 = (330.0 * 2 ** (0.3 * torch.sin(2 * torch.pi * 0.7 * t)))[None, :, None]
    f0[:, n_frames // 2 : n_frames // 2 + 20, 0] = torch.linspace(500, 3000, 20)  # Nyquist crossings
    raw = torch.randn(1, n_frames, chain.n_raw, generator=g)
    return chain.get_controls(raw, f0)


def _stepped(chain, controls, noise, amounts):
    """Render frame by frame with the chain's one-hop step (block t once frame t+1 is known,
    the last frame held), as the streaming engine does."""
    step = chain.make_step()
    flat = chain.flatten_controls(controls)[0]
    flat = torch.cat([flat, flat[-1:]])
    state = step.initial_state(1)
    hop = chain.config.hop
    out = []
    for t in range(flat.shape[0] - 1):
        y, state = step(flat[t : t + 1], flat[t + 1 : t + 2], noise[:, t * hop : (t + 1) * hop],
                        amounts, state)
        out.append(y)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("stage", ["harmonic", "noise", "reverb", "all"])
def test_one_hop_step_equals_offline_render(stage):
    cfg = SynthConfig(reverb_s=0.3)
    chain = ProcessorChain(cfg).eval()
    with torch.no_grad():
        chain.reverb.tail.mul_(50.0)  # a tail loud enough to matter
        n = 120
        controls = _random_controls(chain, n)
        noise = torch.rand(1, n * cfg.hop, generator=torch.Generator().manual_seed(3)) * 2 - 1
        amounts = {"harmonic": 1.0, "noise": 1.0, "reverb": 1.0}
        if stage != "all":  # isolate one stage: the others silent / dry
            amounts = {k: (1.0 if k == stage else 0.0) for k in amounts}
            if stage == "reverb":
                amounts["harmonic"] = 1.0
        ref, _ = chain.get_signal(controls, amounts=amounts, noise=noise)
        got = _stepped(chain, controls, noise, torch.tensor([[amounts[k] for k in chain.names]]))
    assert got.shape == ref.shape
    err = float((got - ref).abs().max())
    assert err < 2e-5 * max(1.0, float(ref.abs().max())), err
    assert float(ref.abs().max()) > 1e-3


def test_chunked_state_equals_one_shot_render():
    cfg = SynthConfig(reverb_s=0.5)
    chain = ProcessorChain(cfg).eval()
    with torch.no_grad():
        chain.reverb.tail.mul_(50.0)
        controls = _random_controls(chain, 300, seed=1)
        noise = torch.rand(1, 300 * cfg.hop, generator=torch.Generator().manual_seed(5)) * 2 - 1
        whole, _ = chain.get_signal(controls, noise=noise)
        # chunks shorter than the reverb; the last frame of each waits for the next chunk
        state, parts, done = None, [], 0
        for t0 in range(0, 300, 37):
            c = {k: v[:, t0 : t0 + 37] for k, v in controls.items()}
            final = t0 + 37 >= 300
            n_out = (min(300, t0 + 37) - t0 - (0 if final else 1) + (1 if t0 else 0)) * cfg.hop
            y, state = chain.get_signal(c, state, final=final,
                                        noise=noise[:, done : done + n_out])
            done += y.shape[1]
            parts.append(y)
    chunked = torch.cat(parts, dim=1)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=2e-5, rtol=0)


def test_chain_is_data_and_rejects_bad_lists():
    dry = ProcessorChain(SynthConfig(processors=("harmonic", "noise")))
    assert dry.names == ("harmonic", "noise") and not hasattr(dry, "reverb")
    assert dry.n_raw == 1 + 100 + 65
    with pytest.raises(ValueError, match="must be one of harmonic, noise, reverb"):
        ProcessorChain(SynthConfig(processors=("harmonic", "plate")))
    with pytest.raises(ValueError, match="distinct names"):
        ProcessorChain(SynthConfig(processors=("harmonic", "harmonic")))
    with pytest.raises(ValueError, match="start with a source"):
        ProcessorChain(SynthConfig(processors=("reverb", "harmonic")))
