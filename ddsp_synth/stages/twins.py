"""White-box PyTorch twins of pedalboard's devices: the ``autodiff`` stages of effects.

Each twin is a :class:`~ddsp_synth.stages.base.Stage`: ``(audio [batch, n_samples], params,
state) -> (audio, state)`` with parameters in natural units, constant ``[batch, P]`` or per
frame on the frame grid (``[batch, n_blocks + 1, P]``, frame ``t`` at sample ``t * hop``).
The state carries the filters' memories and the compressor's envelope, so consecutive
calls equal one call on the whole signal.

Per-frame parameters of the filters are turned into one biquad per frame whose coefficients
are interpolated linearly per sample (cheap, and stable since the stable region of
``(a1, a2)`` is convex); the compressor, gain and distortion interpolate their parameters
(normalised, so log-scaled ones geometrically).

The algorithms are pedalboard's (JUCE's) own, checked against pedalboard 0.9.26 in
``tests/test_effects.py`` (max abs error over a 2 s test signal, float32):

=================  =====================================================  ===========
twin               algorithm                                              vs pedalboard
=================  =====================================================  ===========
gain               ``x * 10^(gain_db / 20)``                              exact (1 ulp)
peak, lowshelf,    JUCE ``makePeakFilter`` / ``makeLowShelf`` /           float32
highshelf          ``makeHighShelf`` (the RBJ cookbook biquads)           rounding
lowpass, highpass  JUCE ``makeFirstOrderLowPass`` / ``HighPass``: what     float32
                   pedalboard's LowpassFilter/HighpassFilter are (first    rounding
                   order, 6 dB/octave, no q)
compressor         JUCE ``dsp::Compressor``: peak ballistics envelope     float32
                   (attack while the level rises, release otherwise),     rounding
                   gain ``(env / thr)^(1/ratio - 1)`` above threshold
distortion         ``tanh(10^(drive_db / 20) * x)``                        exact (1 ulp)
=================  =====================================================  ===========

``lowpass2`` / ``highpass2`` (cutoff and q: JUCE ``makeLowPass`` / ``makeHighPass``, 12 dB per
octave) have no pedalboard counterpart; their black box is a float64 scipy reference.
"""

from __future__ import annotations

import math

import torch

from ..dsp import iir
from ..dsp.interpolation import frames_to_samples, n_frames_for
from .base import Stage, StageStep, check_params, lookahead_frames
from .params import DeviceError, Param, denormalise, normalise

MIN_CUTOFF_HZ = 20.0
MAX_CUTOFF_FRACTION = 0.45  # of the sample rate: keeps every filter clear of Nyquist
JUCE_MIN_FREQUENCY_HZ = 2.0  # JUCE clamps filter frequencies below this
# Filter frequencies are clamped below this fraction of the rate (see _Biquad._omega).
NYQUIST_GUARD = 0.49
JUCE_MIN_SHELF_GAIN = 1e-8
JUCE_MIN_TIME_MS = 1e-3  # JUCE's ballistics filter treats shorter times as instantaneous


def cutoff_param(sample_rate: int, default_hz: float, name: str = "cutoff_frequency_hz") -> Param:
    top = MAX_CUTOFF_FRACTION * sample_rate
    return Param(name, "Hz", MIN_CUTOFF_HZ, top, min(default_hz, top), "log")


GAIN_DB = Param("gain_db", "dB", -24.0, 24.0, 0.0)
Q = Param("q", "", 0.1, 10.0, 1 / math.sqrt(2), "log")


def default_hop(sample_rate: int) -> int:
    """Samples per parameter frame when a caller gives none: 10 ms."""
    return max(1, int(round(sample_rate / 100)))


class Twin(Stage):
    """A device written in PyTorch (white box): exact gradients by automatic differentiation.

    Subclasses set ``name``, declare their parameters in ``_declare(sample_rate)`` and
    implement ``_process(audio, p, state) -> (audio, state)`` where ``p`` is ``[batch, P]``
    (constant) or ``[batch, n_samples, P]`` (per sample), natural units.
    """

    exportable = False  # the recursions run in numba

    def __init__(self, sample_rate: int, hop: int | None = None):
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise DeviceError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        super().__init__(sample_rate, hop or default_hop(sample_rate),
                         self._declare(sample_rate))

    def _declare(self, sample_rate: int) -> tuple[Param, ...]:
        raise NotImplementedError

    def _process(self, audio, p, state):
        raise NotImplementedError

    def forward(self, audio: torch.Tensor, params: torch.Tensor, state=None, **kwargs):
        """Process ``audio`` [batch, n_samples] with parameters in natural units.

        Args:
            params: [batch, P] constant, or [batch, n_blocks + 1, P] per frame (``n_blocks``
                frames: the last one held).
            state: what the previous call returned (None: from rest).

        Returns:
            audio [batch, n_samples] and the new state.
        """
        if audio.dim() != 2:
            raise DeviceError(f"{self.name}: audio must be [batch, n_samples], got "
                              f"{tuple(audio.shape)}")
        check_params(self, params, audio.shape[0])
        params = params.to(audio.dtype)
        if state is None:
            state = self.initial_state(audio.shape[0])
        if params.dim() == 2:
            return self._process(audio, params, state)
        frames = lookahead_frames(params, n_frames_for(audio.shape[1], self.hop), self.name)
        return self._process_frames(audio, frames, state)

    def _process_frames(self, audio, frames, state):
        """Per-frame parameters: interpolated per sample in the normalised domain."""
        u = frames_to_samples(normalise(self.params, frames), self.hop, n_samples=audio.shape[1])
        return self._process(audio, denormalise(self.params, u), state)

    def make_step(self) -> "TwinStep":
        return TwinStep(self)


