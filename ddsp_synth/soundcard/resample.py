"""A streaming resampler with a fixed, known delay, between the sound card's rate and the model's.

Live playing needs what a file resampler does not promise: the same output however the input
is cut into blocks, an output count that depends only on the input count, and a delay that is
known to the sample, so the latency the engine reports is the latency it has. This is a
Kaiser-windowed sinc interpolator evaluated at every output instant (a polyphase table of the
rate ratio's phases) with a half-width of ``half_width_s`` on each side: it delays the signal by
exactly ``half_width_s`` and needs no input beyond the output instant.
"""

from __future__ import annotations

from math import gcd

import numpy as np

#: 1 ms each side: 1 ms of delay per conversion, a 2.5 kHz wide transition band at 48 kHz
#: and 16 kHz (stopband below -80 dB from 8.5 kHz: the model's band ends at 8 kHz)
HALF_WIDTH_S = 0.001
CUTOFF_FRACTION = 0.9  # of the lower Nyquist frequency
KAISER_BETA = 8.0


class StreamResampler:
    """Mono float32 audio at ``rate_in`` -> ``rate_out`` in blocks of any length.

    Output sample ``j`` is the band-limited input at time ``j / rate_out - delay_s``. It is
    computed as soon as the input reaches that instant plus the half-width, so after
    ``n_in`` input samples exactly :meth:`n_out` ``(n_in)`` outputs have been returned,
    whatever the block lengths were.

    Args:
        rate_in, rate_out: sample rates in Hz (whole numbers).
        half_width_s: the interpolation kernel reaches this far each side; it is also the
            delay. Rounded to whole input samples.
    """

    def __init__(self, rate_in: int, rate_out: int, half_width_s: float = HALF_WIDTH_S):
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} and {rate_out} Hz")
        g = gcd(int(rate_in), int(rate_out))
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.up, self.down = self.rate_out // g, self.rate_in // g  # output j at input j*down/up
        self.half_taps = max(1, round(half_width_s * self.rate_in))
        self.delay_s = self.half_taps / self.rate_in
        self.table = _phase_table(self.up, self.half_taps,
                                  CUTOFF_FRACTION * min(1.0, self.rate_out / self.rate_in))
        self.reset()

    def reset(self) -> None:
        """A fresh stream: silence before the first sample."""
        self.history = np.zeros(2 * self.half_taps, np.float32)  # the last inputs, newest last
        self.n_in = 0
        self.n_done = 0  # outputs returned so far

    def n_out(self, n_in: int) -> int:
        """Outputs available after ``n_in`` input samples: output ``j`` needs the input up
        to its instant ``j * down / up`` (and none is made before the first input)."""
        return n_in * self.up // self.down + 1 if n_in > 0 else 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """Append input samples; return the outputs that became computable: [k] float32."""
        block = np.asarray(block, np.float32)
        self.history = np.concatenate([self.history, block])
        self.n_in += len(block)
        j = np.arange(self.n_done, self.n_out(self.n_in), dtype=np.int64)
        if len(j) == 0:
            return np.zeros(0, np.float32)
        # output j covers input samples ceil(p_j) - 2K .. ceil(p_j) - 1, p_j = j * down / up
        last = -(-(j * self.down) // self.up)  # ceil(p_j), one past the newest input used
        first_in_history = self.n_in - len(self.history)
        start = last - 2 * self.half_taps - first_in_history
        taps = self.history[start[:, None] + np.arange(2 * self.half_taps)]
        out = np.einsum("jk,jk->j", taps, self.table[(j * self.down) % self.up])
        self.n_done += len(j)
        # the next output's first tap is at least at n_in - 2K: older inputs are done with
        self.history = self.history[-2 * self.half_taps:]
        return out.astype(np.float32)


def _phase_table(n_phases: int, half_taps: int, cutoff: float) -> np.ndarray:
    """[n_phases, 2 * half_taps] interpolation weights, each row summing to 1.

    Row ``r`` is for an output instant ``r / n_phases`` of an input sample before the next
    whole input sample; tap ``i`` weighs input ``ceil(p) - 2K + i``, at distance
    ``K - i - delta`` (input samples) from the delayed instant, ``delta = ceil(p) - p``.
    ``cutoff`` is the passband edge as a fraction of the input's Nyquist frequency.
    """
    frac = np.arange(n_phases) / n_phases
    delta = np.where(frac > 0, 1.0 - frac, 0.0)
    t = half_taps - np.arange(2 * half_taps)[None, :] - delta[:, None]
    w = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (t / half_taps) ** 2, 0.0, 1.0)))
    h = cutoff * np.sinc(cutoff * t) * w
    return (h / h.sum(axis=1, keepdims=True)).astype(np.float32)
