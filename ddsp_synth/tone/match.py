"""Tone matching: the effects rack's settings that make an output sound like a reference.

:func:`match_tone` estimates, from an output (what the instrument plays) and a reference
recording of anything, the settings of the rack ``lowshelf, peak x n_peaks, highshelf,
compressor, gain`` in natural units, and returns them as a preset (the format ``match``
writes). Three aspects, each of which can be switched off (it then stays neutral):

* ``eq``: the 1/3-octave long-term spectrum. The EQ is fitted to the reference's spectrum
  shape through the twins' exact biquad responses (:mod:`ddsp_synth.tone.eq_fit`).
* ``dynamics``: the spread of the short-term loudness. The compressor brings the output's
  loudness range (after the EQ) down to the reference's, and stays neutral when the
  reference is not more compressed (:mod:`ddsp_synth.tone.dynamics`).
* ``loudness``: the integrated loudness (BS.1770). The gain makes the output after the EQ
  and the compressor, as the rack renders it, as loud as the reference.

``amount`` (0 to 1) scales each aspect toward neutral the way its knob reads: EQ gains times
the amount; the compressor's ratio toward 1 geometrically (its knob is logarithmic: 4:1 at
50 % is 2:1); the loudness moves that fraction of the way, in LU, from the output's to the
reference's (the gain also makes up whatever the scaled EQ and compressor changed).
:class:`ToneEstimate` keeps the analysis, so that an amount knob re-renders the preset
without analysing again.

With the default one peak the preset is exactly the app's rack (``RACK_LAYOUT``: low shelf,
peak, high shelf, compressor, output gain; its knobs show the estimate); more peaks fit a
spectrum more closely, for ``--effects`` and ``ddsp-synth fx``. The rack's distortion is left
out of the preset: no setting of it is neutral (its tanh bends the signal even at 0 dB of
drive), and nothing here estimates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..chains import make_chain, preset
from ..errors import InputError
from ..rack import RACK_LAYOUT, Preset, check_preset
from .dynamics import CompressorFit, DynamicsConfig, fit_compressor
from .eq_fit import EqFitConfig, EqModel, fit_eq
from .inputs import load_signal
from ..dsp.loudness import active_block_loudness, integrated_loudness, loudness_spread
from .spectrum import bands_for_rates, long_term_spectrum, ltas_db

ASPECTS = ("eq", "dynamics", "loudness")
DEFAULT_PEAKS = 1  # the app's rack: one peak between the shelves
MAX_PEAKS = 8
GAIN_RANGE_DB = 24.0
# The compressor may take at most this much level away (the output gain, which makes it up,
# reaches +24 dB; a little is kept for the loudness match itself)
MIN_MAKEUP_ROOM_DB = 6.0
_NEUTRAL = dict(RACK_LAYOUT)


@dataclass(frozen=True)
class ToneConfig:
    """Settings of :func:`estimate_tone`.

    Attributes:
        min_seconds: shortest signal that can be matched (a long-term spectrum and a
            loudness distribution need a few 400 ms blocks).
        eq: the EQ fit's settings.
        dynamics: the compressor estimate's settings.
    """

    min_seconds: float = 1.0
    eq: EqFitConfig = field(default_factory=EqFitConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)


def rack_text(n_peaks: int) -> str:
    """The chain of a tone preset: ``lowshelf,peak,...,highshelf,compressor,gain``."""
    return ",".join(["lowshelf"] + ["peak"] * n_peaks + ["highshelf", "compressor", "gain"])


def neutral_eq(sample_rate: int, n_peaks: int) -> np.ndarray:
    """[n_peaks + 2, 3] an EQ at 0 dB everywhere where the app's rack puts its knobs: shelves
    at 120 Hz and 5 kHz (or 0.3 of the rate), q 0.707; one peak at 1 kHz, several
    log-spaced between the shelves, q 1."""
    low, peak, high = (_NEUTRAL[d] for d in ("lowshelf", "peak", "highshelf"))
    top = min(high["cutoff_frequency_hz"], 0.3 * sample_rate)
    if n_peaks == 1:
        middle = [peak["cutoff_frequency_hz"]]
    else:
        middle = list(np.geomspace(low["cutoff_frequency_hz"], top, n_peaks + 2)[1:-1])
    freqs = [low["cutoff_frequency_hz"], *middle, top]
    qs = [low["q"]] + [peak["q"]] * n_peaks + [high["q"]]
    return np.stack([freqs, np.zeros(n_peaks + 2), qs], axis=1)


def check_aspects(aspects) -> tuple[str, ...]:
    """Aspect names (a list, or one comma-separated string) checked, in canonical order."""
    if isinstance(aspects, str):
        aspects = [a.strip() for a in aspects.split(",") if a.strip()]
    try:
        names = list(aspects)
    except TypeError:
        raise InputError(f"aspects must be a list of {', '.join(ASPECTS)}, got "
                         f"{aspects!r:.40}") from None
    unknown = [a for a in names if a not in ASPECTS]
    if unknown:
        raise InputError(f"unknown aspect {unknown[0]!r:.40}; choose from "
                         f"{', '.join(ASPECTS)}")
    return tuple(a for a in ASPECTS if a in names)


def check_amount(amount) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) \
            or not math.isfinite(amount) or not 0.0 <= amount <= 1.0:
        raise InputError(f"amount must be a number from 0 to 1, got {amount!r:.40}")
    return float(amount)


def check_n_peaks(n_peaks) -> int:
    if isinstance(n_peaks, bool) or not isinstance(n_peaks, (int, np.integer)) \
            or not 0 <= n_peaks <= MAX_PEAKS:
        raise InputError(f"n_peaks must be a whole number from 0 to {MAX_PEAKS}, got "
                         f"{n_peaks!r:.40}")
    return int(n_peaks)


def _significant(x: float, digits: int) -> float:
    if x == 0:
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


# How each parameter is rounded for people to read (and the preset is rendered with)
_ROUNDING = {"cutoff_frequency_hz": lambda v: _significant(v, 3), "q": lambda v: round(v, 2),
             "ratio": lambda v: round(v, 2)}


def readable(natural: np.ndarray, params) -> np.ndarray:
    """Settings [P] rounded for people (3 significant figures for frequencies, 0.1 dB, 0.01
    for q and ratio, 0.1 ms) and clipped to their declared ranges."""
    out = []
    for v, p in zip(natural, params):
        name = p.name.rsplit(".", 1)[-1]
        v = _ROUNDING.get(name, lambda x: round(x, 1))(float(v))
        out.append(min(max(v, p.min), p.max) + 0.0)  # + 0.0: no "-0.0" in a preset
    return np.array(out)


@dataclass
class ToneEstimate:
    """What :func:`estimate_tone` measured and estimated, at full amount.

    Attributes:
        sample_rate: the output's rate, which the preset's chain runs at.
        aspects: the aspects matched.
        eq: [n_peaks + 2, 3] (cutoff_frequency_hz, gain_db, q) of the low shelf, the peaks
            (by frequency) and the high shelf.
        compressor: the compressor estimate and the loudness ranges behind it.
        output_lufs, reference_lufs: integrated loudness (channels averaged).
        bands_hz: [n_bands, 3] the 1/3-octave bands compared (lower, centre, upper).
        output_ltas_db, reference_ltas_db: [n_bands] their long-term spectra.
        mono: [n_samples] the output as the rack receives it (channels averaged).
    """

    sample_rate: int
    aspects: tuple[str, ...]
    eq: np.ndarray
    compressor: CompressorFit
    output_lufs: float
    reference_lufs: float
    bands_hz: np.ndarray
    output_ltas_db: np.ndarray
    reference_ltas_db: np.ndarray
    mono: np.ndarray = field(repr=False)

    @property
    def n_peaks(self) -> int:
        return len(self.eq) - 2

    def chain(self):
        """The rack (twins) that the preset is for."""
        return make_chain(rack_text(self.n_peaks), self.sample_rate)

    def _scaled(self, amount: float, gain_db: float) -> np.ndarray:
        """[P] the chain's settings at ``amount`` with this output gain."""
        eq = self.eq.copy()
        eq[:, 1] *= amount
        comp = self.compressor.settings.copy()
        comp[1] = comp[1] ** amount
        if round(comp[1], 2) == 1.0:  # neutral reads as the rack's neutral compressor
            comp[:] = [_NEUTRAL["compressor"][k] for k in
                       ("threshold_db", "ratio", "attack_ms", "release_ms")]
        return np.concatenate([eq.reshape(-1), comp, [gain_db]])

    def render(self, natural: np.ndarray) -> np.ndarray:
        """The output through the rack's twins with settings [P]: [n_samples]."""
        chain = self.chain()
        with torch.no_grad():
            y, _ = chain(torch.tensor(self.mono)[None],
                         torch.tensor(np.asarray(natural)[None], dtype=torch.float32))
        return y[0].numpy()

    def natural(self, amount: float = 1.0) -> np.ndarray:
        """[P] the rack's settings at ``amount`` in the chain's parameter order, rounded as
        people read them."""
        amount = check_amount(amount)
        params = self.chain().params
        natural = readable(self._scaled(amount, 0.0), params)
        if "loudness" in self.aspects and amount > 0:
            target = self.output_lufs + amount * (self.reference_lufs - self.output_lufs)
            got = integrated_loudness(self.render(natural)[None].astype(np.float64),
                                      self.sample_rate)
            gain = target - got if math.isfinite(got) else 0.0
            natural[-1] = float(np.clip(gain, -GAIN_RANGE_DB, GAIN_RANGE_DB))
            natural = readable(natural, params)
        return natural

    def preset(self, amount: float = 1.0) -> Preset:
        """The rack's preset at ``amount`` (``.to_dict()``: ``{"chain": [{"device",
        "params"}, ...]}``, the format ``match`` writes)."""
        return check_preset(preset(self.chain(), self.natural(amount)), self.sample_rate)


