"""The decoder: output size from the chain, GRU state carried across calls, z encoder."""

import pytest
import torch

from ddsp_synth.decoder import Decoder, DecoderConfig, ZEncoder
from ddsp_synth.chains import synth_chain
from ddsp_synth.stages.synth import SynthConfig


def _inputs(batch=2, n_frames=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n_frames, 1, generator=g), torch.randn(batch, n_frames, 1, generator=g)


def test_output_size_is_the_chains_raw_controls():
    chain = synth_chain(SynthConfig())
    dec = Decoder(DecoderConfig(hidden=32, mlp_layers=2), chain.n_raw)
    raw, state = dec(*_inputs())
    assert raw.shape == (2, 30, 1 + 100 + 65) and state.shape == (1, 2, 32)
    params = chain.params_from_raw(raw, torch.full((2, 30, 1), 220.0))
    harmonic, noise, reverb = chain.split(params)
    assert harmonic.shape == (2, 30, 2 + 100) and noise.shape == (2, 30, 65)
    assert reverb.shape == (2, 30, 0)


def test_gru_state_continues_across_calls_and_is_causal():
    torch.manual_seed(0)
    dec = Decoder(DecoderConfig(hidden=24, mlp_layers=1), 7).eval()
    f0, loud = _inputs(n_frames=40)
    with torch.no_grad():
        whole, _ = dec(f0, loud)
        first, state = dec(f0[:, :15], loud[:, :15])
        second, _ = dec(f0[:, 15:], loud[:, 15:], state=state)
        torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-6, rtol=0)
        # causal: changing frame 20 leaves frames before it unchanged
        loud2 = loud.clone()
        loud2[:, 20] += 5.0
        changed, _ = dec(f0, loud2)
    assert torch.equal(changed[:, :20], whole[:, :20])
    assert not torch.allclose(changed[:, 20:], whole[:, 20:])


def test_z_decoder_needs_z_and_gradients_reach_every_input():
    cfg = DecoderConfig(hidden=16, mlp_layers=1, z_dims=4)
    dec = Decoder(cfg, 5)
    f0, loud = _inputs(n_frames=10)
    f0.requires_grad_(True)
    loud.requires_grad_(True)
    z = torch.randn(2, 10, 4, requires_grad=True)
    raw, _ = dec(f0, loud, z)
    raw.square().sum().backward()
    assert all(float(t.grad.abs().sum()) > 0 for t in (f0, loud, z))
    with pytest.raises(ValueError, match="needs z"):
        dec(f0, loud)


def test_z_encoder_gives_one_latent_per_frame():
    enc = ZEncoder(DecoderConfig(hidden=16, z_dims=3), 16000, 160)
    z = enc(0.1 * torch.randn(2, 50 * 160), 50)
    assert z.shape == (2, 50, 3) and torch.isfinite(z).all()


def test_whole_sequence_gru_equals_torch_gru_and_passes_gradcheck():
    from ddsp_synth.decoder import _GRUSequence, gru_sequence

    torch.manual_seed(0)
    g64 = torch.nn.GRU(5, 4, batch_first=True).double()
    x = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: _GRUSequence.apply(*a),
        (x, h0, g64.weight_ih_l0, g64.weight_hh_l0, g64.bias_ih_l0, g64.bias_hh_l0))
    gru = torch.nn.GRU(12, 8, batch_first=True)
    x = torch.randn(3, 20, 12, requires_grad=True)
    state = torch.randn(1, 3, 8)
    ref, ref_h = gru(x, state)
    (ref.square().sum() + ref_h.sum()).backward()
    ref_grads = [p.grad.clone() for p in gru.parameters()] + [x.grad.clone()]
    for p in gru.parameters():
        p.grad = None
    x.grad = None
    out, h = gru_sequence(gru, x, state)
    (out.square().sum() + h.sum()).backward()
    grads = [p.grad for p in gru.parameters()] + [x.grad]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # inference keeps torch's GRU (exportable, streaming)
        torch.testing.assert_close(gru_sequence(gru, x)[0], gru(x)[0])
