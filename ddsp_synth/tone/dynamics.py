"""Estimating the rack's compressor from two loudness distributions.

A compressor narrows the distribution of a signal's short-term loudness: what is above its
threshold comes down by ``1 - 1/ratio`` of its excess. The reference's distribution (the
loudness of its sounding 400 ms blocks) says how compressed it is; the output's says how
compressed it is now. When the reference's loudness range (95th minus 10th percentile) is
not narrower than the output's by more than a tolerance, the compressor stays neutral: an
expander is not in the rack, and a performance that is simply more even needs nothing.

Otherwise the threshold and ratio are searched on the output itself: for each candidate the
output's block loudness after the compressor is computed and compared with the reference's
distribution (its quantiles, each relative to the median: the shape, whatever the level).
The compressor's detector is the twin's own (JUCE's peak envelope with its attack and
release); its gain is applied to the K-weighted signal rather than the K-weighting to the
compressed signal (the gain moves slowly next to the K-filter's few milliseconds of memory),
on 0.5 ms pieces, so that one candidate costs a few array operations instead of a render. A coarse grid
(thresholds at percentiles of the detected level, ratios log-spaced) is refined once
around its best point; the winner is then rendered through the twin to report the range
it gives. Attack and release stay at typical values: two loudness distributions say how
much to compress, hardly how fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..stages.twins import Compressor, time_coefficient
from ..dsp import iir
from ..dsp.loudness import (active_block_loudness, active_blocks, blocks_of, gated_loudness,
                       integrated_loudness, loudness_spread, weighted_power)

NEUTRAL_THRESHOLD_DB = 0.0
NEUTRAL_RATIO = 1.0


@dataclass(frozen=True)
class DynamicsConfig:
    """Settings of :func:`fit_compressor`.

    Attributes:
        attack_ms, release_ms: the compressor's time constants (not estimated).
        tolerance_lu: the reference's loudness range must be this much narrower than the
            output's before the compressor does anything.
        threshold_percentiles: the coarse grid of thresholds, as percentiles of the
            detected level over the sounding part of the output.
        ratios: the coarse grid of ratios.
        refine_points: points per axis of the finer grid around the coarse grid's best.
        shape_percentiles: quantiles compared between the distributions.
        max_seconds: the search runs on at most this much of the output (its middle).
    """

    attack_ms: float = 10.0
    release_ms: float = 100.0
    tolerance_lu: float = 1.0
    threshold_percentiles: tuple[float, ...] = tuple(range(5, 95, 10))
    ratios: tuple[float, ...] = (1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 6.0, 9.0, 14.0, 20.0)
    refine_points: int = 5
    shape_percentiles: tuple[float, ...] = tuple(range(10, 100, 5))
    max_seconds: float = 60.0


@dataclass(frozen=True)
class CompressorFit:
    """The estimate and the distributions behind it.

    Attributes:
        threshold_db, ratio: the compressor's settings (0 dB and 1: neutral).
        attack_ms, release_ms: its time constants.
        output_range_lu: the output's loudness range before the compressor.
        reference_range_lu: the reference's.
        fitted_range_lu: the output's after the compressor (rendered by its twin).
    """

    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    output_range_lu: float
    reference_range_lu: float
    fitted_range_lu: float

    @property
    def settings(self) -> np.ndarray:
        """[4] threshold_db, ratio, attack_ms, release_ms (the twin's order)."""
        return np.array([self.threshold_db, self.ratio, self.attack_ms, self.release_ms])


def _middle(audio: np.ndarray, sample_rate: int, max_seconds: float) -> np.ndarray:
    n = int(max_seconds * sample_rate)
    if len(audio) <= n:
        return audio
    start = (len(audio) - n) // 2
    return audio[start : start + n]


class _LevelModel:
    """The output's active block loudness after a compressor, for any threshold and ratio.

    Args:
        audio: [n_samples] the output as it reaches the compressor.
    """

    def __init__(self, audio: np.ndarray, sample_rate: int, config: DynamicsConfig):
        self.audio = torch.tensor(audio, dtype=torch.float32)[None]
        self.sample_rate = sample_rate
        self.config = config
        env, _ = iir.ballistics(
            self.audio.abs(), time_coefficient(torch.tensor([[config.attack_ms]]), sample_rate),
            time_coefficient(torch.tensor([[config.release_ms]]), sample_rate))
        env_db = 20.0 * np.log10(np.maximum(env[0].numpy().astype(np.float64), 1e-10))
        power = weighted_power(audio[None], sample_rate)
        # 0.5 ms pieces: the envelope hardly moves within one (its attack is milliseconds)
        self.piece = max(1, sample_rate // 2000)
        n = len(power) // self.piece * self.piece
        self.env_db = env_db[:n].reshape(-1, self.piece).mean(axis=1)
        self.power = power[:n].reshape(-1, self.piece).mean(axis=1)
        self.sounding_db = env_db

    def _gain_power(self, threshold_db: float, ratio: float) -> np.ndarray:
        over = np.maximum(self.env_db - threshold_db, 0.0)
        return 10.0 ** (over * (1.0 / ratio - 1.0) / 10.0)

    def blocks(self, threshold_db: float, ratio: float) -> np.ndarray:
        """Active block loudness (LUFS) after the compressor (gain on the K-weighted
        signal)."""
        return active_blocks(blocks_of(self.power * self._gain_power(threshold_db, ratio),
                                       self.sample_rate / self.piece))

    def reduction_db(self, threshold_db: float, ratio: float) -> float:
        """How much the compressor lowers the output's integrated loudness (LU)."""
        rate = self.sample_rate / self.piece
        before = gated_loudness(blocks_of(self.power, rate))
        after = gated_loudness(blocks_of(self.power * self._gain_power(threshold_db, ratio),
                                         rate))
        return before - after if np.isfinite(before) and np.isfinite(after) else 0.0

    def rendered_blocks(self, threshold_db: float, ratio: float) -> np.ndarray:
        """The same through the compressor's twin, then K-weighted (exact)."""
        p = torch.tensor([[threshold_db, ratio, self.config.attack_ms,
                           self.config.release_ms]], dtype=torch.float32)
        with torch.no_grad():
            y, _ = Compressor(self.sample_rate)(self.audio, p)
        return active_block_loudness(y.numpy().astype(np.float64), self.sample_rate)


def _shape(blocks: np.ndarray, percentiles) -> np.ndarray:
    """Quantiles of block loudness relative to their median."""
    q = np.percentile(blocks, percentiles)
    return q - np.median(blocks)


def _search(model: _LevelModel, thresholds, ratios, ref_shape, config,
            max_reduction_db: float = np.inf) -> tuple | None:
    """(error, threshold, ratio) of the best grid point that takes away at most
    ``max_reduction_db`` of level (None: no such point)."""
    best = None
    for t in thresholds:
        for r in ratios:
            if model.reduction_db(float(t), float(r)) > max_reduction_db:
                continue
            blocks = model.blocks(float(t), float(r))
            if len(blocks) < 2:
                continue
            err = float(np.sqrt(np.mean(np.square(
                _shape(blocks, config.shape_percentiles) - ref_shape))))
            if best is None or err < best[0]:
                best = (err, float(t), float(r))
    return best


def fit_compressor(audio: np.ndarray, sample_rate: int, reference_blocks: np.ndarray,
                   threshold_range_db: tuple[float, float] = (-60.0, 0.0),
                   ratio_max: float = 20.0, config: DynamicsConfig = DynamicsConfig(),
                   max_reduction_db: float = np.inf) -> CompressorFit:
    """The compressor that gives ``audio`` the shape of the reference's loudness
    distribution (neutral unless the reference's loudness range is narrower).

    Args:
        audio: [n_samples] the output as it reaches the compressor (after the EQ).
        sample_rate: Hz.
        reference_blocks: the reference's active block loudness
            (:func:`~ddsp_synth.dsp.loudness.active_block_loudness`).
        threshold_range_db, ratio_max: the compressor's declared ranges.
        max_reduction_db: settings that lower the output's level by more than this are not
            considered (the output gain could not make it up).
    """
    audio = _middle(np.asarray(audio, np.float32), sample_rate, config.max_seconds)
    model = _LevelModel(audio, sample_rate, config)
    out_range = loudness_spread(active_block_loudness(audio[None].astype(np.float64),
                                                      sample_rate))
    ref_range = loudness_spread(reference_blocks)
    neutral = CompressorFit(NEUTRAL_THRESHOLD_DB, NEUTRAL_RATIO, config.attack_ms,
                            config.release_ms, out_range, ref_range, out_range)
    gate = integrated_loudness(audio[None].astype(np.float64), sample_rate) - 20.0
    sounding = model.sounding_db[model.sounding_db > gate]
    if ref_range >= out_range - config.tolerance_lu or len(sounding) == 0 \
            or len(reference_blocks) < 2:
        return neutral
    ref_shape = _shape(reference_blocks, config.shape_percentiles)
    lo, hi = threshold_range_db
    thresholds = np.clip(np.percentile(sounding, config.threshold_percentiles), lo, hi)
    ratios = np.minimum(config.ratios, ratio_max)
    best = _search(model, np.unique(thresholds), np.unique(ratios), ref_shape, config,
                   max_reduction_db)
    if best is None:
        return neutral
    _, t, r = best
    t_step = float(np.median(np.diff(np.unique(thresholds)))) if len(thresholds) > 1 else 3.0
    log_step = float(np.median(np.diff(np.log(ratios))))
    fine_t = np.clip(t + np.linspace(-t_step, t_step, config.refine_points), lo, hi)
    fine_r = np.clip(r * np.exp(np.linspace(-log_step, log_step, config.refine_points)),
                     NEUTRAL_RATIO, ratio_max)
    _, t, r = _search(model, np.append(fine_t, t), np.append(fine_r, r), ref_shape, config,
                      max_reduction_db)
    fitted = loudness_spread(model.rendered_blocks(t, r))
    return CompressorFit(t, r, config.attack_ms, config.release_ms, out_range, ref_range,
                         fitted)