def _render_eq(mono: np.ndarray, sample_rate: int, eq: np.ndarray) -> np.ndarray:
    chain = make_chain(",".join(["lowshelf"] + ["peak"] * (len(eq) - 2) + ["highshelf"]),
                       sample_rate)
    with torch.no_grad():
        y, _ = chain(torch.tensor(mono)[None],
                     torch.tensor(eq.reshape(1, -1), dtype=torch.float32))
    return y[0].numpy()


def _estimate_compressor(mono, sample_rate, eq, reference, reference_rate, fit: bool,
                         config: DynamicsConfig) -> CompressorFit:
    """The compressor for the EQ'd output (neutral, with the ranges measured, when the
    dynamics are not matched). It takes away no more level than the output gain can make up
    on top of the loudness match."""
    shaped = _render_eq(mono, sample_rate, eq) if np.any(eq[:, 1] != 0) else mono
    ref_blocks = active_block_loudness(reference, reference_rate, channels="mean")
    chain = make_chain("compressor", sample_rate)
    threshold_param, ratio_param = chain.params[0], chain.params[1]
    if fit:
        rise = integrated_loudness(reference, reference_rate, channels="mean") \
            - integrated_loudness(shaped[None].astype(np.float64), sample_rate)
        room = max(GAIN_RANGE_DB - 1.0 - max(rise, 0.0), MIN_MAKEUP_ROOM_DB)
        return fit_compressor(shaped, sample_rate, ref_blocks,
                              (threshold_param.min, threshold_param.max), ratio_param.max,
                              config, max_reduction_db=room)
    out_range = loudness_spread(active_block_loudness(shaped[None].astype(np.float64),
                                                      sample_rate))
    return CompressorFit(0.0, 1.0, config.attack_ms, config.release_ms, out_range,
                         loudness_spread(ref_blocks), out_range)


