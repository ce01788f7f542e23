"""White-box PyTorch twins of pedalboard's devices, differentiable and batched.

Each twin is ``h(audio [batch, n_samples], params) -> audio`` with parameters in natural
units, either constant ``[batch, P]`` or per frame ``[batch, n_frames, P]`` with a ``hop``
(frame ``t`` sits at sample ``t * hop``, the synth's frame grid).

Per-frame parameters of the filters are turned into one biquad per frame whose coefficients
are interpolated linearly per sample (cheap, and stable since the stable region of
``(a1, a2)`` is convex); the compressor, gain and distortion interpolate their parameters.

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
from torch import nn

from . import iir
from .params import DeviceError, Param, denormalise, frames_to_samples, normalise

MIN_CUTOFF_HZ = 20.0
MAX_CUTOFF_FRACTION = 0.45  # of the sample rate: keeps every filter clear of Nyquist
JUCE_MIN_FREQUENCY_HZ = 2.0  # JUCE clamps filter frequencies below this
JUCE_MIN_SHELF_GAIN = 1e-8
JUCE_MIN_TIME_MS = 1e-3  # JUCE's ballistics filter treats shorter times as instantaneous


def cutoff_param(sample_rate: int, default_hz: float, name: str = "cutoff_frequency_hz") -> Param:
    top = MAX_CUTOFF_FRACTION * sample_rate
    return Param(name, "Hz", MIN_CUTOFF_HZ, top, min(default_hz, top), "log")


GAIN_DB = Param("gain_db", "dB", -24.0, 24.0, 0.0)
Q = Param("q", "", 0.1, 10.0, 1 / math.sqrt(2), "log")


class Twin(nn.Module):
    """A device written in PyTorch: ``forward(audio, params, hop=None) -> audio``.

    Subclasses set ``name`` and ``params`` and implement ``_process(audio, p)`` where ``p`` is
    ``[batch, P]`` (constant) or ``[batch, n_samples, P]`` (per sample), natural units.
    """

    name: str = ""

    def __init__(self, sample_rate: int):
        super().__init__()
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise DeviceError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.params: tuple[Param, ...] = self._declare(sample_rate)

    def _declare(self, sample_rate: int) -> tuple[Param, ...]:
        raise NotImplementedError

    def _process(self, audio: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, audio: torch.Tensor, params: torch.Tensor,
                hop: int | None = None) -> torch.Tensor:
        """Process ``audio`` with parameters in natural units.

        Args:
            audio: [batch, n_samples].
            params: [batch, P] constant, or [batch, n_frames, P] per frame (needs ``hop``).
            hop: samples per frame for per-frame parameters.

        Returns:
            [batch, n_samples].
        """
        self._check(audio, params)
        params = params.to(audio.dtype)
        if params.dim() == 2:
            return self._process(audio, params)
        if hop is None:
            raise DeviceError(f"{self.name}: per-frame parameters need hop")
        return self._process_frames(audio, params, hop)

    def forward_normalised(self, audio: torch.Tensor, params01: torch.Tensor,
                           hop: int | None = None) -> torch.Tensor:
        """Like :meth:`forward` with normalised [0, 1] parameters."""
        return self.forward(audio, denormalise(self.params, params01), hop)

    def _process_frames(self, audio, frames, hop):
        """Per-frame parameters: interpolated per sample in the normalised domain."""
        u = frames_to_samples(normalise(self.params, frames), audio.shape[1], hop)
        return self._process(audio, denormalise(self.params, u))

    def _check(self, audio, params):
        if audio.dim() != 2:
            raise DeviceError(f"{self.name}: audio must be [batch, n_samples], got "
                              f"{tuple(audio.shape)}")
        n_params = len(self.params)
        if params.dim() not in (2, 3) or params.shape[0] != audio.shape[0] \
                or params.shape[-1] != n_params:
            raise DeviceError(f"{self.name}: params must be [batch={audio.shape[0]}, "
                              f"{n_params}] or [batch, n_frames, {n_params}], got "
                              f"{tuple(params.shape)}")

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}"


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

    def _process(self, audio, p):
        return audio * 10.0 ** (_cols(p)[0] / 20.0)


class Distortion(Twin):
    name = "distortion"

    def _declare(self, sample_rate):
        return (Param("drive_db", "dB", 0.0, 40.0, 25.0),)

    def _process(self, audio, p):
        return torch.tanh(audio * 10.0 ** (_cols(p)[0] / 20.0))


class _Biquad(Twin):
    """A twin whose effect is one second-order section computed from its parameters."""

    def coefficients(self, p: torch.Tensor) -> torch.Tensor:
        """[..., P] natural parameters -> [..., 6] section ``[b0, b1, b2, 1, a1, a2]``."""
        raise NotImplementedError

    def _process(self, audio, p):
        return iir.biquad(audio, self.coefficients(p))

    def _process_frames(self, audio, frames, hop):
        # Coefficients per frame, interpolated linearly per sample: the stable region of
        # (a1, a2) is convex, so every interpolated section is stable, and this costs a few
        # tensor operations per sample instead of the whole design (trigonometry, powers).
        sos = frames_to_samples(self.coefficients(frames), audio.shape[1], hop)
        return iir.biquad(audio, sos)

    def _omega(self, f_hz):
        return 2 * math.pi * f_hz.clamp_min(JUCE_MIN_FREQUENCY_HZ) / self.sample_rate


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

    def _process(self, audio, p):
        thr_db, ratio, attack_ms, release_ms = _cols(p)
        env, _ = iir.ballistics(audio.abs(), time_coefficient(attack_ms, self.sample_rate),
                                time_coefficient(release_ms, self.sample_rate))
        thr = 10.0 ** (thr_db / 20.0)
        # (max(env, thr) / thr) ** e equals JUCE's "1 below threshold" without a branch.
        gain = (torch.maximum(env, thr) / thr) ** (1.0 / ratio - 1.0)
        return audio * gain


class Chain(Twin):
    """Twins in series; parameters are concatenated, named ``"{i}.{device}.{param}"``."""

    name = "chain"

    def __init__(self, twins: list[Twin]):
        if not twins:
            raise DeviceError("a chain needs at least one device")
        rates = {t.sample_rate for t in twins}
        if len(rates) != 1:
            raise DeviceError(f"devices of a chain must share one sample rate, got {sorted(rates)}")
        self._parts = list(twins)
        super().__init__(twins[0].sample_rate)
        self.twins = nn.ModuleList(twins)

    def _declare(self, sample_rate):
        return tuple(Param(f"{i}.{t.name}.{p.name}", p.unit, p.min, p.max, p.default, p.scale)
                     for i, t in enumerate(self._parts) for p in t.params)

    def splits(self) -> list[int]:
        return [len(t.params) for t in self.twins]

    def _process(self, audio, p):
        y = audio
        for twin, chunk in zip(self.twins, torch.split(p, self.splits(), dim=-1)):
            y = twin._process(y, chunk)
        return y

    def _process_frames(self, audio, frames, hop):
        y = audio
        for twin, chunk in zip(self.twins, torch.split(frames, self.splits(), dim=-1)):
            y = twin._process_frames(y, chunk, hop)
        return y


TWINS: dict[str, type[Twin]] = {cls.name: cls for cls in (
    Gain, LowShelf, HighShelf, Peak, Lowpass, Highpass, Lowpass2, Highpass2, Compressor,
    Distortion)}
