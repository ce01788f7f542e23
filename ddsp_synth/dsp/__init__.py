"""Pure, batched, differentiable DSP functions: units (:mod:`.units`), the one frames-to-
samples convention (:mod:`.interpolation`), the harmonic oscillator bank (:mod:`.oscillators`),
FIR design and convolution (:mod:`.convolution`), recursive filters with exact fast gradients
(:mod:`.iir`), spectra, loudness and the one spectral distance (:mod:`.spectral`).

Nothing here holds parameters: :mod:`ddsp_synth.stages` wraps these in stages.
"""
