"""Processors: modules that turn network outputs into controls and controls into audio.

Each processor has ``get_controls(raw network outputs) -> dict`` (scaling, no parameters
needed by the network) and ``get_signal(**controls) -> audio``; ``forward`` chains them.
The DSP itself lives in :mod:`ddsp_synth.core`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import core


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the harmonic-plus-noise synthesizer.

    Attributes:
        sample_rate: audio sample rate in Hz.
        hop: samples per control frame (frame rate = sample_rate / hop).
        n_harmonics: oscillators in the harmonic bank.
        n_noise_bands: band magnitudes of the filtered noise (FIR of 2*(n-1) taps).
        noise_bias: added to the raw noise magnitudes before scaling, so an untrained network
            starts quiet (DDSP's -5).
        reverb_s: impulse-response length in seconds.
        reverb_parameterization: ``"free"`` (every tap learned) or ``"exp_decay"`` (gain and
            decay time learned over a fixed noise excitation).
        reverb_seed: seed of the fixed noise used to initialise / excite the reverb.
    """

    sample_rate: int = 16000
    hop: int = 160
    n_harmonics: int = 100
    n_noise_bands: int = 65
    noise_bias: float = -5.0
    reverb_s: float = 1.0
    reverb_parameterization: str = "free"
    reverb_seed: int = 0

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop

    @property
    def reverb_samples(self) -> int:
        return int(round(self.reverb_s * self.sample_rate))


