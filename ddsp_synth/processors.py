"""Processors: the stages of the synthesizer's signal chain, and the chain itself.

A processor turns network outputs into controls (``get_controls``) and controls into audio
(``get_signal(controls, state) -> (audio, new_state)``). Sources (``Harmonic``,
``FilteredNoise``) add a signal; effects (``Reverb``) transform the signal so far. The
:class:`ProcessorChain` is built from the list of names in :class:`SynthConfig`
(``processors``), so adding a stage after the reverb is adding an entry to
:data:`PROCESSORS` and to that list.

Time alignment, the same for every stage and every caller: frame ``t`` describes the signal at
sample ``t * hop`` and block ``t`` (samples ``[t * hop, (t + 1) * hop)``) is rendered from
frame ``t`` to frame ``t + 1``, so ``n + 1`` frames give ``n`` blocks. The chain handles the
last frame: training and one-shot rendering hold it for its own block; chunked rendering keeps
it pending in the state until the next chunk brings its successor (so chunks join exactly).

Each processor also has an exportable one-hop variant (``make_step()``: no FFT, no data-
dependent branches), used by :mod:`ddsp_synth.streaming`. Where the algorithm is the same
(the harmonic bank) both call the same kernels of :mod:`ddsp_synth.core`; where export needs
another algorithm (the noise FIR as a matrix, the partitioned reverb) the two variants sit
side by side in the processor's class, and ``tests/test_processors.py`` checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import core
from .config import ConfigError, check_fields


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
        processors: the signal chain, in order (names in :data:`PROCESSORS`).
    """

    sample_rate: int = 16000
    hop: int = 160
    n_harmonics: int = 100
    n_noise_bands: int = 65
    noise_bias: float = -5.0
    reverb_s: float = 1.0
    reverb_parameterization: str = "free"
    reverb_seed: int = 0
    processors: tuple[str, ...] = ("harmonic", "noise", "reverb")

    def __post_init__(self):
        check_fields(self, ranges={
            "sample_rate": (8000, 192000), "hop": (8, 8192), "n_harmonics": (1, 1024),
            "n_noise_bands": (2, 2049), "noise_bias": (-100.0, 100.0), "reverb_s": (0.001, 10.0),
            "reverb_seed": (0, 2**63 - 1)},
            choices={"reverb_parameterization": ("free", "exp_decay"),
                     "processors": tuple(PROCESSORS)})
        if not 10.0 <= self.frame_rate_hz <= 1000.0:
            raise ConfigError(f"hop {self.hop} at {self.sample_rate} Hz gives "
                              f"{self.frame_rate_hz:g} frames/s; use 10 to 1000")
        if self.reverb_samples < 2:
            raise ConfigError(f"reverb_s {self.reverb_s:g} is shorter than 2 samples")

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop

    @property
    def reverb_samples(self) -> int:
        return int(round(self.reverb_s * self.sample_rate))


Controls = dict  # name -> [batch, n_frames, channels] frame-rate control
State = tuple  # a processor's state: a tuple of tensors (empty for stateless stages)


class Processor(nn.Module):
    """One stage of the chain.

    Class attributes:
        kind: ``"source"`` (its signal is added to the sum of the sources before it) or
            ``"effect"`` (it transforms the signal so far).
        amount: what the user's live ``amount`` of this stage means (a source's gain, the
            reverb's wet level); 1 renders the stage as trained.
    """

    kind = "source"

    @property
    def control_sizes(self) -> dict[str, int]:
        """Frame-rate controls this stage reads, {name: channels}, in order."""
        return {}

    @property
    def n_raw(self) -> int:
        """Decoder outputs per frame this stage takes."""
        return 0

    def get_controls(self, raw: torch.Tensor, f0_hz: torch.Tensor) -> Controls:
        """[batch, n_frames, n_raw] raw network outputs -> this stage's controls."""
        return {}

    def get_signal(self, controls: Controls, state: State | None, audio: torch.Tensor | None,
                   amount: float | torch.Tensor = 1.0, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, State]:
        """Render ``n_frames - 1`` blocks from ``n_frames`` frames of controls.

        Args:
            controls: the chain's controls, [batch, n_frames, channels] each.
            state: what the previous call left (None: a fresh signal).
            audio: [batch, n_blocks * hop] the signal so far (effects), or None.
            amount: the user's live control (see the class docstring).
            noise: [batch, n_blocks * hop] white noise in [-1, 1) for noise sources.
            generator: draws the noise when ``noise`` is None.

        Returns:
            audio [batch, n_blocks * hop] and the new state.
        """
        raise NotImplementedError

    def make_step(self, hop: int) -> "ProcessorStep":
        """The exportable one-hop variant of this stage (blocks of ``hop`` samples)."""
        raise NotImplementedError


