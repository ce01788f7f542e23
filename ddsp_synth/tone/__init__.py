"""Tone matching: set the effects rack so that an output sounds like a reference recording.

``match_tone(audio, sample_rate, reference, reference_rate)`` returns the rack's preset
(EQ, compressor, output gain in natural units); ``estimate_tone`` returns the analysis
behind it, whose ``preset(amount)`` re-renders the preset for another amount without
analysing again. Method, measured accuracy against Matchering 2.0 and limits:
``docs/tone.md``.
"""

from .dynamics import CompressorFit, DynamicsConfig, fit_compressor
from .eq_fit import EqFitConfig, EqModel, fit_eq
from ..dsp.loudness import active_block_loudness, integrated_loudness, loudness_spread
from .match import (ASPECTS, DEFAULT_PEAKS, MAX_PEAKS, ToneConfig, ToneEstimate,
                    estimate_tone, match_tone, rack_text)
from .spectrum import bands_for_rates, long_term_spectrum, ltas_db, shape_error_db

__all__ = [
    "ASPECTS", "DEFAULT_PEAKS", "MAX_PEAKS", "CompressorFit", "DynamicsConfig", "EqFitConfig",
    "EqModel", "ToneConfig", "ToneEstimate", "active_block_loudness", "bands_for_rates",
    "estimate_tone", "fit_compressor", "fit_eq", "integrated_loudness", "long_term_spectrum",
    "loudness_spread", "ltas_db", "match_tone", "rack_text", "shape_error_db",
]
