"""The network: f0 and loudness (and optionally a latent z) -> raw outputs for the chain.

As in DDSP's solo-instrument model: f0 (as MIDI / 127) and loudness (standardised with the
dataset's statistics) each through an MLP, concatenated, a GRU, the GRU output concatenated
with the two MLP outputs again, an MLP, and a linear head with one output per raw control of
the signal chain (:attr:`ddsp_synth.stages.chain.Chain.n_raw`; the chain splits them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import librosa
import numpy as np
import torch
from torch import nn

from .config import ConfigError, check_fields


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes of the decoder (and of the optional z encoder).

    Attributes:
        hidden: width of every MLP layer and of the GRU.
        mlp_layers: layers per MLP (Linear, LayerNorm, LeakyReLU).
        z_dims: size of the latent z from MFCCs; 0 disables the encoder.
        n_mfcc, mfcc_n_fft, mfcc_n_mels: MFCC front end of the z encoder.
    """

    hidden: int = 256
    mlp_layers: int = 3
    z_dims: int = 0
    n_mfcc: int = 30
    mfcc_n_fft: int = 1024
    mfcc_n_mels: int = 128

    def __post_init__(self):
        check_fields(self, ranges={"hidden": (1, 4096), "mlp_layers": (1, 16), "z_dims": (0, 1024),
                                   "n_mfcc": (1, 256), "mfcc_n_fft": (64, 16384),
                                   "mfcc_n_mels": (8, 1024)})
        if self.n_mfcc > self.mfcc_n_mels:
            raise ConfigError(f"n_mfcc ({self.n_mfcc}) must not exceed mfcc_n_mels "
                              f"({self.mfcc_n_mels})")


def mlp(n_in: int, hidden: int, n_layers: int) -> nn.Sequential:
    layers = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.LayerNorm(hidden),
                   nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class ZEncoder(nn.Module):
    """MFCCs of the audio -> LayerNorm -> GRU -> linear: a latent z per frame."""

    def __init__(self, config: DecoderConfig, sample_rate: int, hop: int):
        super().__init__()
        self.hop = hop
        self.n_fft = config.mfcc_n_fft
        mel = librosa.filters.mel(sr=sample_rate, n_fft=config.mfcc_n_fft,
                                  n_mels=config.mfcc_n_mels, fmin=20.0)
        n = config.mfcc_n_mels
        k = np.arange(config.n_mfcc)[:, None]
        dct = np.cos(math.pi / n * (np.arange(n)[None, :] + 0.5) * k) * math.sqrt(2.0 / n)
        dct[0] /= math.sqrt(2.0)
        self.register_buffer("mel", torch.tensor(mel, dtype=torch.float32), persistent=False)
        self.register_buffer("dct", torch.tensor(dct, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(config.mfcc_n_fft), persistent=False)
        self.norm = nn.LayerNorm(config.n_mfcc)
        self.gru = nn.GRU(config.n_mfcc, config.hidden, batch_first=True)
        self.out = nn.Linear(config.hidden, config.z_dims)

    def forward(self, audio: torch.Tensor, n_frames: int) -> torch.Tensor:
        """audio [batch, n_samples] -> z [batch, n_frames, z_dims]."""
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="constant", return_complex=True).abs()[..., :n_frames]
        mfcc = self.dct @ torch.log(self.mel @ spec.square() + 1e-6)  # [B, n_mfcc, T]
        h, _ = self.gru(self.norm(mfcc.transpose(1, 2)))
        return self.out(h)