class TwinStep(StageStep):
    """One hop of a twin: its own ``forward`` on the block between two frames (eager only:
    the recursions run in numba, so a twin's step does not trace)."""

    def __init__(self, twin: Twin):
        super().__init__()
        self.twin = twin
        self.state_names = tuple(f"{twin.name}_state{i}"
                                 for i in range(len(twin.initial_state(1))))

    def initial_state(self, batch: int):
        return self.twin.initial_state(batch)

    def forward(self, prev, new, state, audio, noise):
        return self.twin(audio, torch.stack([prev, new], 1), state)


def _cols(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each parameter as [batch, 1] (constant) or [batch, n_samples] (per sample).

    ``unbind`` rather than indexing: its backward is one stack, where indexing a per-sample
    tensor column by column allocates the whole tensor once per column.
    """
    return tuple(c[:, None] if p.dim() == 2 else c for c in p.unbind(-1))


class Gain(Twin):
    name = "gain"

    def _declare(self, sample_rate):
        return (GAIN_DB,)

    def _process(self, audio, p, state):
        return audio * 10.0 ** (_cols(p)[0] / 20.0), state


class Distortion(Twin):
    name = "distortion"

    def _declare(self, sample_rate):
        return (Param("drive_db", "dB", 0.0, 40.0, 25.0),)

    def _process(self, audio, p, state):
        return torch.tanh(audio * 10.0 ** (_cols(p)[0] / 20.0)), state


class _Biquad(Twin):
    """A twin whose effect is one second-order section computed from its parameters.
    State: the section's memory [batch, 4] (``x[n-1], x[n-2], y[n-1], y[n-2]``)."""

    def coefficients(self, p: torch.Tensor) -> torch.Tensor:
        """[..., P] natural parameters -> [..., 6] section ``[b0, b1, b2, 1, a1, a2]``."""
        raise NotImplementedError

    def initial_state(self, batch: int):
        return (torch.zeros(batch, iir.BIQUAD_STATE_SIZE),)

    def _process(self, audio, p, state):
        y, memory = iir.biquad_continued(audio, self.coefficients(p), state[0])
        return y, (memory,)

    def _process_frames(self, audio, frames, state):
        # Coefficients per frame, interpolated linearly per sample: the stable region of
        # (a1, a2) is convex, so every interpolated section is stable, and this costs a few
        # tensor operations per sample instead of the whole design (trigonometry, powers).
        sos = frames_to_samples(self.coefficients(frames), self.hop, n_samples=audio.shape[1])
        y, memory = iir.biquad_continued(audio, sos, state[0])
        return y, (memory,)

    def _omega(self, f_hz):
        # above Nyquist the design's sin(w) turns negative and the section unstable (NaN
        # within samples); the declared ranges stop at 0.45 x the rate, the clamp is a guard
        top = NYQUIST_GUARD * self.sample_rate
        return 2 * math.pi * f_hz.clamp(JUCE_MIN_FREQUENCY_HZ, top) / self.sample_rate


def _section(b0, b1, b2, a0, a1, a2) -> torch.Tensor:
    return torch.stack([b0 / a0, b1 / a0, b2 / a0, torch.ones_like(a0), a1 / a0, a2 / a0], -1)


class Peak(_Biquad):
    name = "peak"

    def _declare(self, sample_rate):
        return (cutoff_param(sample_rate, 440.0), GAIN_DB, Q)

    def coefficients(self, p):
        f, g, q = p.unbind(-1)
        big_a = 10.0 ** (g / 40.0)
        w = self._omega(f)
        alpha = torch.sin(w) / (2 * q)
        c2 = -2 * torch.cos(w)
        return _section(1 + alpha * big_a, c2, 1 - alpha * big_a, 1 + alpha / big_a, c2,
                        1 - alpha / big_a)


class _Shelf(_Biquad):
    high = False

    def _declare(self, sample_rate):
        return (cutoff_param(sample_rate, 440.0), GAIN_DB, Q)

    def coefficients(self, p):
        f, g, q = p.unbind(-1)
        big_a = (10.0 ** (g / 20.0)).clamp_min(JUCE_MIN_SHELF_GAIN).sqrt()
        am, ap = big_a - 1, big_a + 1
        w = self._omega(f)
        cos_w = torch.cos(w)
        beta = torch.sin(w) * big_a.sqrt() / q
        amc = am * cos_w
        if self.high:
            return _section(big_a * (ap + amc + beta), big_a * -2 * (am + ap * cos_w),
                            big_a * (ap + amc - beta), ap - amc + beta, 2 * (am - ap * cos_w),
                            ap - amc - beta)
        return _section(big_a * (ap - amc + beta), big_a * 2 * (am - ap * cos_w),
                        big_a * (ap - amc - beta), ap + amc + beta, -2 * (am + ap * cos_w),
                        ap + amc - beta)


class LowShelf(_Shelf):
    name = "lowshelf"


class HighShelf(_Shelf):
    name = "highshelf"
    high = True


class Lowpass(_Biquad):
    """First-order low-pass (pedalboard's LowpassFilter): -3 dB at the cutoff, 6 dB/octave."""

    name = "lowpass"
    high = False

    def _declare(self, sample_rate):
        return (cutoff_param(sample_rate, MAX_CUTOFF_FRACTION * sample_rate),)

    def coefficients(self, p):
        n = torch.tan(math.pi * p.unbind(-1)[0] / self.sample_rate)
        one, zero = torch.ones_like(n), torch.zeros_like(n)
        if self.high:
            return _section(one, -one, zero, n + 1, n - 1, zero)
        return _section(n, n, zero, n + 1, n - 1, zero)


class Highpass(Lowpass):
    """First-order high-pass (pedalboard's HighpassFilter)."""

    name = "highpass"
    high = True

    def _declare(self, sample_rate):
        return (cutoff_param(sample_rate, MIN_CUTOFF_HZ),)


class Lowpass2(_Biquad):
    """Second-order low-pass with resonance q (JUCE ``makeLowPass``), 12 dB/octave."""

    name = "lowpass2"
    high = False

    def _declare(self, sample_rate):
        return (cutoff_param(sample_rate, MAX_CUTOFF_FRACTION * sample_rate), Q)

    def coefficients(self, p):
        f, q = p.unbind(-1)
        t = torch.tan(math.pi * f / self.sample_rate)
        n = t if self.high else 1 / t
        n2 = n * n
        c1 = 1 / (1 + n / q + n2)
        one = torch.ones_like(n)
        a1 = c1 * 2 * ((n2 - 1) if self.high else (1 - n2))
        a2 = c1 * (1 - n / q + n2)
        sign = -1 if self.high else 1
        return _section(c1, sign * 2 * c1, c1, one, a1, a2)


class Highpass2(Lowpass2):
    """Second-order high-pass with resonance q (JUCE ``makeHighPass``)."""

    name = "highpass2"
    high = True

    def _declare(self, sample_rate):
        return (cutoff_param(sample_rate, MIN_CUTOFF_HZ), Q)


def time_coefficient(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """JUCE ballistics coefficient ``exp(-2 pi 1000 / (sr t_ms))`` (0 below 1 us)."""
    c = torch.exp(-2 * math.pi * 1000.0 / (sample_rate * time_ms.clamp_min(JUCE_MIN_TIME_MS)))
    return torch.where(time_ms < JUCE_MIN_TIME_MS, torch.zeros_like(c), c)


class Compressor(Twin):
    """JUCE's ``dsp::Compressor`` (pedalboard's Compressor): hard knee, peak envelope.

    Declared defaults are a typical setting (-24 dB, 4:1, 10 ms, 100 ms), not pedalboard's
    (0 dB, 1:1), which does nothing and gives no gradient to start from.
    """

    name = "compressor"

    def _declare(self, sample_rate):
        return (Param("threshold_db", "dB", -60.0, 0.0, -24.0),
                Param("ratio", "", 1.0, 20.0, 4.0, "log"),
                Param("attack_ms", "ms", 0.1, 100.0, 10.0, "log"),
                Param("release_ms", "ms", 5.0, 1000.0, 100.0, "log"))

    def initial_state(self, batch: int):
        return (torch.zeros(batch, 1),)  # the envelope before the first sample

    def _process(self, audio, p, state):
        thr_db, ratio, attack_ms, release_ms = _cols(p)
        env, _ = iir.ballistics(audio.abs(), time_coefficient(attack_ms, self.sample_rate),
                                time_coefficient(release_ms, self.sample_rate),
                                env0=state[0])
        thr = 10.0 ** (thr_db / 20.0)
        # (max(env, thr) / thr) ** e equals JUCE's "1 below threshold" without a branch.
        gain = (torch.maximum(env, thr) / thr) ** (1.0 / ratio - 1.0)
        return audio * gain, (env[:, -1:].detach(),)


TWINS: dict[str, type[Twin]] = {cls.name: cls for cls in (
    Gain, LowShelf, HighShelf, Peak, Lowpass, Highpass, Lowpass2, Highpass2, Compressor,
    Distortion)}
