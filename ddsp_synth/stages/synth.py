"""The synthesizer's sources: the harmonic oscillator bank and filtered noise.

Both follow the frame grid of :mod:`ddsp_synth.dsp.interpolation` (block ``t`` from frame
``t`` to frame ``t + 1``), carry their state across calls (oscillator phase; the noise
filter's ring-out) and have exportable one-hop steps: :class:`HarmonicStep` runs the same
kernels as the offline path; :class:`FilteredNoiseStep` applies the same FIR as a matrix
product and a direct convolution (no FFT), checked against the offline path in
``tests/test_stages.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ConfigError, check_fields
from ..dsp.convolution import frequency_sampling_fir, time_varying_fir
from ..dsp.oscillators import harmonic_synthesis, harmonic_synthesis_blocks
from ..dsp.units import exp_sigmoid
from .base import Stage, StageStep
from .params import DeviceError, Param
from .registry import EFFECT_NAMES, make_device, parse_entry

# exp_sigmoid's range: the declared span of amplitudes and magnitudes
_POSITIVE_MAX = 2.0
SYNTH_STAGE_NAMES = ("harmonic", "noise", "reverb")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthesizer.

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
        reverb_phase: ``"learned"`` (the response as learned) or ``"minimum"`` (its
            minimum-phase equivalent: the same magnitude response, its energy as early as
            causality allows; see :class:`~ddsp_synth.stages.room.Reverb`).
        processors: the signal chain, in order: the synthesizer's stages (``harmonic``,
            ``noise``, ``reverb``, each at most once, a source first) and, anywhere after the
            first source, built-in effect devices in the chain syntax of
            :mod:`ddsp_synth.stages.registry` (``compressor@spsa``, ``peak:q=0.7``): their
            gradient method after ``@``, fixed parameters after ``:``. How each effect
            device's settings are set (per frame by the decoder, once for the whole model,
            fixed) is the model's ``effects`` section
            (:class:`ddsp_synth.model_effects.EffectsConfig`).
    """

    sample_rate: int = 16000
    hop: int = 160
    n_harmonics: int = 100
    n_noise_bands: int = 65
    noise_bias: float = -5.0
    reverb_s: float = 1.0
    reverb_parameterization: str = "free"
    reverb_seed: int = 0
    reverb_phase: str = "learned"
    processors: tuple[str, ...] = SYNTH_STAGE_NAMES

    def __post_init__(self):
        check_fields(self, ranges={
            "sample_rate": (8000, 192000), "hop": (8, 8192), "n_harmonics": (1, 1024),
            "n_noise_bands": (2, 2049), "noise_bias": (-100.0, 100.0), "reverb_s": (0.001, 10.0),
            "reverb_seed": (0, 2**63 - 1)},
            choices={"reverb_parameterization": ("free", "exp_decay"),
                     "reverb_phase": ("learned", "minimum")})
        if not 10.0 <= self.frame_rate_hz <= 1000.0:
            raise ConfigError(f"hop {self.hop} at {self.sample_rate} Hz gives "
                              f"{self.frame_rate_hz:g} frames/s; use 10 to 1000")
        if self.reverb_samples < 2:
            raise ConfigError(f"reverb_s {self.reverb_s:g} is shorter than 2 samples")
        names = self.processors
        synth_names = [n for n in names if n in SYNTH_STAGE_NAMES]
        if not names or len(set(synth_names)) != len(synth_names):
            raise ConfigError(f"processors must be distinct stage names, got {list(names)}")
        if names[0] not in ("harmonic", "noise"):
            raise ConfigError(f"the chain must start with a source, not the effect "
                              f"'{names[0]}'")
        for name in names:
            if name not in SYNTH_STAGE_NAMES:
                check_effect_entry(name, self.sample_rate)

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop

    @property
    def reverb_samples(self) -> int:
        return int(round(self.reverb_s * self.sample_rate))

    @property
    def effect_entries(self) -> tuple[str, ...]:
        """The entries of ``processors`` that are effect devices, in chain order."""
        return tuple(n for n in self.processors if n not in SYNTH_STAGE_NAMES)

    def stage(self, name: str) -> "Stage":
        """The synthesizer stage ``name`` with these settings."""
        from .room import Reverb

        if name == "harmonic":
            return Harmonic(self.sample_rate, self.hop, self.n_harmonics)
        if name == "noise":
            return FilteredNoise(self.sample_rate, self.hop, self.n_noise_bands, self.noise_bias)
        if name == "reverb":
            return Reverb(self.sample_rate, self.hop, self.reverb_samples,
                          self.reverb_parameterization, self.reverb_seed,
                          phase=self.reverb_phase)
        raise ConfigError(f"'{name}' is not a stage of the synthesizer "
                          f"({', '.join(SYNTH_STAGE_NAMES)})")