class _GRUSequence(torch.autograd.Function):
    """A one-layer GRU over a whole sequence (PyTorch's gate equations) whose work outside
    the recurrence is done in whole-sequence matrix products.

    ``torch.nn.GRU`` on the CPU computes the weight gradients frame by frame (two small
    matrix products per frame in backward). Here the input projection, the input and weight
    gradients are single products over all frames; only ``h @ W_hh`` (forward) and
    ``dGH @ W_hh`` (backward) stay per frame, as the recursion demands. Same parameters, same
    results to float rounding (``tests/test_decoder.py``).
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        batch, n_frames, n_in = x.shape
        hidden = w_hh.shape[1]
        # time-major buffers: each frame's slice is contiguous
        x_t = x.transpose(0, 1).reshape(n_frames * batch, n_in)
        gi = torch.addmm(b_ih, x_t, w_ih.t()).view(n_frames, batch, 3 * hidden)
        out = x.new_empty(n_frames, batch, hidden)
        rz_all = x.new_empty(n_frames, batch, 2 * hidden)  # r, z
        n_all = x.new_empty(n_frames, batch, hidden)
        gh = x.new_empty(n_frames, batch, 3 * hidden)  # h @ W_hh^T + b_hh
        h = h0
        w_hh_t = w_hh.t()
        # each frame writes straight into the saved buffers: six kernels per frame
        for t in range(n_frames):
            torch.addmm(b_hh, h, w_hh_t, out=gh[t])
            rz = torch.sigmoid(gi[t, :, : 2 * hidden] + gh[t, :, : 2 * hidden], out=rz_all[t])
            n = torch.tanh(torch.addcmul(gi[t, :, 2 * hidden :], rz[:, :hidden],
                                         gh[t, :, 2 * hidden :]), out=n_all[t])
            h = torch.lerp(n, h, rz[:, hidden:], out=out[t])  # (1 - z) * n + z * h
        ctx.save_for_backward(x_t, h0, w_ih, w_hh, out, rz_all, n_all, gh[:, :, 2 * hidden :])
        ctx.shape = x.shape
        return out.transpose(0, 1), h.clone()

    @staticmethod
    def backward(ctx, d_out, d_h_last):
        x_t, h0, w_ih, w_hh, out, rz, n, gh_n = ctx.saved_tensors
        n_frames, batch, hidden = out.shape
        h_prev = torch.cat([h0[None], out[:-1]], dim=0)
        r, z = rz[..., :hidden], rz[..., hidden:]
        # Gradients of the gate pre-activations per unit of dh, for every frame at once:
        # d(n_pre) = dh (1 - z)(1 - n^2), d(z_pre) = dh (h_prev - n) z (1 - z),
        # d(r_pre) = d(n_pre) gh_n r (1 - r), and through W_hh the n part carries r.
        dn_per_dh = (1.0 - z) * (1.0 - n * n)
        g_hh = torch.cat([dn_per_dh * gh_n * r * (1.0 - r), (h_prev - n) * z * (1.0 - z),
                          dn_per_dh * r], dim=2).view(n_frames, batch, 3, hidden)
        z_c = z.contiguous()
        dhs = x_t.new_empty(n_frames, batch, hidden)  # dL/dh_t, all paths
        d_gh = x_t.new_empty(n_frames, batch, 3, hidden)
        d_out_t = None if d_out is None else d_out.transpose(0, 1)
        dh = d_h_last.clone() if d_h_last is not None else x_t.new_zeros(batch, hidden)
        for t in range(n_frames - 1, -1, -1):
            if d_out_t is not None:
                dh = torch.add(dh, d_out_t[t], out=dhs[t])
            else:
                dhs[t] = dh
            torch.mul(g_hh[t], dh[:, None, :], out=d_gh[t])
            dh = torch.addmm(dh * z_c[t], d_gh[t].view(batch, 3 * hidden), w_hh)
        d_gh2 = d_gh.view(-1, 3 * hidden)
        # the input-side gradient equals the recurrent one except the n part, without r
        d_gi = d_gh.clone()
        torch.mul(dhs, dn_per_dh, out=d_gi[:, :, 2])
        d_gi2 = d_gi.view(-1, 3 * hidden)
        batch_, n_frames_, n_in = ctx.shape
        d_x = (d_gi2 @ w_ih).view(n_frames, batch, n_in).transpose(0, 1)
        d_w_ih = d_gi2.t() @ x_t
        d_w_hh = d_gh2.t() @ h_prev.reshape(-1, hidden)
        return d_x, dh, d_w_ih, d_w_hh, d_gi2.sum(0), d_gh2.sum(0)


def gru_sequence(gru: nn.GRU, x: torch.Tensor,
                 state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru(x, state)`` for a one-layer, batch-first, unidirectional ``nn.GRU``: the
    whole-sequence implementation when training in float32 on the CPU, ``nn.GRU`` otherwise
    (inference, export, autocast, GPUs). x: [batch, n_frames, n_in]; state: [1, batch, H]."""
    fast = (torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and gru.num_layers == 1 and gru.bias
            and gru.batch_first and not gru.bidirectional and x.shape[1] > 0)
    if not fast:
        return gru(x, state)
    h0 = x.new_zeros(x.shape[0], gru.hidden_size) if state is None else state[0]
    out, h = _GRUSequence.apply(x, h0, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0,
                                gru.bias_hh_l0)
    return out, h[None]


