"""ddsp_synth: a differentiable harmonic-plus-noise synthesizer (DDSP) in PyTorch."""

__version__ = "0.1.0"
