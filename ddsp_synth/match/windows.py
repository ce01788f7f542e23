"""Where ``match`` listens: the whole clip, or a few windows that cover its dynamics.

A compressor's threshold and a distortion's drive trade off on loud audio alone (a lower
threshold and more drive sound the same); the soft passages, which the compressor leaves
alone, tell them apart. So a clip up to ``whole_clip_seconds`` is compared whole, and a
longer one through up to ``max_windows`` windows of ``analysis_seconds``: the loudest first,
then, greedily, the window that adds the most frames at levels (``level_bin_db`` bins of
the frame levels of the dry signal) that the chosen windows hold fewer than
``level_frames_per_bin`` frames of; none is added once every level present is covered. Every window is
rendered with a pre-roll (zeros before the start of the file), so that envelopes and filter
states are as they were in the target; the pre-roll is left out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import MatchConfig

LEVEL_FLOOR = 1e-10  # power floor of the frame levels


@dataclass(frozen=True)
class Windows:
    """Equal-length windows of the common dry signal.

    Attributes:
        starts: [W] first compared sample of each window (in the common signal).
        length: compared samples per window.
        preroll: samples rendered before each start and left out of the loss.
        levels_db: [W] median frame level of each window (dB re full scale, RMS).
    """

    starts: tuple[int, ...]
    length: int
    preroll: int
    levels_db: tuple[float, ...]

    def cut(self, audio: np.ndarray, with_preroll: bool = True) -> np.ndarray:
        """[n] -> [W, preroll + length] (or [W, length]): the windows of ``audio``, zeros
        before its start."""
        pre = self.preroll if with_preroll else 0
        padded = np.concatenate([np.zeros(self.preroll, np.float32),
                                 np.asarray(audio, np.float32)])
        return np.stack([padded[s + self.preroll - pre : s + self.preroll + self.length]
                         for s in self.starts])

    @property
    def compared_samples(self) -> int:
        return self.length * len(self.starts)


def frame_levels_db(audio: np.ndarray, frame: int) -> np.ndarray:
    """[n] -> [n // frame] RMS level of consecutive frames, dB re full scale."""
    n = len(audio) // frame
    x = np.asarray(audio[: n * frame], np.float64).reshape(n, frame)
    return 10 * np.log10(np.mean(x * x, axis=1) + LEVEL_FLOOR)


def _level_bins(levels_db: np.ndarray, config: MatchConfig) -> np.ndarray:
    """Bin index of each frame's level (-1: too quiet to count)."""
    top = float(levels_db.max())
    active = levels_db > top - config.level_range_db
    bins = np.floor((top - levels_db) / config.level_bin_db).astype(int)
    return np.where(active, bins, -1)


def analysis_windows(dry: np.ndarray, sample_rate: int,
                     config: MatchConfig = MatchConfig()) -> Windows:
    """The windows of ``dry`` [n] that ``match`` compares (see the module docstring)."""
    n = len(dry)
    frame = max(1, int(round(config.level_frame_seconds * sample_rate)))
    levels = frame_levels_db(dry, frame) if n >= frame else np.zeros(1)
    if n <= max(config.whole_clip_seconds, config.analysis_seconds) * sample_rate:
        return Windows((0,), n, 0, (float(np.median(levels)),))
    length = int(round(config.analysis_seconds * sample_rate))
    per = length // frame  # frames per window
    bins = _level_bins(levels, config)
    n_bins = int(bins.max()) + 1
    # frames of each level bin inside each candidate window (candidates start on frames)
    onehot = np.zeros((len(levels) + 1, n_bins))
    onehot[np.arange(len(levels))[bins >= 0] + 1, bins[bins >= 0]] = 1
    counts = np.cumsum(onehot, 0)
    cands = np.arange(0, len(levels) - per + 1)
    in_window = counts[cands + per] - counts[cands]  # [n_cands, n_bins]
    power = np.concatenate([[0.0], np.cumsum(10 ** (levels / 10))])
    energy = power[cands + per] - power[cands]
    chosen = [int(np.argmax(energy))]
    need = np.minimum(counts[-1], config.level_frames_per_bin)  # a bin rarer than that: all
    held = in_window[chosen[0]].copy()
    # a window mostly of silence says little: at least half its frames must count
    free = (np.abs(cands - cands[chosen[0]]) >= per) & (in_window.sum(1) >= per / 2)
    while len(chosen) < config.max_windows:
        gain = np.minimum(in_window, np.maximum(need - held, 0)[None]).sum(1)
        gain = np.where(free, gain, -1)
        best = int(np.argmax(gain))
        if gain[best] <= 0:
            break
        chosen.append(best)
        held += in_window[best]
        free &= np.abs(cands - cands[best]) >= per
    chosen.sort(key=lambda c: cands[c])
    starts = tuple(int(cands[c] * frame) for c in chosen)
    medians = tuple(float(np.median(levels[cands[c] : cands[c] + per])) for c in chosen)
    return Windows(starts, length, int(round(config.preroll_seconds * sample_rate)), medians)