class Decoder(nn.Module):
    """f0, loudness (, z) -> ``n_outputs`` raw controls per frame, and optionally more heads.

    Args:
        config: the sizes.
        n_outputs: raw controls of the synthesizer's stages (the main ``head``).
        extra_heads: {name: starting bias [n]}: one more linear head per name on the same
            features (an effect device set per frame), zero weights, so it starts at the
            settings its bias maps to (``effect_heads.NAME``).
    """

    def __init__(self, config: DecoderConfig, n_outputs: int,
                 extra_heads: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.config = config
        h = config.hidden
        self.f0_mlp = mlp(1, h, config.mlp_layers)
        self.loudness_mlp = mlp(1, h, config.mlp_layers)
        n_in = 2 * h
        if config.z_dims:
            self.z_mlp = mlp(config.z_dims, h, config.mlp_layers)
            n_in += h
        self.gru = nn.GRU(n_in, h, batch_first=True)
        self.out_mlp = mlp(h + n_in, h, config.mlp_layers)
        self.n_outputs = n_outputs
        self.head = nn.Linear(h, n_outputs)
        if extra_heads:
            self.effect_heads = nn.ModuleDict()
            for name, bias in extra_heads.items():
                head = nn.Linear(h, bias.numel())
                with torch.no_grad():
                    head.weight.zero_()
                    head.bias.copy_(bias)
                self.effect_heads[name] = head

    def forward(
        self,
        f0_scaled: torch.Tensor,
        loudness_scaled: torch.Tensor,
        z: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw controls.

        Args:
            f0_scaled: [batch, n_frames, 1] MIDI / 127.
            loudness_scaled: [batch, n_frames, 1] standardised loudness.
            z: [batch, n_frames, z_dims] when the config has a z encoder.
            state: [1, batch, hidden] GRU state to continue from (streaming, chunking).

        Returns:
            raw: [batch, n_frames, n_outputs].
            state: [1, batch, hidden] GRU state after the last frame.
        """
        features, state = self.features(f0_scaled, loudness_scaled, z, state)
        return self.head(features), state

    def extra(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """{name: [batch, n_frames, n]} raw outputs of the extra heads."""
        heads = getattr(self, "effect_heads", None)
        return {} if heads is None else {name: head(features) for name, head in heads.items()}

    def features(self, f0_scaled: torch.Tensor, loudness_scaled: torch.Tensor,
                 z: torch.Tensor | None = None, state: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """What every head reads: [batch, n_frames, hidden] (arguments as :meth:`forward`),
        and the GRU state."""
        feats = [self.f0_mlp(f0_scaled), self.loudness_mlp(loudness_scaled)]
        if self.config.z_dims:
            if z is None:
                raise ValueError("this decoder needs z (it was built with z_dims > 0)")
            feats.append(self.z_mlp(z))
        x = torch.cat(feats, dim=-1)
        h, state = gru_sequence(self.gru, x, state)
        return self.out_mlp(torch.cat([h, x], dim=-1)), state