def check_effect_entry(text: str, sample_rate: int) -> None:
    """ConfigError (one line) unless ``text`` is a built-in effect device in the chain syntax
    (``compressor@spsa``, ``peak:q=0.7``) with known, in-range fixed parameters."""
    try:
        entry = parse_entry(text)
        if entry.name not in EFFECT_NAMES:
            raise ConfigError(f"processors: {entry.name!r} must be one of "
                              f"{', '.join(SYNTH_STAGE_NAMES)} or a built-in effect device "
                              f"({', '.join(EFFECT_NAMES)})")
        make_device(entry, sample_rate)
    except DeviceError as err:
        raise ConfigError(f"processors: {err}") from None


class Harmonic(Stage):
    """Harmonic oscillator bank with DDSP's amplitude scaling
    (:func:`~ddsp_synth.dsp.oscillators.harmonic_synthesis`).

    Parameters: ``f0_hz`` (the input's pitch, passed through), ``amplitude`` and the
    ``harmonic_distribution`` over ``n_harmonics`` channels (both positive, from
    :func:`~ddsp_synth.dsp.units.exp_sigmoid`). State: the oscillator phase [batch, 1]
    float64.
    """

    kind = "source"
    name = "harmonic"
    exportable = True

    def __init__(self, sample_rate: int, hop: int, n_harmonics: int):
        self.n_harmonics = n_harmonics
        super().__init__(sample_rate, hop, (
            Param("f0_hz", "Hz", 0.0, sample_rate / 2, 440.0),
            Param("amplitude", "", 0.0, _POSITIVE_MAX, 0.1),
            Param("harmonic_distribution", "", 0.0, _POSITIVE_MAX, 0.1, size=n_harmonics)))

    @property
    def n_raw(self) -> int:
        return 1 + self.n_harmonics

    def params_from_raw(self, raw, f0_hz=None):
        """raw [batch, n_frames, 1 + K] (total amplitude, then harmonic weights) and f0_hz
        [batch, n_frames, 1] -> [batch, n_frames, 2 + K] (f0, amplitude, distribution)."""
        return torch.cat([f0_hz, exp_sigmoid(raw[..., :1]), exp_sigmoid(raw[..., 1:])], -1)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[..., 2 + K] -> f0_hz [..., 1], amplitude [..., 1], distribution [..., K]."""
        return torch.split(params, [1, 1, self.n_harmonics], dim=-1)

    def initial_state(self, batch: int):
        return (torch.zeros(batch, 1, dtype=torch.float64),)

    def forward(self, audio, params, state=None, **kwargs):
        """Render ``n_frames - 1`` blocks from [batch, n_frames, 2 + K] look-ahead frames."""
        phase = None if state is None else state[0]
        f0_hz, amplitude, distribution = self.split(params)
        out, phase = harmonic_synthesis(f0_hz, amplitude, distribution, self.sample_rate,
                                        self.hop, phase, lookahead=True)
        return out, (phase,)

    def make_step(self) -> "HarmonicStep":
        return HarmonicStep(self)


class HarmonicStep(StageStep):
    """One hop of :class:`Harmonic`: the same kernels, every sample masked (no branches)."""

    state_names = ("phase",)

    def __init__(self, harmonic: Harmonic):
        super().__init__()
        self.sample_rate = float(harmonic.sample_rate)
        self.hop = harmonic.hop
        self.n_harmonics = harmonic.n_harmonics

    def initial_state(self, batch: int):
        return (torch.zeros(batch, 1, dtype=torch.float64),)

    def forward(self, prev, new, state, audio, noise):
        pair = torch.stack([prev, new], dim=1)  # [B, 2, 2 + K]
        f0, amp, dist = torch.split(pair, [1, 1, self.n_harmonics], dim=-1)
        out, phase = harmonic_synthesis_blocks(f0, amp, dist, self.sample_rate, self.hop,
                                               state[0], exportable=True)
        return out, (phase,)


class FilteredNoise(Stage):
    """White noise through a per-frame linear-phase FIR
    (:func:`~ddsp_synth.dsp.convolution.frequency_sampling_fir`).

    Frame ``t``'s filter shapes block ``t``'s noise; the full filter output is overlap-added,
    so each block's tail rings into the next ones. Parameters: ``magnitudes`` over
    ``n_bands`` channels. State: the ring-out still to be added [batch, ir_size - 1].
    """

    kind = "source"
    name = "noise"
    exportable = True
    needs_noise = True

    def __init__(self, sample_rate: int, hop: int, n_bands: int, initial_bias: float = -5.0):
        self.n_bands = n_bands
        self.initial_bias = initial_bias
        super().__init__(sample_rate, hop, (
            Param("magnitudes", "", 0.0, _POSITIVE_MAX, 0.01, size=n_bands),))

    def params_from_raw(self, raw, f0_hz=None):
        """raw [batch, n_frames, n_bands] -> positive band magnitudes (the bias keeps an
        untrained network quiet)."""
        return exp_sigmoid(raw + self.initial_bias)

    def initial_state(self, batch: int):
        return (torch.zeros(batch, 2 * (self.n_bands - 1) - 1),)

    def forward(self, audio, params, state=None, noise=None, generator=None, **kwargs):
        """Render ``n_frames - 1`` blocks; ``noise`` [batch, n_blocks * hop] in [-1, 1), or
        drawn from ``generator``. Offline variant: FIRs designed and applied by FFT."""
        mags = params[:, :-1]
        batch, n_blocks, _ = mags.shape
        n = n_blocks * self.hop
        if noise is None:
            noise = torch.rand(batch, n, generator=generator, dtype=mags.dtype,
                               device=mags.device) * 2.0 - 1.0
        out = time_varying_fir(noise, frequency_sampling_fir(mags), self.hop)
        if state is not None and len(state):
            out = out + F.pad(state[0], (0, out.shape[1] - state[0].shape[1]))
        return out[:, :n], (out[:, n:],)

    def make_step(self) -> "FilteredNoiseStep":
        return FilteredNoiseStep(self)


class FilteredNoiseStep(StageStep):
    """One hop of :class:`FilteredNoise` without FFT: the FIR is linear in the band
    magnitudes (taps = magnitudes @ basis), applied by direct convolution."""

    state_names = ("noise_tail",)

    def __init__(self, noise: FilteredNoise):
        super().__init__()
        self.hop = noise.hop
        with torch.no_grad():
            basis = frequency_sampling_fir(torch.eye(noise.n_bands))  # [N, I]
        self.register_buffer("fir_basis", basis.contiguous())
        self.fir_size = basis.shape[1]

    def initial_state(self, batch: int):
        return (torch.zeros(batch, self.fir_size - 1),)

    def forward(self, prev, new, state, audio, noise):
        taps = torch.matmul(prev, self.fir_basis)  # [B, I]
        batch = noise.shape[0]
        t = self.fir_size - 1
        conv = F.conv1d(F.pad(noise, (t, t))[None], taps.flip(-1)[:, None], groups=batch)[0]
        acc = conv + F.pad(state[0], (0, self.hop))  # [B, hop + I - 1]
        return acc[:, : self.hop], (acc[:, self.hop :],)


def stage_kind(name: str) -> str:
    """``"source"`` (adds a signal: the harmonic and noise stages) or ``"effect"`` (transforms
    the signal so far: the room and every device)."""
    sources = {cls.name: cls.kind for cls in (Harmonic, FilteredNoise)}
    return sources.get(name, "effect")
