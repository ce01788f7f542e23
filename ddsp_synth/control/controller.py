"""The controller: an audio encoder and a head that predict an effect chain's settings.

``raw = controller(audio, reference)`` gives the chain's raw parameters, once per clip
``[batch, n_raw]`` or per frame ``[batch, 1 + n_samples // hop, n_raw]`` (an automation
curve on the chain's 10 ms frame grid); :meth:`Controller.natural` maps them into each
declared range (the chains' own mapping: a sigmoid, log ranges geometrically) and puts the
fixed parameters (``peak:q=0.7``) at their values.

One encoder serves the input and the reference (DeepAFx-ST's shared encoder). Its learned
features and the log-mel frames themselves (absolute levels and spectral balance, which an
EQ and a gain are set from) are pooled over time. A per-clip head sees the input's pooled
vector and the reference's; a per-frame head sees, at every frame, the input's features and
log-mel frame there, plus both pooled vectors (the clip's context and the style). The last layer starts near zero with its bias at the neutral settings, so an
untrained controller does (almost) nothing to the tone.

The level (``config.level_match``, with a reference and a ``gain`` device in the chain): the
last such gain starts from the level difference of the reference and the input, measured
on the pooled log-mel (:func:`level_db`), and the head only corrects it (in the gain's raw
units: a head output at its start leaves the gain at that difference exactly). A level that
spans +-25 dB is otherwise learned slowly from scratch: the seed's controllers, trained
without it, set their gain at about 0.4x the level difference after 200-300 steps, and a
level match alone (no EQ, no compressor) beat them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..stages.params import Param, expand, n_values, normalise, params_from_raw
from ..stages.twins import default_hop
from .config import ControllerConfig
from .encoder import DB_SCALE, Encoder, active_frames, pool, pool_mel

# settings that leave the sound (almost) unchanged, where the device's default does not
# (device name, parameter name) -> natural value. The compressor starts at ratio 1 (with
# INIT_MARGIN: 1.06) under a threshold of -30 dB, not 0 dB: a threshold above the signal
# leaves both its gradients at zero, and the controllers of the seed's experiment never left
# it (median threshold -0.3 dB, ratio 1.04 after training, where the style data's
# compressors span -40..0 dB and 1..8). At ratio 1 the ratio's gradient is alive wherever
# the signal passes -30 dB, and the threshold's comes alive as the ratio grows.
NEUTRAL = {("compressor", "threshold_db"): -30.0, ("compressor", "ratio"): 1.0,
           ("distortion", "drive_db"): 0.0}
# the initial settings are kept this far inside each range (a sigmoid at 0 or 1 is flat)
INIT_MARGIN = 0.02
INIT_SCALE = 0.1  # of the last layer's default initialisation


def level_db(ltas: torch.Tensor) -> torch.Tensor:
    """[..., n_mels] long-term average log-mel spectrum (:func:`pool_mel`'s first half) ->
    [...] its total power in dB (the bands' powers summed)."""
    k = DB_SCALE / 10.0 * math.log(10.0)  # log-mel units -> natural log of power
    return 10.0 / math.log(10.0) * torch.logsumexp(k * ltas, -1)


def level_index(declared: tuple[Param, ...], fixed: dict[int, float],
                devices: list[str] | None) -> int | None:
    """The value index of the chain's last free output-gain level (the ``gain_db`` of a
    ``gain`` device; ``devices[i]`` is the device of ``declared[i]``), or None. Parameter
    names alone cannot tell (a chain run as one black box names every parameter
    ``lowshelf+...+gain.NAME``)."""
    if devices is None:
        return None
    found, i = None, 0
    for p, device in zip(declared, devices):
        for j in range(p.size):
            if device == "gain" and p.name.split(".")[-1] == "gain_db" and i + j not in fixed:
                found = i + j
        i += p.size
    return found


def neutral_values(declared: tuple[Param, ...], devices: list[str]) -> list[float]:
    """The starting setting of every declared parameter: neutral where known, else the
    default. ``devices[i]`` is the device name of ``declared[i]``."""
    out = []
    for p, device in zip(declared, devices):
        out += [NEUTRAL.get((device, p.name.split(".")[-1]), p.default)] * p.size
    return out


class Controller(nn.Module):
    """Predicts a chain's parameters from an input recording (and a reference).

    Args:
        config: :class:`ControllerConfig`.
        declared: the chain's parameters at ``config.sample_rate`` (natural units).
        fixed: {index into the parameter values: natural value} held fixed.
        start: [n_values] natural values the untrained controller predicts (default: the
            declared defaults).
        devices: the device name of each declared parameter (:func:`.devices.declared_params`
            and a controller file's chain give them): where the level path finds the output
            gain; without them there is no level path.
    """

    def __init__(self, config: ControllerConfig, declared: tuple[Param, ...],
                 fixed: dict[int, float] | None = None, start: list[float] | None = None,
                 devices: list[str] | None = None):
        super().__init__()
        self.config = config
        self.declared = tuple(declared)
        self.fixed = {int(k): float(v) for k, v in (fixed or {}).items()}
        self.hop = default_hop(config.sample_rate)
        self.n_raw = n_values(self.declared)
        c = config.channels + config.n_mels  # learned features and log-mel frames
        self.encoder = Encoder(config, self.hop)
        n_in = 2 * c + (2 * c if config.reference else 0) + (c if config.per_frame else 0)
        h = config.hidden
        self.head = nn.Sequential(nn.Linear(n_in, h), nn.GELU(), nn.Linear(h, h), nn.GELU(),
                                  nn.Linear(h, self.n_raw))
        self._init_output(start)
        self.level_index = level_index(self.declared, self.fixed, devices) \
            if config.level_match and config.reference else None

    def _init_output(self, start) -> None:
        last = self.head[-1]
        with torch.no_grad():
            last.weight.mul_(INIT_SCALE)
            values = torch.from_numpy(np.array(  # a CPU tensor, even on the meta device
                start if start is not None else
                [p.default for p in self.declared for _ in range(p.size)], np.float64))
            u = normalise(self.declared, values).clamp(INIT_MARGIN, 1 - INIT_MARGIN)
            last.bias.copy_(torch.log(u / (1 - u)).float())

    @property
    def per_frame(self) -> bool:
        return self.config.per_frame

    @staticmethod
    def _pooled(features: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        mask = active_frames(mel)
        return torch.cat([pool(features, mask), pool_mel(mel, mask)], -1)

    def _ltas(self, pooled: torch.Tensor) -> torch.Tensor:
        c = self.config.channels
        return pooled[..., 2 * c : 2 * c + self.config.n_mels]

    def level_offset(self, pooled: torch.Tensor, reference_embedding: torch.Tensor
                     ) -> torch.Tensor:
        """[batch] raw-unit offset of the output gain that sets it to the level difference
        (reference - input, dB) when the head's own output is at the gain's default."""
        p = expand(self.declared)[self.level_index]
        diff = (level_db(self._ltas(reference_embedding)) - level_db(self._ltas(pooled)))
        lo, hi = INIT_MARGIN, 1.0 - INIT_MARGIN
        u = p.to_normalised(p.default + diff.detach()).clamp(lo, hi)
        u0 = min(max(float(p.to_normalised(p.default)), lo), hi)
        return torch.log(u / (1.0 - u)) - math.log(u0 / (1.0 - u0))

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, n_samples] -> [batch, 2 * (channels + n_mels)]: a recording as one vector
        (over its active frames: the learned features' mean and deviation, the long-term
        average spectrum and the mean log-mel)."""
        return self._pooled(*self.encoder(audio))

    def forward(self, audio: torch.Tensor, reference: torch.Tensor | None = None,
                reference_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """Raw parameters of the chain.

        Args:
            audio: [batch, n_samples] the input, at ``config.sample_rate``.
            reference: [batch, m_samples] the reference (if the controller takes one), or
                its :meth:`embed` as ``reference_embedding``.

        Returns:
            [batch, n_raw], or per frame [batch, 1 + n_samples // hop, n_raw].
        """
        features, mel = self.encoder(audio)  # [B, C, T], [B, M, T]
        parts = [self._pooled(features, mel)]
        if self.config.reference:
            if reference_embedding is None:
                if reference is None:
                    raise ValueError("this controller needs a reference")
                reference_embedding = self.embed(reference)
            parts.append(reference_embedding)
        context = torch.cat(parts, -1)  # [B, 2 (C + M)], with a reference 4 (C + M)
        if not self.config.per_frame:
            raw = self.head(context)
        else:
            frames = torch.cat([features, mel], 1).transpose(1, 2)  # [B, T, C + M]
            raw = self.head(torch.cat([frames, context[:, None].expand(
                -1, frames.shape[1], -1)], -1))
        if self.level_index is None:
            return raw
        offset = torch.zeros(raw.shape[-1], dtype=raw.dtype, device=raw.device)
        offset = offset.index_fill(0, torch.tensor([self.level_index], device=raw.device), 1.0)
        shift = self.level_offset(parts[0], reference_embedding)  # [B]
        return raw + (shift[:, None, None] if raw.dim() == 3 else shift[:, None]) * offset

    def natural(self, raw: torch.Tensor) -> torch.Tensor:
        """[..., n_raw] -> [..., n_values] natural units, fixed parameters at their values."""
        values = params_from_raw(self.declared, raw)
        if not self.fixed:
            return values
        index = torch.tensor(sorted(self.fixed), dtype=torch.long)
        fixed = torch.tensor([self.fixed[i] for i in sorted(self.fixed)], dtype=values.dtype)
        return values.index_copy(-1, index, fixed.expand(*values.shape[:-1], -1).contiguous())

    def predict(self, audio: torch.Tensor, reference: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Natural settings ([batch, n_values] or per frame [batch, n_frames, n_values])."""
        return self.natural(self(audio, reference))

    def n_weights(self) -> int:
        return sum(p.numel() for p in self.parameters())
