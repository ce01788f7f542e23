"""Settings of controllers and of their training data, and the controllers' error class.

Frozen dataclasses, every field checked on creation (:func:`ddsp_synth.config.check_fields`)
and when read back from a controller file or a settings file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_fields
from ..errors import UserError


class ControlError(UserError):
    """A controller cannot be trained or applied as asked (one line: what and why)."""


@dataclass(frozen=True)
class ControllerConfig:
    """The controller network: what it listens to and how large it is.

    Attributes:
        sample_rate: Hz the controller listens at (inputs and references are resampled to
            it); its chain's parameter ranges are those of this rate.
        n_fft: analysis window of the log-mel frames, samples.
        n_mels: mel bands.
        channels: feature channels of the encoder.
        dilations: one residual block of dilated convolutions over time per entry (frames).
        kernel_size: taps of each of those convolutions.
        hidden: width of the head.
        per_frame: predict settings per 10 ms frame (an automation curve) instead of once
            per clip.
        reference: condition on a reference recording ("make it sound like this").
        min_reference_seconds: the shortest reference (and input) it analyses.
        level_match: with a reference and an output ``gain`` in the chain, that gain starts
            from the level difference of the reference and the input (the power of their
            long-term average log-mel spectra, active frames only) and the head predicts a
            correction to it, instead of the whole level from scratch. Off by default: it
            halves the loudness error but not the spectral one (docs/control.md).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    n_mels: int = 64
    channels: int = 96
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel_size: int = 3
    hidden: int = 256
    per_frame: bool = False
    reference: bool = True
    min_reference_seconds: float = 0.5
    level_match: bool = False

    def __post_init__(self):
        check_fields(self, ranges={
            "sample_rate": (8000, 96000), "n_fft": (64, 8192), "n_mels": (8, 256),
            "channels": (4, 1024), "dilations": (1, 1024), "kernel_size": (1, 15),
            "hidden": (4, 4096), "min_reference_seconds": (0.05, 60.0)})
        if not 1 <= len(self.dilations) <= 16:
            raise ValueError(f"dilations must have 1 to 16 entries, got {self.dilations!r}")
        if self.n_fft // 2 + 1 < self.n_mels:
            raise ValueError(f"n_fft {self.n_fft} gives fewer bins than {self.n_mels} mel bands")


@dataclass(frozen=True)
class ControlDataConfig:
    """How training examples are drawn.

    Attributes:
        segment_seconds: length of each input (and target) example.
        reference_seconds: length of each reference.
        level_db_range: (style) the recording's level is shifted by a gain drawn uniformly in
            this range (dB) before any device, so level-dependent devices see every regime.
        held_out_fraction: (style, and pairs with fewer than 5 files) the last part of each
            file kept for validation, at most ``held_out_max_seconds``.
        held_out_max_seconds: upper bound of that tail.
        min_level_db: windows quieter than this (RMS, dBFS) are drawn again.
        workers: worker processes that render examples through the real devices.
        input_processed: (style) the fraction of examples whose input went through the
            chain with random settings of its own before the controller hears it. 0: the
            input is the recording itself (the target is that part processed: the
            controller has to read only the reference's settings); 1: every input carries
            processing of its own that the controller has to undo too (DeepAFx-ST
            corrupts 75 % of its inputs with a random EQ).
    """

    segment_seconds: float = 2.0
    reference_seconds: float = 2.0
    level_db_range: tuple[float, float] = (-18.0, 0.0)
    held_out_fraction: float = 0.15
    held_out_max_seconds: float = 20.0
    min_level_db: float = -50.0
    workers: int = 2
    input_processed: float = 1.0

    def __post_init__(self):
        check_fields(self, ranges={
            "segment_seconds": (0.1, 600.0), "reference_seconds": (0.1, 600.0),
            "input_processed": (0.0, 1.0),
            "level_db_range": (-80.0, 24.0), "held_out_fraction": (0.0, 0.9),
            "held_out_max_seconds": (0.0, 3600.0), "min_level_db": (-120.0, 0.0),
            "workers": (0, 64)})
        if len(self.level_db_range) != 2 or self.level_db_range[0] > self.level_db_range[1]:
            raise ValueError(f"level_db_range must be (low, high), got {self.level_db_range!r}")