class Harmonic(nn.Module):
    """Harmonic oscillator bank with DDSP's amplitude scaling."""

    def __init__(self, sample_rate: int, hop: int, n_harmonics: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.hop = hop
        self.n_harmonics = n_harmonics

    def get_controls(
        self, amplitude_raw: torch.Tensor, distribution_raw: torch.Tensor, f0_hz: torch.Tensor
    ) -> dict:
        """Scale raw outputs.

        Args:
            amplitude_raw: [batch, n_frames, 1] raw total amplitude.
            distribution_raw: [batch, n_frames, n_harmonics] raw harmonic weights.
            f0_hz: [batch, n_frames, 1] fundamental in Hz (passed through).

        Returns:
            dict with ``f0_hz``, ``amplitude`` [B,T,1] and ``harmonic_distribution`` [B,T,K],
            both positive via :func:`core.exp_sigmoid`.
        """
        return {
            "f0_hz": f0_hz,
            "amplitude": core.exp_sigmoid(amplitude_raw),
            "harmonic_distribution": core.exp_sigmoid(distribution_raw),
        }

    def get_signal(
        self,
        f0_hz: torch.Tensor,
        amplitude: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        initial_phase: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [batch, n_frames * hop] and the final phase [batch, 1] (float64)."""
        return core.harmonic_synthesis(
            f0_hz, amplitude, harmonic_distribution, self.sample_rate, self.hop, initial_phase
        )

    def forward(self, amplitude_raw, distribution_raw, f0_hz):
        return self.get_signal(**self.get_controls(amplitude_raw, distribution_raw, f0_hz))[0]


class FilteredNoise(nn.Module):
    """White noise through a per-frame linear-phase FIR (see :func:`core.filtered_noise`)."""

    def __init__(self, hop: int, n_bands: int, initial_bias: float = -5.0):
        super().__init__()
        self.hop = hop
        self.n_bands = n_bands
        self.initial_bias = initial_bias

    def get_controls(self, magnitudes_raw: torch.Tensor) -> dict:
        """magnitudes_raw: [batch, n_frames, n_bands] -> {"magnitudes": positive [B,T,bands]}."""
        return {"magnitudes": core.exp_sigmoid(magnitudes_raw + self.initial_bias)}

    def get_signal(
        self,
        magnitudes: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_tail: bool = False,
    ) -> torch.Tensor:
        """Audio [batch, n_frames * hop] (plus the filter tail with ``return_tail``)."""
        return core.filtered_noise(magnitudes, self.hop, noise, generator, return_tail)

    def forward(self, magnitudes_raw, generator=None):
        return self.get_signal(**self.get_controls(magnitudes_raw), generator=generator)


class Reverb(nn.Module):
    """Learned room: the dry signal plus a trainable impulse-response tail.

    The full response is ``delta + tail``: tap 0 is the direct path (fixed at 1, as in DDSP,
    so the network cannot hide level in the reverb) and the learned tail starts at tap 1.
    ``mix`` in ``get_signal`` scales the tail: ``out = dry + mix * (dry * tail)``, which is
    :func:`core.reverb` with wet/dry ``mix`` applied to the full response. By default the
    output is cropped to the input length (training targets continue in the next window);
    ``keep_tail=True`` returns the ``ir_size - 1`` extra samples of ring-out.
    """

    def __init__(
        self,
        sample_rate: int,
        ir_samples: int,
        parameterization: str = "free",
        seed: int = 0,
        trainable: bool = True,
    ):
        super().__init__()
        if parameterization not in ("free", "exp_decay"):
            raise ValueError(
                f"parameterization must be 'free' or 'exp_decay', got {parameterization!r}"
            )
        if ir_samples < 2:
            raise ValueError(f"ir_samples must be at least 2, got {ir_samples}")
        self.sample_rate = sample_rate
        self.parameterization = parameterization
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, ir_samples, generator=gen)
        noise[:, 0] = 0.0
        if parameterization == "free":
            # Start as a quiet, short exponential room; every tap is then free to learn.
            t = torch.arange(ir_samples) / sample_rate
            init = 1e-3 * noise * torch.exp(-t / 0.1)
            self.tail = nn.Parameter(init, requires_grad=trainable)
        else:
            self.register_buffer("noise", noise)
            self.log_gain = nn.Parameter(torch.tensor(-7.0), requires_grad=trainable)
            self.log_decay_s = nn.Parameter(torch.tensor(-2.3), requires_grad=trainable)

    def get_controls(self) -> dict:
        """{"ir": [1, ir_samples]} the full response, direct path included."""
        if self.parameterization == "free":
            tail = self.tail
        else:
            tail = core.exp_decay_ir(
                self.noise, torch.exp(self.log_gain), torch.exp(self.log_decay_s), self.sample_rate
            )
        # Tap 0 is the direct path: force it to exactly 1, whatever the parameter holds.
        mask = torch.ones_like(tail)
        mask[:, 0] = 0.0
        delta = torch.zeros_like(tail)
        delta[:, 0] = 1.0
        return {"ir": delta + tail * mask}

    def get_signal(
        self, audio: torch.Tensor, ir: torch.Tensor, mix: float | torch.Tensor = 1.0,
        keep_tail: bool = False,
    ) -> torch.Tensor:
        return core.reverb(audio, ir, mix, keep_tail)

    def forward(self, audio, mix=1.0, keep_tail=False):
        return self.get_signal(audio, **self.get_controls(), mix=mix, keep_tail=keep_tail)


class HarmonicPlusNoise(nn.Module):
    """The DDSP synthesizer: harmonic bank + filtered noise, then the learned reverb."""

    def __init__(self, config: SynthConfig = SynthConfig()):
        super().__init__()
        self.config = config
        self.harmonic = Harmonic(config.sample_rate, config.hop, config.n_harmonics)
        self.noise = FilteredNoise(config.hop, config.n_noise_bands, config.noise_bias)
        self.reverb = Reverb(
            config.sample_rate, config.reverb_samples, config.reverb_parameterization,
            config.reverb_seed,
        )

    def get_controls(
        self,
        f0_hz: torch.Tensor,
        amplitude_raw: torch.Tensor,
        distribution_raw: torch.Tensor,
        noise_raw: torch.Tensor,
    ) -> dict:
        """Scale raw network outputs into synth controls.

        Args:
            f0_hz: [batch, n_frames, 1].
            amplitude_raw: [batch, n_frames, 1].
            distribution_raw: [batch, n_frames, n_harmonics].
            noise_raw: [batch, n_frames, n_noise_bands].

        Returns:
            dict with ``f0_hz``, ``amplitude``, ``harmonic_distribution``, ``magnitudes``.
        """
        controls = self.harmonic.get_controls(amplitude_raw, distribution_raw, f0_hz)
        controls.update(self.noise.get_controls(noise_raw))
        return controls

    def get_signal(
        self,
        f0_hz: torch.Tensor,
        amplitude: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        magnitudes: torch.Tensor,
        harmonic_gain: float = 1.0,
        noise_gain: float = 1.0,
        reverb_mix: float = 1.0,
        generator: torch.Generator | None = None,
        keep_tail: bool = False,
    ) -> torch.Tensor:
        """Audio [batch, n_frames * hop] (longer by the reverb tail with ``keep_tail``)."""
        harmonic, _ = self.harmonic.get_signal(f0_hz, amplitude, harmonic_distribution)
        noise = self.noise.get_signal(magnitudes, generator=generator)
        dry = harmonic_gain * harmonic + noise_gain * noise
        return self.reverb(dry, mix=reverb_mix, keep_tail=keep_tail)

    def forward(self, f0_hz, amplitude_raw, distribution_raw, noise_raw, generator=None):
        controls = self.get_controls(f0_hz, amplitude_raw, distribution_raw, noise_raw)
        return self.get_signal(**controls, generator=generator)
