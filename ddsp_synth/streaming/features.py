"""Streaming front end: f0 and loudness from audio arriving block by block.

Frame ``t`` (centred on sample ``t * hop``, as on the offline grid) is emitted as soon as
sample ``t * hop + window / 2 - 1`` has arrived: half a CREPE window (512 samples = 32 ms at
16 kHz) of look-ahead. Loudness equals the offline frame exactly; f0 uses the same CREPE model,
bin refinement and harmonic check as :mod:`ddsp_synth.pitch`, decoded by online Viterbi
filters (the best-scoring current bin, then the best-scoring current divisor, no
backtracking; the divisor filter switches for less and weighs the evidence for a divisor
below 100 Hz from a note's first frame: ``harmonic_check.STREAM_LOW_HZ``; it follows the
pitch it plays through a held note's octave flips: ``harmonic_check.STREAM_CARRY_HOLD``; and
a division by 4, which offline gets a second opinion, is played as one by 2:
``harmonic_check.STREAM_DOUBT_PLAYED``). The harmonic check reads the same window, so it
adds no latency.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..dsp.interpolation import n_frames_for
from ..dsp.spectral import window_loudness_db
from ..dsp.units import cents_to_hz
from ..errors import InputError
from ..features import FeatureConfig
from .. import harmonic_check
from ..crepe_grid import CREPE_SAMPLE_RATE, CREPE_WINDOW
from ..pitch import (STREAM_JUMP_LOG_PROB, ViterbiStep, bin_range, crepe_runner,
                     log_observations, normalise_frames, refine_cents)


@dataclass
class Frame:
    """One analysed frame: f0 in Hz, CREPE confidence, A-weighted loudness in dB."""

    f0_hz: float
    confidence: float
    loudness_db: float


class StreamingFeatures:
    """Causal f0 and loudness from audio arriving in blocks.

    Frame ``t`` (centred on sample ``t * hop``, like the offline grid) is emitted as soon as
    sample ``t * hop + window / 2 - 1`` has arrived: a look-ahead of ``latency_samples``.
    Loudness equals the offline :func:`ddsp_synth.features.compute_loudness` frame for
    frame; f0 uses the same CREPE model, bin refinement and harmonic check, decoded by online
    Viterbi filters (best current end state, no backtracking), so it cannot use the future.

    Only models at 16 kHz (CREPE's rate) are supported here; others raise InputError.
    """

    def __init__(self, config: FeatureConfig, crepe_model: str | None = None):
        if config.sample_rate != CREPE_SAMPLE_RATE:
            raise InputError(f"streaming features need a 16 kHz model, this one is "
                             f"{config.sample_rate} Hz")
        self.config = config
        self.hop = config.hop
        self.crepe_model = crepe_model or config.crepe_model
        if config.loudness_n_fft != CREPE_WINDOW:
            raise InputError("streaming features need loudness_n_fft == 1024")
        self.half = CREPE_WINDOW // 2
        self.latency_samples = self.half
        self.min_bin, self.max_bin = bin_range(config.f0_min_hz, config.f0_max_hz)
        self.viterbi = ViterbiStep(jump_log_prob=STREAM_JUMP_LOG_PROB)
        self.check_min_hz = max(config.f0_min_hz, harmonic_check.CHECK_MIN_HZ)
        self._crepe = crepe_runner(self.crepe_model, threads=1)  # one core, as live
        self.reset()

    def reset(self) -> None:
        self.buffer = np.zeros(self.half, np.float32)  # zero padding before the start
        self.next_frame = 0
        self.consumed = 0  # samples dropped from the front of the buffer
        self.score = None
        self.divisor_score = None
        self.last_f0 = None  # (tracked pitch before the check, frames since it changed)
        self.played = None  # (pitch after the check in Hz, frames it has held)
        self.since_onset = harmonic_check.ONSET_FRAMES  # frames since a jump or an unsure one
        self.loudness = deque(maxlen=harmonic_check.STREAM_ATTACK_FRAMES + 1)  # dB, recent
        self.total_in = 0

    @torch.inference_mode()
    def _frame(self, window: np.ndarray) -> Frame:
        x = torch.from_numpy(window)[None]
        # The offline loudness of the one frame centred in this window.
        loud = window_loudness_db(window, self.config.sample_rate)
        act = self._crepe(normalise_frames(x).numpy())[0].astype(np.float64)
        log_obs = log_observations(act, self.min_bin, self.max_bin)
        if self.score is None:
            self.score = log_obs.copy()
        else:
            self.score, _ = self.viterbi(self.score, log_obs)
        b = int(np.argmax(self.score))
        cents = refine_cents(act[None], np.array([b]), self.min_bin, self.max_bin)[0]
        f0_hz = float(cents_to_hz(cents))
        self.loudness.append(loud)
        # the window's spectrum, once for the check and the lift
        spec = harmonic_check.log_spectrum_db(np.asarray(window, np.float64)[None])
        return Frame(self._checked(window, spec, act, f0_hz, float(act[b])), float(act[b]),
                     loud)

    def _checked(self, window: np.ndarray, spec: np.ndarray, act: np.ndarray, f0_hz: float,
                 confidence: float) -> float:
        """The pitch played (Hz): ``f0_hz`` over the harmonic check's divisor, or an octave
        up at an attack read an octave low (:func:`harmonic_check.stream_lift`); ``spec``:
        the window's [1, N_LOG_BINS] log spectrum."""
        previous_hz = None if self.last_f0 is None else self.last_f0[0]
        divisor = self._divisor(window, spec, act, f0_hz, confidence, previous_hz)
        if divisor == harmonic_check.DOUBT_DIVISOR:  # no second opinion live
            divisor = harmonic_check.STREAM_DOUBT_PLAYED
        played = f0_hz / divisor
        self.since_onset = harmonic_check.frames_since_onset(previous_hz, f0_hz, confidence,
                                                             self.since_onset)
        if divisor == 1 and harmonic_check.stream_lift(spec, f0_hz, self.since_onset,
                                                       self.config.f0_max_hz):
            played = 2.0 * f0_hz  # an attack read an octave low
        held = (self.played is not None and abs(1200.0 * np.log2(played / self.played[0]))
                <= harmonic_check.ONSET_CHANGE_CENTS)
        self.played = (played, self.played[1] + 1 if held else 0)
        return played

    def _divisor(self, window: np.ndarray, spec: np.ndarray, act: np.ndarray, f0_hz: float,
                 confidence: float, previous_hz: float | None) -> int:
        """The harmonic check's divisor for this frame (online divisor filter);
        ``previous_hz``: the last frame's tracked pitch (None at the start)."""
        f0 = np.array([f0_hz])
        since = harmonic_check.frames_since_change(f0, self.last_f0)
        self.last_f0 = (f0_hz, int(since[0]))
        low = harmonic_check.stream_low(f0)
        weight = harmonic_check.evidence_weight(since, np.array([confidence]), low)
        feats = harmonic_check.check_features(window[None], act[None], f0, spec)
        emission = harmonic_check.divisor_emissions(feats, f0, self.check_min_hz, weight)[0]
        self.divisor_score, _ = harmonic_check.divisor_advance(
            self.divisor_score, emission, harmonic_check.stream_switch_costs(low[0]),
            self._carry(previous_hz, f0_hz, confidence))
        return int(harmonic_check.DIVISORS[int(np.argmax(self.divisor_score))])

    def _carry(self, previous_hz: float | None, f0_hz: float,
               confidence: float) -> np.ndarray | None:
        """The free changes of divisor (:func:`harmonic_check.stream_carry`) where the pitch
        played has held long enough, CREPE is sure of this frame and it is no attack, else
        None."""
        if (previous_hz is None or self.played is None
                or confidence < harmonic_check.STREAM_CARRY_MIN_CONFIDENCE
                or self.played[1] < harmonic_check.STREAM_CARRY_HOLD
                or harmonic_check.is_attack(np.asarray(self.loudness))):
            return None
        return harmonic_check.stream_carry(previous_hz, f0_hz)

    def push(self, audio: np.ndarray) -> list[Frame]:
        """Append samples; return the frames that became complete (oldest first)."""
        audio = np.asarray(audio, np.float32)
        self.total_in += len(audio)
        self.buffer = np.concatenate([self.buffer, audio])
        frames = []
        while True:
            start = self.next_frame * self.hop - self.consumed  # window start in buffer
            if start + CREPE_WINDOW > len(self.buffer):
                break
            frames.append(self._frame(self.buffer[start : start + CREPE_WINDOW]))
            self.next_frame += 1
        drop = max(0, self.next_frame * self.hop - self.consumed)
        drop = min(drop, len(self.buffer))
        self.buffer = self.buffer[drop:]
        self.consumed += drop
        return frames

    def finish(self) -> list[Frame]:
        """Frames still waiting for look-ahead at the end of a signal (zero padded), so
        that a whole signal gives ``ceil(n_samples / hop)`` frames like offline analysis."""
        n_frames = n_frames_for(self.total_in, self.hop)
        first = self.next_frame
        if first >= n_frames:
            return []
        total_in = self.total_in
        frames = self.push(np.zeros(self.half + self.hop, np.float32))
        self.total_in = total_in
        return frames[: n_frames - first]