class ProcessorStep(nn.Module):
    """One hop of a processor as a pure function (for :mod:`ddsp_synth.streaming`).

    ``forward(prev, new, state, audio, noise, amount) -> (audio [batch, hop], new_state)``:
    ``prev`` and ``new`` are the controls (dicts of [batch, 1, channels]) of the frame whose
    block is rendered and of the next frame; ``state`` a tuple of tensors named by
    ``state_names``; ``noise`` [batch, hop]; ``amount`` [batch, 1].
    """

    state_names: tuple[str, ...] = ()

    def initial_state(self, batch: int) -> State:
        return ()


# ----------------------------------------------------------------------------- harmonic
class Harmonic(Processor):
    """Harmonic oscillator bank with DDSP's amplitude scaling (see
    :func:`core.harmonic_synthesis`). State: the oscillator phase [batch, 1] float64."""

    def __init__(self, sample_rate: int, hop: int, n_harmonics: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.hop = hop
        self.n_harmonics = n_harmonics

    @classmethod
    def from_config(cls, config: SynthConfig) -> "Harmonic":
        return cls(config.sample_rate, config.hop, config.n_harmonics)

    @property
    def control_sizes(self) -> dict[str, int]:
        return {"f0_hz": 1, "amplitude": 1, "harmonic_distribution": self.n_harmonics}

    @property
    def n_raw(self) -> int:
        return 1 + self.n_harmonics

    def get_controls(self, raw: torch.Tensor, f0_hz: torch.Tensor) -> Controls:
        """Scale raw outputs.

        Args:
            raw: [batch, n_frames, 1 + n_harmonics] raw total amplitude, then raw harmonic
                weights.
            f0_hz: [batch, n_frames, 1] fundamental in Hz (passed through).

        Returns:
            ``f0_hz``, ``amplitude`` [B,T,1] and ``harmonic_distribution`` [B,T,K], both
            positive via :func:`core.exp_sigmoid`.
        """
        return {"f0_hz": f0_hz, "amplitude": core.exp_sigmoid(raw[..., :1]),
                "harmonic_distribution": core.exp_sigmoid(raw[..., 1:])}

    def get_signal(self, controls, state=None, audio=None, amount=1.0, noise=None,
                   generator=None):
        phase = None if state is None else state[0]
        out, phase = core.harmonic_synthesis(
            controls["f0_hz"], controls["amplitude"], controls["harmonic_distribution"],
            self.sample_rate, self.hop, phase, lookahead=True)
        return amount * out, (phase,)

    def make_step(self, hop: int) -> "HarmonicStep":
        return HarmonicStep(self)


class HarmonicStep(ProcessorStep):
    """One hop of :class:`Harmonic`: the same kernels, every sample masked (no branches)."""

    state_names = ("phase",)

    def __init__(self, harmonic: Harmonic):
        super().__init__()
        self.sample_rate = float(harmonic.sample_rate)
        self.hop = harmonic.hop

    def initial_state(self, batch: int) -> State:
        return (torch.zeros(batch, 1, dtype=torch.float64),)

    def forward(self, prev, new, state, audio, noise, amount):
        pair = {k: torch.cat([prev[k], new[k]], dim=1)
                for k in ("f0_hz", "amplitude", "harmonic_distribution")}
        out, phase = core.harmonic_synthesis_blocks(
            pair["f0_hz"], pair["amplitude"], pair["harmonic_distribution"], self.sample_rate,
            self.hop, state[0], exportable=True)
        return amount * out, (phase,)


# ----------------------------------------------------------------------------- noise
class FilteredNoise(Processor):
    """White noise through a per-frame linear-phase FIR (see :func:`core.filtered_noise`).

    Frame ``t``'s filter shapes block ``t``'s noise; the full filter output is overlap-added,
    so each block's tail rings into the next ones. State: the ring-out still to be added
    [batch, ir_size - 1].
    """

    def __init__(self, hop: int, n_bands: int, initial_bias: float = -5.0):
        super().__init__()
        self.hop = hop
        self.n_bands = n_bands
        self.initial_bias = initial_bias

    @classmethod
    def from_config(cls, config: SynthConfig) -> "FilteredNoise":
        return cls(config.hop, config.n_noise_bands, config.noise_bias)

    @property
    def control_sizes(self) -> dict[str, int]:
        return {"magnitudes": self.n_bands}

    @property
    def n_raw(self) -> int:
        return self.n_bands

    def get_controls(self, raw: torch.Tensor, f0_hz: torch.Tensor) -> Controls:
        """raw [batch, n_frames, n_bands] -> ``magnitudes``: positive [B, T, n_bands]."""
        return {"magnitudes": core.exp_sigmoid(raw + self.initial_bias)}

    def get_signal(self, controls, state=None, audio=None, amount=1.0, noise=None,
                   generator=None):
        """Offline variant: FIRs designed and applied by FFT."""
        mags = controls["magnitudes"][:, :-1]
        batch, n_blocks, _ = mags.shape
        n = n_blocks * self.hop
        if noise is None:
            noise = torch.rand(batch, n, generator=generator, dtype=mags.dtype,
                               device=mags.device) * 2.0 - 1.0
        out = core.time_varying_fir(noise, core.frequency_sampling_fir(mags), self.hop)
        if state is not None:
            out = out + F.pad(state[0], (0, out.shape[1] - state[0].shape[1]))
        return amount * out[:, :n], (out[:, n:],)

    def make_step(self, hop: int) -> "FilteredNoiseStep":
        return FilteredNoiseStep(self)


class FilteredNoiseStep(ProcessorStep):
    """One hop of :class:`FilteredNoise` without FFT: the FIR is linear in the band
    magnitudes (taps = magnitudes @ basis), applied by direct convolution."""

    state_names = ("noise_tail",)

    def __init__(self, noise: FilteredNoise):
        super().__init__()
        self.hop = noise.hop
        with torch.no_grad():
            basis = core.frequency_sampling_fir(torch.eye(noise.n_bands))  # [N, I]
        self.register_buffer("fir_basis", basis.contiguous())
        self.fir_size = basis.shape[1]

    def initial_state(self, batch: int) -> State:
        return (torch.zeros(batch, self.fir_size - 1),)

    def forward(self, prev, new, state, audio, noise, amount):
        taps = torch.matmul(prev["magnitudes"][:, 0], self.fir_basis)  # [B, I]
        batch = noise.shape[0]
        t = self.fir_size - 1
        conv = F.conv1d(F.pad(noise, (t, t))[None], taps.flip(-1)[:, None], groups=batch)[0]
        acc = conv + F.pad(state[0], (0, self.hop))  # [B, hop + I - 1]
        return amount * acc[:, : self.hop], (acc[:, self.hop :],)


# ----------------------------------------------------------------------------- reverb
class Reverb(Processor):
    """Learned room: the dry signal plus a trainable impulse-response tail.

    The full response is ``delta + tail``: tap 0 is the direct path (fixed at 1, as in DDSP,
    so the network cannot hide level in the reverb) and the learned tail starts at tap 1.
    ``amount`` scales the tail: ``out = dry + amount * (dry * tail)``, which is
    :func:`core.reverb` with wet/dry mix ``amount`` applied to the full response. State: the
    wet ring-out still to be added [batch, ir_size - 1] (longer while the input so far is
    shorter than the response).
    """

    kind = "effect"

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

    @classmethod
    def from_config(cls, config: SynthConfig) -> "Reverb":
        return cls(config.sample_rate, config.reverb_samples, config.reverb_parameterization,
                   config.reverb_seed)

    def impulse_response(self) -> torch.Tensor:
        """[1, ir_samples] the full response, direct path included."""
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
        return delta + tail * mask

    def get_signal(self, controls, state=None, audio=None, amount=1.0, noise=None,
                   generator=None):
        """Offline variant: FFT convolution with the ring-out carried in the state."""
        n = audio.shape[1]
        wet = core.fft_convolve(audio, self.impulse_response())
        if state is not None:
            tail = state[0]
            if tail.shape[1] > wet.shape[1]:  # input so far shorter than the response
                wet = F.pad(wet, (0, tail.shape[1] - wet.shape[1]))
            wet = wet + F.pad(tail, (0, wet.shape[1] - tail.shape[1]))
        return (1.0 - amount) * audio + amount * wet[:, :n], (wet[:, n:],)

    def make_step(self, hop: int) -> "ReverbStep":
        return ReverbStep(self, hop)


class ReverbStep(ProcessorStep):
    """One hop of :class:`Reverb` as a uniformly partitioned overlap-save convolution
    (:func:`core.partitioned_convolution_step`): the response is cut into ``P`` partitions
    of ``hop`` taps, each convolved in the frequency domain with the input block of the same
    age. The response is frozen when the step is made."""

    state_names = ("reverb_input", "reverb_spectra")

    def __init__(self, reverb: Reverb, hop: int):
        super().__init__()
        with torch.no_grad():
            ir = reverb.impulse_response().detach().float()[0]
        self.hop = hop
        dft, idft = core.real_dft_matrices(hop)
        self.register_buffer("dft", dft)
        self.register_buffer("idft", idft)
        self.register_buffer("ir_spectra", core.partition_kernel(ir, hop, dft))
        self.n_partitions = self.ir_spectra.shape[1]

    def initial_state(self, batch: int) -> State:
        return (torch.zeros(batch, self.hop),
                torch.zeros(batch, self.n_partitions, 2 * (self.hop + 1)))

    def forward(self, prev, new, state, audio, noise, amount):
        wet, spectra = core.partitioned_convolution_step(
            audio, state[0], state[1], self.ir_spectra, self.dft, self.idft)
        return (1.0 - amount) * audio + amount * wet, (audio, spectra)


# ----------------------------------------------------------------------------- chain
#: name -> processor class (each has ``from_config(SynthConfig)``); the chain of a model is
#: ``SynthConfig.processors``, a list of these names.
PROCESSORS = {"harmonic": Harmonic, "noise": FilteredNoise, "reverb": Reverb}


class ProcessorChain(nn.Module):
    """The signal chain of :class:`SynthConfig`: sources summed, then effects in order.

    Stages are submodules named as in the config (``chain.harmonic``, ``chain.reverb``).
    """

    def __init__(self, config: SynthConfig = SynthConfig()):
        super().__init__()
        self.config = config
        names = tuple(config.processors)
        unknown = [n for n in names if n not in PROCESSORS]
        if unknown or len(set(names)) != len(names) or not names:
            raise ValueError(f"processors must be distinct names from {sorted(PROCESSORS)}, "
                             f"got {list(names)}")
        self.names = names
        for name in names:
            proc = PROCESSORS[name].from_config(config)
            if proc.kind == "effect" and name == names[0]:
                raise ValueError(f"the chain must start with a source, not the effect {name!r}")
            self.add_module(name, proc)
        self.control_sizes = {}
        for proc in self.stages():
            for k, size in proc.control_sizes.items():
                if k in self.control_sizes and self.control_sizes[k] != size:
                    raise ValueError(f"control {k!r} declared twice with different sizes")
                self.control_sizes.setdefault(k, size)

    def stages(self) -> list[Processor]:
        return [getattr(self, n) for n in self.names]

    @property
    def n_raw(self) -> int:
        """Decoder outputs per frame the chain takes (the decoder head's size)."""
        return sum(p.n_raw for p in self.stages())

    def get_controls(self, raw: torch.Tensor, f0_hz: torch.Tensor) -> Controls:
        """Split [batch, n_frames, n_raw] network outputs over the stages, in chain order, and
        scale them into controls (dict of [batch, n_frames, channels])."""
        controls, i = {}, 0
        for proc in self.stages():
            controls.update(proc.get_controls(raw[..., i : i + proc.n_raw], f0_hz))
            i += proc.n_raw
        return controls

    def get_signal(self, controls: Controls, state: dict | None = None, final: bool = True,
                   amounts: dict | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Render controls to audio.

        Args:
            controls: [batch, n_frames, channels] each.
            state: what the previous call returned (None: a fresh signal). It holds the
                pending last frame and every stage's state (phase, filter and reverb tails).
            final: the signal ends here: the last frame is held for its own block and all
                frames are rendered. Otherwise the last frame waits in the state for the
                next call's first frame (its interpolation target).
            amounts: {stage name: live amount} (default 1 each: as trained).
            noise: [batch, n_blocks * hop] excitation of the noise sources (else drawn from
                ``generator``).

        Returns:
            audio [batch, n_blocks * hop] (``n_frames * hop`` for a one-shot render) and the
            new state.
        """
        state = dict(state or {})
        pending = state.pop("pending", None)
        if pending is not None:
            controls = {k: torch.cat([pending[k], v], dim=1) for k, v in controls.items()}
        if final:
            frames = {k: core.hold_last_frame(v) for k, v in controls.items()}
            state["pending"] = None
        else:
            frames = controls
            state["pending"] = {k: v[:, -1:] for k, v in controls.items()}
        first = next(iter(frames.values()))
        if first.shape[1] < 2:
            return first.new_zeros(first.shape[0], 0), state
        amounts = amounts or {}
        signal = None
        for name, proc in zip(self.names, self.stages()):
            out, state[name] = proc.get_signal(frames, state.get(name), signal,
                                               amounts.get(name, 1.0), noise, generator)
            signal = out if (signal is None or proc.kind == "effect") else signal + out
        return signal, state

    def forward(self, f0_hz: torch.Tensor, raw: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """[batch, n_frames, 1] f0 and [batch, n_frames, n_raw] network outputs -> audio."""
        return self.get_signal(self.get_controls(raw, f0_hz), generator=generator)[0]

    # --------------------------------------------------------------- streaming
    def flatten_controls(self, controls: Controls) -> torch.Tensor:
        """Controls as one [batch, n_frames, sum of channels] tensor, in declared order."""
        return torch.cat([controls[k] for k in self.control_sizes], dim=-1)

    def unflatten_controls(self, flat: torch.Tensor) -> Controls:
        out, i = {}, 0
        for k, size in self.control_sizes.items():
            out[k] = flat[..., i : i + size]
            i += size
        return out

    def make_step(self) -> "ChainStep":
        return ChainStep(self)


class ChainStep(nn.Module):
    """One hop of the whole chain: every stage's :class:`ProcessorStep`, sources summed and
    effects applied in order, as in :meth:`ProcessorChain.get_signal`."""

    def __init__(self, chain: ProcessorChain):
        super().__init__()
        self.names = chain.names
        self.kinds = [p.kind for p in chain.stages()]
        self.control_sizes = dict(chain.control_sizes)
        self.steps = nn.ModuleList([p.make_step(chain.config.hop) for p in chain.stages()])
        self.state_names = tuple(n for s in self.steps for n in s.state_names)

    def initial_state(self, batch: int) -> State:
        return tuple(t for s in self.steps for t in s.initial_state(batch))

    def unflatten(self, flat: torch.Tensor) -> Controls:
        out, i = {}, 0
        for k, size in self.control_sizes.items():
            out[k] = flat[:, None, i : i + size]
            i += size
        return out

    def forward(self, prev_flat: torch.Tensor, new_flat: torch.Tensor, noise: torch.Tensor,
                amounts: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Block of frame ``prev`` ([batch, channels] flat controls) towards ``new``.

        Args:
            noise: [batch, hop]; amounts: [batch, n_stages] in chain order.
            state: the concatenation of the stages' states (``state_names``).

        Returns:
            audio [batch, hop] and the new state.
        """
        prev, new = self.unflatten(prev_flat), self.unflatten(new_flat)
        signal, new_state, i = None, [], 0
        for j, (step, kind) in enumerate(zip(self.steps, self.kinds)):
            n = len(step.state_names)
            out, s = step(prev, new, tuple(state[i : i + n]), signal, noise, amounts[:, j : j + 1])
            new_state += list(s)
            i += n
            signal = out if (signal is None or kind == "effect") else signal + out
        return signal, tuple(new_state)
