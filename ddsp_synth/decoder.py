"""The network: f0 and loudness (and optionally a latent z) -> raw outputs for the chain.

As in DDSP's solo-instrument model: f0 (as MIDI / 127) and loudness (standardised with the
dataset's statistics) each through an MLP, concatenated, a GRU, the GRU output concatenated
with the two MLP outputs again, an MLP, and a linear head with one output per raw control of
the signal chain (:attr:`ddsp_synth.processors.ProcessorChain.n_raw`; the chain splits them).
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


class Decoder(nn.Module):
    """f0, loudness (, z) -> ``n_outputs`` raw controls per frame."""

    def __init__(self, config: DecoderConfig, n_outputs: int):
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
        feats = [self.f0_mlp(f0_scaled), self.loudness_mlp(loudness_scaled)]
        if self.config.z_dims:
            if z is None:
                raise ValueError("this decoder needs z (it was built with z_dims > 0)")
            feats.append(self.z_mlp(z))
        x = torch.cat(feats, dim=-1)
        h, state = self.gru(x, state)
        return self.head(self.out_mlp(torch.cat([h, x], dim=-1))), state