def estimate_tone(audio, sample_rate, reference, reference_rate=None, aspects=ASPECTS,
                  n_peaks: int = DEFAULT_PEAKS, config: ToneConfig = ToneConfig()
                  ) -> ToneEstimate:
    """Analyse an output and a reference and estimate the rack's settings at full amount.

    Args:
        audio: the output (numpy or torch): [n_samples], or channels on the shorter axis
            ([n_channels, n_samples] or [n_samples, n_channels]); the rack gets its
            channels averaged.
        sample_rate: its rate in Hz (the preset's chain runs at it).
        reference: an array like ``audio``, or the path of an audio file.
        reference_rate: its rate in Hz (None for a file: the file's own).
        aspects: any of ``"eq"``, ``"dynamics"``, ``"loudness"``; the others stay neutral.
        n_peaks: peak filters between the shelves (0 to 8).

    Raises:
        InputError, AudioError: one line, for a bad signal, file or setting.
    """
    aspects, n_peaks = check_aspects(aspects), check_n_peaks(n_peaks)
    out, sr = load_signal(audio, sample_rate, "the output", config.min_seconds)
    ref, ref_sr = load_signal(reference, reference_rate, "the reference", config.min_seconds)
    mono = out.mean(axis=0)
    bands = bands_for_rates(sr, ref_sr)
    out_spectrum = long_term_spectrum(mono[None], sr)
    ref_ltas = ltas_db(ref, ref_sr, bands)
    eq = neutral_eq(sr, n_peaks)
    if "eq" in aspects:
        eq = fit_eq(EqModel(out_spectrum, bands, n_peaks, config.eq), ref_ltas, config.eq)
    compressor = _estimate_compressor(mono, sr, eq, ref, ref_sr, "dynamics" in aspects,
                                      config.dynamics)
    return ToneEstimate(sr, aspects, eq, compressor,
                        integrated_loudness(mono[None].astype(np.float64), sr),
                        integrated_loudness(ref, ref_sr, channels="mean"), bands, out_spectrum.band_db(bands),
                        ref_ltas, mono)


def match_tone(audio, sample_rate, reference, reference_rate=None, aspects=ASPECTS,
               amount: float = 1.0, n_peaks: int = DEFAULT_PEAKS,
               config: ToneConfig = ToneConfig()) -> Preset:
    """The rack's settings that make ``audio`` sound like ``reference``, as a preset.

    Arguments as :func:`estimate_tone`, and ``amount`` (0 to 1): how far each aspect goes
    from neutral toward the full match.

    Returns:
        a checked :class:`~ddsp_synth.rack.Preset` of the chain ``lowshelf, peak (x n_peaks),
        highshelf, compressor, gain`` in natural units, every value inside its parameter's
        range: ``Rack(preset, sample_rate).process(audio)`` plays it, ``preset.to_dict()``
        is the JSON that ``--effects`` and the app load, ``preset.describe()`` reads it.
    """
    amount = check_amount(amount)
    return estimate_tone(audio, sample_rate, reference, reference_rate, aspects, n_peaks,
                         config).preset(amount)
