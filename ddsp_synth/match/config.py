"""Settings of ``match`` and its error class."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from ..gradients.cma_search import CMAConfig
from ..gradients.spsa import SPSAConfig

OUTPUT_FILES = ("preset.json", "matched.wav", "report.json", "match.png")
SILENCE_PEAK = 1e-4  # -80 dBFS


class MatchError(UserError):
    """A bad input or setting of ``match``, with a one-line message for the user."""


@dataclass(frozen=True)
class MatchConfig:
    """Settings of :func:`~ddsp_synth.match.match` (defaults tuned on ``bench/bench_match.py``).

    Attributes:
        whole_clip_seconds: a common dry/target overlap up to this long is compared whole.
        analysis_seconds: length of each analysis window of a longer clip.
        max_windows: at most this many windows: the loudest, then those that cover the
            levels the others miss (:mod:`.windows`).
        level_frame_seconds, level_bin_db, level_range_db, level_frames_per_bin: frames of
            the levels the windows cover, the width of a level bin, the range below the
            loudest frame counted, and the frames of each level the windows should hold.
        preroll_seconds: audio processed before each window and left out of the loss, so
            that envelopes and filter states are as they were in the target.
        max_offset_ms: largest offset between dry and target that is aligned automatically.
        min_seconds: shortest usable overlap of dry and target.
        report_max_seconds: the before/after distances use at most this much audio.
        fft_sizes: FFT sizes of the matching loss.
        log_weight, linear_weight: weights of its log and linear magnitude terms.
        ltas_weight, ltas_fft, ltas_smoothing_octaves: the distance of long-term average
            spectra, smoothed over these widths in log frequency.
        steps: default iterations per method (optimiser steps; CMA-ES generations); most runs
            end earlier, converged or at ``max_seconds``.
        max_seconds: default optimisation time budget per method.
        learning_rate: Adam's peak rate on normalised parameters (cosine-decayed to
            ``final_lr_fraction`` of it), per method; after the first frequency sweep it is
            scaled by ``refine_lr_factor``.
        patience, tolerance: a gradient method stops ("converged") once its best loss has
            improved by less than ``tolerance`` (relative) in ``patience`` iterations after
            the last sweep.
        good_enough: every method stops ("matched") once its loss is below this fraction of
            the dry file's loss (an exact match; recordings of real devices rarely get there).
        n_starts: parallel starts of the gradient methods (autodiff, proxy: defaults + random
            draws; spsa: the best of the random search); the first frequency sweep (or, with
            no frequency to sweep, the first ``sweep_at`` fraction) continues from the best of
            them alone.
        sweep_at: fractions of the steps at which each device's frequency (and gain) is
            grid-searched, every other parameter kept (gradients cannot find a filter
            frequency that is far off).
        sweep_points: frequency grid points (log-spaced over the range), per method (fewer
            through the proxies, whose forward pass is the costly one).
        sweep_gains_db: gains tried at each frequency, for devices with a gain.
        informed_sweep_points, informed_sweep_gains_db: the sweep's frequency points and
            gains (relative to the current one) once informed starts exist.
        search_points: random candidates (and the defaults) evaluated on the real devices to
            pick the start of ``spsa``, ``hybrid`` and ``cma``.
        spsa: SPSA settings (epsilon decays from ``spsa_epsilon_start`` to ``spsa.epsilon``).
        spsa_epsilon_start: initial SPSA perturbation.
        cma: CMA-ES settings.
        cma_sweep_at: fraction of the time after which CMA-ES stops for the frequency sweep
            and starts again from its result with ``cma_refine_sigma``.
        cma_informed_sigma: CMA-ES's first step size when it starts from an informed guess.
        fallback_above, fallback_min_seconds, fallback_sigma: a gradient method that
            converges, or uses up its default steps, with its loss above
            ``fallback_above`` of the dry file's hands the rest of the time (if at least
            ``fallback_min_seconds``) to CMA-ES from its best point, with this first step
            size. Steps the caller asks for (``match(steps=...)``, ``--steps``) end the
            search where they run out.
        same_sound_db: two settings whose 1/3-octave band levels differ by less than this
            (RMS over time, in quadrature over the bands) sound the same (the
            identifiability report, :mod:`.identify`).
        identify_max_fraction: at most this share of the time budget is kept for it.
        identify_close_rel_spec: above this rel_spec the match is not close, and the report
            says that what it pins down is pinned down around the result only.
        n_workers: worker processes running the real devices.
        guess_max_seconds: the informed starts (:mod:`.guess`) read at most this much of
            the common signal (transfer estimate, envelopes).
        guess_frame_seconds: frames of the envelope levels the informed starts compare.
        guess_budget_fraction: the informed starts' level search stops after this share of
            the time budget.
    """

    whole_clip_seconds: float = 6.0
    analysis_seconds: float = 1.5
    max_windows: int = 3
    level_frame_seconds: float = 0.05
    level_bin_db: float = 3.0
    level_range_db: float = 50.0
    level_frames_per_bin: int = 6
    preroll_seconds: float = 0.5
    max_offset_ms: float = 50.0
    min_seconds: float = 0.5
    report_max_seconds: float = 30.0
    fft_sizes: tuple[int, ...] = (2048, 512, 128)
    log_weight: float = 1.0
    linear_weight: float = 1.0
    ltas_weight: float = 1.0
    ltas_fft: int = 2048
    ltas_smoothing_octaves: tuple[float, ...] = (0.1, 0.33, 1.0, 2.0)
    steps: dict = field(default_factory=lambda: {
        "autodiff": 400, "proxy": 300, "hybrid": 300, "spsa": 600, "cma": 3000})
    max_seconds: dict = field(default_factory=lambda: {
        "autodiff": 45.0, "proxy": 45.0, "hybrid": 45.0, "spsa": 45.0, "cma": 45.0})
    learning_rate: dict = field(default_factory=lambda: {
        "autodiff": 0.05, "proxy": 0.05, "hybrid": 0.05, "spsa": 0.03})
    final_lr_fraction: float = 0.05
    refine_lr_factor: float = 0.2
    patience: dict = field(default_factory=lambda: {
        "autodiff": 40, "proxy": 40, "hybrid": 40, "spsa": 150})
    tolerance: float = 1e-3
    good_enough: float = 1e-3
    n_starts: dict = field(default_factory=lambda: {"autodiff": 4, "proxy": 2, "hybrid": 1,
                                                    "spsa": 2})
    sweep_at: tuple[float, ...] = (0.2, 0.5)
    sweep_points: dict = field(default_factory=lambda: {
        "autodiff": 33, "proxy": 17, "hybrid": 33, "spsa": 33})
    sweep_gains_db: tuple[float, ...] = (-12.0, -6.0, 6.0, 12.0)
    informed_sweep_points: int = 17
    informed_sweep_gains_db: tuple[float, ...] = (0.0, -6.0, 6.0)
    search_points: int = 32
    spsa: SPSAConfig = SPSAConfig(epsilon=0.01, n_pairs=4)
    spsa_epsilon_start: float = 0.05
    cma: CMAConfig = CMAConfig()
    cma_sweep_at: float = 0.4
    cma_refine_sigma: float = 0.1
    cma_informed_sigma: float = 0.1
    fallback_above: float = 0.02
    fallback_after_steps: bool = True  # False when the caller set the steps
    fallback_min_seconds: float = 1.0
    fallback_sigma: float = 0.15
    same_sound_db: float = 1.0
    identify_max_fraction: float = 0.25
    identify_close_rel_spec: float = 0.1
    n_workers: int = 2
    guess_max_seconds: float = 30.0
    guess_frame_seconds: float = 0.02
    guess_budget_fraction: float = 0.15
