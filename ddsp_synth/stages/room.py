"""The learned room: the dry signal plus a trainable impulse-response tail.

Offline, the response is applied by FFT convolution with the ring-out carried in the state;
the one-hop step applies the same response by uniformly partitioned convolution
(:func:`~ddsp_synth.dsp.convolution.partitioned_convolution_step`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..dsp.convolution import (exp_decay_ir, fft_convolve, minimum_phase, partition_kernel,
                               partitioned_convolution_step, real_dft_matrices)
from .base import Stage, StageStep

PARAMETERIZATIONS = ("free", "exp_decay")
DRY_BAND_HZ = (50.0, 8000.0)  # where the wet/dry mix matches the room's level
PHASES = ("learned", "minimum")


class Reverb(Stage):
    """Learned room, an effect with no per-frame parameters.

    The full response is ``delta + tail``: tap 0 is the direct path (fixed at 1, as in DDSP,
    so the network cannot hide level in the reverb) and the learned tail starts at tap 1.
    With ``phase="minimum"`` that whole response is replaced by its minimum-phase equivalent
    (same magnitude response), whose tap 0 is then no longer 1.
    A chain's live ``amount`` of this stage is its wet/dry mix, ``out = (1 - amount) *
    dry_level * dry + amount * wet`` with ``dry_level`` the response's gain over the band
    where instruments sound (:meth:`dry_level`): a learned room carries 14-23 dB of the
    shipped models' level, so a plain ``dry`` at amount 0 was that much quieter. State: the
    wet ring-out still to be added [batch, ir_size - 1] (longer while the input so far is
    shorter than the response).

    Args:
        parameterization: ``"free"`` (every tap learned) or ``"exp_decay"`` (gain and decay
            time learned over a fixed noise excitation).
        seed: seed of the fixed noise that initialises / excites the response.
        trainable: whether the response learns.
        phase: ``"learned"`` (the response as its taps are) or ``"minimum"`` (the
            minimum-phase response with the learned response's magnitude: the room's colour
            with its energy as early as causality allows, so the previous note's smear does
            not cover a new note's attack; differentiable, so a room can also be trained this
            way).
    """

    name = "reverb"
    exportable = True

    def __init__(self, sample_rate: int, hop: int, ir_samples: int,
                 parameterization: str = "free", seed: int = 0, trainable: bool = True,
                 phase: str = "learned"):
        super().__init__(sample_rate, hop, ())
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                             f"{parameterization!r}")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        if ir_samples < 2:
            raise ValueError(f"ir_samples must be at least 2, got {ir_samples}")
        self.parameterization = parameterization
        self.phase = phase
        # Made on the CPU explicitly, also where a model file's shapes are checked on the meta
        # device: a seeded randn (or torch.tensor) there imports torch's compiler (1.5-2 s).
        cpu = torch.device("cpu")
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, ir_samples, generator=gen, device=cpu)
        noise[:, 0] = 0.0
        if parameterization == "free":
            # Start as a quiet, short exponential room; every tap is then free to learn.
            t = torch.arange(ir_samples, device=cpu) / sample_rate
            init = 1e-3 * noise * torch.exp(-t / 0.1)
            self.tail = nn.Parameter(init, requires_grad=trainable)
        else:
            self.register_buffer("noise", noise)
            self.log_gain = nn.Parameter(torch.tensor(-7.0, device=cpu), requires_grad=trainable)
            self.log_decay_s = nn.Parameter(torch.tensor(-2.3, device=cpu),
                                            requires_grad=trainable)

    def impulse_response(self) -> torch.Tensor:
        """[1, ir_samples] the full response, direct path included (made minimum-phase where
        ``phase`` says so)."""
        if self.parameterization == "free":
            tail = self.tail
        else:
            tail = exp_decay_ir(self.noise, torch.exp(self.log_gain),
                                torch.exp(self.log_decay_s), self.sample_rate)
        # Tap 0 is the direct path: force it to exactly 1, whatever the parameter holds.
        mask = torch.ones_like(tail)
        mask[:, 0] = 0.0
        delta = torch.zeros_like(tail)
        delta[:, 0] = 1.0
        response = delta + tail * mask
        return minimum_phase(response) if self.phase == "minimum" else response

    def dry_level(self) -> float:
        """The response's power gain over 50 Hz - 8 kHz with every octave counting the same
        (a pink input: instruments' spectra fall about so), as an amplitude: the level at
        which the wet/dry mix plays the dry signal. (On the shipped models' own output the
        room is then 1-4 dB louder than this, where the white-noise gain ``||h||`` left
        3-6 dB.)"""
        with torch.no_grad():  # on the CPU, wherever the model lives: a float comes out
            response = self.impulse_response()[0].detach().double().cpu()
        n = 1 << max(14, (4 * len(response) - 1).bit_length())
        power = torch.fft.rfft(response, n).abs().square()
        f_hz = torch.fft.rfftfreq(n, 1.0 / self.sample_rate, dtype=torch.float64)
        band = (f_hz >= DRY_BAND_HZ[0]) & (f_hz <= min(DRY_BAND_HZ[1], 0.45 * self.sample_rate))
        weight = 1.0 / f_hz[band]
        return float(torch.sqrt((power[band] * weight).sum() / weight.sum()))

    def forward(self, audio, params=None, state=None, **kwargs):
        """The whole response applied to ``audio`` [batch, n] (FFT convolution), the
        ring-out carried in the state."""
        n = audio.shape[1]
        wet = fft_convolve(audio, self.impulse_response())
        if state is not None and len(state):
            tail = state[0]
            if tail.shape[1] > wet.shape[1]:  # input so far shorter than the response
                wet = F.pad(wet, (0, tail.shape[1] - wet.shape[1]))
            wet = wet + F.pad(tail, (0, wet.shape[1] - tail.shape[1]))
        return wet[:, :n], (wet[:, n:],)

    def make_step(self) -> "ReverbStep":
        return ReverbStep(self)


class ReverbStep(StageStep):
    """One hop of :class:`Reverb` as a uniformly partitioned overlap-save convolution: the
    response is cut into ``P`` partitions of ``hop`` taps, each convolved in the frequency
    domain with the input block of the same age. The response is frozen when the step is
    made."""

    state_names = ("reverb_input", "reverb_spectra")

    def __init__(self, reverb: Reverb):
        super().__init__()
        with torch.no_grad():
            ir = reverb.impulse_response().detach().float()[0]
        self.hop = reverb.hop
        dft, idft = real_dft_matrices(self.hop)
        self.register_buffer("dft", dft)
        self.register_buffer("idft", idft)
        self.register_buffer("ir_spectra", partition_kernel(ir, self.hop, dft))
        self.n_partitions = self.ir_spectra.shape[1]

    def initial_state(self, batch: int):
        return (torch.zeros(batch, self.hop),
                torch.zeros(batch, self.n_partitions, 2 * (self.hop + 1)))

    def forward(self, prev, new, state, audio, noise):
        wet, spectra = partitioned_convolution_step(
            audio, state[0], state[1], self.ir_spectra, self.dft, self.idft)
        return wet, (audio, spectra)
