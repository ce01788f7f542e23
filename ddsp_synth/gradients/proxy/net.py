"""The neural proxy: a TCN conditioned on a device's parameters (FiLM) that imitates it.

The proxy learns ``y = h(x, p)`` from the device's own input/output pairs over random
parameters (Steinmetz et al. 2021, 2022): causal dilated 1-D convolutions over the audio,
each block's features scaled and shifted (FiLM) by an MLP of the normalised parameters, and
an output head that predicts a per-sample gain and an additive term, ``y = x * (1 + g) + r``,
zero-initialised so that an untrained proxy is the identity. Devices that only scale each
sample (a compressor: a slowly varying gain; a waveshaper: a gain that depends on the current
sample) use the gain alone, ``y = x * exp(s)``: silence stays silent, which the log-magnitude
part of the loss and of the accuracy measure are very sensitive to.

Parameters may be constant or per frame (on the frame grid of
:mod:`ddsp_synth.dsp.interpolation`: the FiLM scales and shifts of each frame are
interpolated onto the TCN's own time steps), and a signal may be processed in chunks: the
input history the receptive field needs is the state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...dsp.interpolation import frames_to_samples
from ...stages.base import Stage, check_params, lookahead_frames
from ...stages.params import DeviceError, Param, normalise

OUTPUT_MODES = ("gain_residual", "gain")
MAX_LOG_GAIN = 8.0  # |log gain| bound of the "gain" output: +-70 dB


@dataclass(frozen=True)
class ProxyConfig:
    """Architecture of a proxy TCN.

    Attributes:
        channels: feature channels of every block.
        kernel_size: taps of each dilated convolution.
        dilations: one block per dilation; the receptive field is
            ``1 + (kernel_size - 1) * sum(dilations)`` steps.
        film_hidden: width of the MLP that maps parameters to FiLM scales and shifts.
        output: ``"gain_residual"`` (``y = x * (1 + g) + r``, any device) or ``"gain"``
            (``y = x * exp(s)``: for devices that only scale the signal sample by sample,
            compressors and waveshapers, so silence stays silent and the level is learned in
            the log domain).
        frame_hop: 1 runs the TCN at the sample rate on the waveform. A larger hop (``"gain"``
            output only) runs it on frames of ``frame_hop`` samples, whose peak and RMS levels
            (log) are its input, and interpolates the log gain back to the sample rate, each
            frame's gain placed at its last sample (so a sample sees only frames that have
            ended, up to the one it is in): the compressor's gain is slow, so this is about
            ``frame_hop`` times cheaper and has no audio-rate ripple.
    """

    channels: int = 16
    kernel_size: int = 13
    dilations: tuple[int, ...] = (1, 8, 64, 512)
    film_hidden: int = 64
    output: str = "gain_residual"
    frame_hop: int = 1

    def __post_init__(self):
        for name in ("channels", "kernel_size", "film_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                raise ValueError(f"{name} must be an integer in [1, 4096], got {v!r}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}, got {self.output!r}")
        if isinstance(self.frame_hop, bool) or not isinstance(self.frame_hop, int) \
                or not 1 <= self.frame_hop <= 4096:
            raise ValueError(f"frame_hop must be an integer in [1, 4096], got {self.frame_hop!r}")
        if self.frame_hop > 1 and self.output != "gain":
            raise ValueError("frame_hop > 1 needs output='gain'")
        if not self.dilations or len(self.dilations) > 64 or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 16
                for d in self.dilations):
            raise ValueError(f"dilations must be 1 to 64 integers in [1, 65536], got "
                             f"{self.dilations!r}")

    @property
    def receptive_field(self) -> int:
        """In samples."""
        return (1 + (self.kernel_size - 1) * sum(self.dilations)) * self.frame_hop


class _Block(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, h, scale, shift):
        """h [B, C, T]; scale, shift [B, C] or [B, C, T]."""
        if scale.dim() == 2:
            scale, shift = scale[..., None], shift[..., None]
        z = self.conv(F.pad(h, (self.pad, 0)))
        z = F.leaky_relu(z * scale + shift, 0.2)
        return h + self.mix(z)


class ProxyTCN(nn.Module):
    """``proxy(audio [batch, n], params01, hop) -> [batch, n]``.

    ``params01``: normalised parameters, [batch, P] or per frame [batch, n_frames, P] (frame
    ``t`` at sample ``t * hop``). The start is zero-padded, as a device reset before the call
    sees silence.
    """

    def __init__(self, n_params: int, config: ProxyConfig = ProxyConfig()):
        super().__init__()
        self.n_params = n_params
        self.config = config
        c = config.channels
        self.inp = nn.Conv1d(1 if config.frame_hop == 1 else 2, c, 1)
        self.blocks = nn.ModuleList(_Block(c, config.kernel_size, d) for d in config.dilations)
        self.film = nn.Sequential(nn.Linear(n_params, config.film_hidden), nn.ReLU(),
                                  nn.Linear(config.film_hidden, 2 * c * len(config.dilations)))
        self.out = nn.Conv1d(c, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def history_samples(self) -> int:
        """Input samples before a chunk that its first output needs: a whole number of
        TCN steps covering the receptive field."""
        fh = self.config.frame_hop
        return -(-(self.config.receptive_field - 1) // fh) * fh

    def forward(self, audio: torch.Tensor, params01: torch.Tensor,
                hop: int | None = None) -> torch.Tensor:
        if audio.dim() != 2 or params01.shape[0] != audio.shape[0] \
                or params01.shape[-1] != self.n_params or params01.dim() not in (2, 3):
            raise ValueError(f"proxy expects audio [batch, n] and params [batch, "
                             f"{self.n_params}] or [batch, n_frames, {self.n_params}], got "
                             f"{tuple(audio.shape)} and {tuple(params01.shape)}")
        fh = self.config.frame_hop
        h = self.inp(audio[:, None] if fh == 1 else self._frame_features(audio))
        scale, shift = self._film(params01, h.shape[-1], hop)
        for i, block in enumerate(self.blocks):
            block_scale = scale[:, i] if scale.dim() == 3 else scale[:, i].transpose(1, 2)
            block_shift = shift[:, i] if shift.dim() == 3 else shift[:, i].transpose(1, 2)
            h = block(h, 1.0 + block_scale, block_shift)
        g, r = self.out(h).unbind(1)
        if fh > 1:  # each frame's gain at its last sample
            g = frames_to_samples(g[..., None], fh, n_samples=audio.shape[1],
                                  first_sample=fh - 1.0)[..., 0]
        if self.config.output == "gain":
            return audio * torch.exp(g.clamp(-MAX_LOG_GAIN, MAX_LOG_GAIN))
        return audio * (1.0 + g) + r

    def _film(self, params01, n_steps: int, hop: int | None):
        """FiLM scales and shifts: [B, blocks, C] each, or per TCN step [B, blocks, T, C]."""
        c, n_blocks = self.config.channels, len(self.blocks)
        film = self.film(params01)
        if params01.dim() == 2:
            film = film.view(-1, n_blocks, 2, c)
            return film[:, :, 0], film[:, :, 1]
        fh = self.config.frame_hop
        if hop is None or hop % fh:
            raise ValueError(f"per-frame parameters need a hop that is a multiple of the "
                             f"proxy's frame hop {fh}, got {hop}")
        steps = frames_to_samples(film, hop // fh, n_samples=n_steps)  # [B, T, 2 c blocks]
        steps = steps.view(steps.shape[0], n_steps, n_blocks, 2, c).permute(0, 2, 3, 1, 4)
        return steps[:, :, 0], steps[:, :, 1]

    def _frame_features(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, n] -> [batch, 2, n_frames]: log peak and log RMS level of each frame."""
        hop = self.config.frame_hop
        pad = (-audio.shape[1]) % hop
        frames = F.pad(audio, (0, pad)).reshape(audio.shape[0], -1, hop)
        peak = frames.abs().amax(-1)
        rms = frames.square().mean(-1).clamp_min(1e-20).sqrt()  # sqrt(0) has no gradient
        return torch.log(torch.stack([peak, rms], 1) + 1e-5)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Proxy(Stage):
    """A loaded proxy as a stage: parameters in natural units, chunks joined by the input
    history it carries (a chunk must be a whole number of the TCN's frames).

    Attributes:
        model: the :class:`ProxyTCN` (a submodule: ``state_dict`` and ``.to()`` reach it).
        device_name: the device it imitates.
        meta: everything ``proxy.json`` says (training, accuracy).
    """

    def __init__(self, model: ProxyTCN, device_name: str, sample_rate: int,
                 params: tuple[Param, ...], meta: dict | None = None, hop: int | None = None):
        super().__init__(sample_rate, hop or max(1, sample_rate // 100), params)
        self.model = model
        self.name = self.device_name = device_name
        self.meta = dict(meta or {})

    def initial_state(self, batch: int):
        # no history yet: the first chunk is padded inside the network, as a whole signal is
        return (torch.zeros(batch, 0),)

    def check_frames(self, params: torch.Tensor) -> None:
        """DeviceError (one line) for per-frame parameters [batch, n_frames, P] at a hop
        that is not a whole number of the network's frames (44.1 and 22.05 kHz: a 10 ms
        hop of 441 or 220 samples against frames of 32)."""
        fh = self.model.config.frame_hop
        if params.dim() == 3 and self.hop % fh:
            raise DeviceError(f"the proxy of '{self.device_name}' reads levels on frames of "
                              f"{fh} samples, so per-frame settings need a hop that is a "
                              f"multiple of {fh}; this chain's is {self.hop} at "
                              f"{self.sample_rate} Hz: use settings per clip, another rate "
                              "(16 or 48 kHz) or autodiff")

    def forward(self, audio, params, state=None, **kwargs):
        """The proxy's imitation of the device, and the input history for the next chunk
        (its last receptive field's worth)."""
        check_params(self, params, audio.shape[0])
        self.check_frames(params)
        u = self._frames(normalise(self.params, params.to(audio.dtype)), audio.shape[1])
        if state is None:
            return self.model(audio, u, self.hop), None
        past = state[0].to(audio.dtype)
        x = torch.cat([past, audio], 1)
        lead = 0
        if u.dim() == 3 and past.shape[1]:  # the history's frames hold the chunk's first
            k = -(-past.shape[1] // self.hop)
            u = torch.cat([u[:, :1].expand(-1, k, -1), u], 1)
            lead = k * self.hop - past.shape[1]
            x = torch.cat([x.new_zeros(x.shape[0], lead), x], 1)
        y = self.model(x, u, self.hop)[:, lead + past.shape[1]:]
        keep = min(x.shape[1] - lead, self.model.history_samples)
        return y, (x[:, x.shape[1] - keep:].detach(),)

    def _frames(self, u, n_samples: int):
        if u.dim() == 2:
            return u
        return lookahead_frames(u, -(-n_samples // self.hop), self.name)
