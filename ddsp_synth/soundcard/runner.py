"""The real-time core: the sound card's callback, the model's worker thread and the schedule
between them. It knows nothing of JACK or PortAudio (see :mod:`.backends`).

Where the model runs: in a worker thread, not in the callback. One hop of the audio path
(CREPE tiny on a 64 ms window plus one ONNX synthesis step, 10 ms of sound) costs 3 ms back to
back and 4 to 5 ms paced as live (median; 99th percentile 5 to 8 ms, slowest 10 to 30 ms when
the machine is shared) on the project's 2-core machine; a block at 48 kHz lasts 1.3, 2.7 or
5.3 ms (64, 128, 256 samples), and a JACK callback that overruns its block stalls every client
of the server (a DAW included). So the
callback only copies: input into a ring buffer, output out of another, by absolute sample
index, no waiting, and one wake-up for the worker (releasing a lock the worker sleeps on:
it neither blocks nor gives up the interpreter lock). The worker reads the input ring, runs
the model and writes the output ring.

Latency, exactly: the output for card sample ``n`` is the path's output sample ``n - prefill``.
``prefill`` is the smallest count that lets a model running inside the callback be on time
(computed from the path's output-count function and the block length), plus ``margin`` whole
blocks for the worker to compute in. The latency from the input port to the output port is
``prefill`` plus the path's signal delay, whatever the machine does; a block whose samples the
worker has not written in time is played as silence where they are missing and counted late.

With the margin from the warm-up (no ``margin_ms``), a late block also moves the schedule: the
prefill grows by the samples that were missing (a *slip*), so the next block starts at the
first sample not yet played (nothing is skipped or repeated) and a hop as slow as that one is
on time from then on. A performance settles at the latency its slowest hops need, up to
:data:`MAX_SLIP_MS` more than it started with; every slip is kept for the report. With
``margin_ms`` the schedule never moves (tests and benchmarks that pin the latency).
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import sys
import threading
import time

import numpy as np

from ..audio_io import AudioError

#: how long the callback may wait for the interpreter lock while the worker holds it (the
#: interpreter's default, 5 ms, is longer than a 128-sample block at 48 kHz)
SWITCH_INTERVAL_S = 2e-4
#: ring capacity in samples (a power of two): 5.5 s at 48 kHz, far more than any lag allowed
RING_SAMPLES = 1 << 18
#: the worker falls this far behind the card (s) -> an error, not a recovery
MAX_WORKER_LAG_S = 4.0
#: SCHED_FIFO priorities, below the card's callback thread (JACK's is 10 and up): the model's
#: worker, then every other thread that takes the interpreter lock while playing (status,
#: recording, MIDI, JACK's notifications). A thread of ours that a busy neighbour could
#: preempt while it holds the lock would stall the callback and the worker with it.
WORKER_PRIORITY = 2
HELPER_PRIORITY = 1
MARGIN_FACTOR, WAKE_MS = 1.25, 0.5  # see margin_blocks_for
WAKE_TIMEOUT_S = 0.1  # the worker looks at the stop flag at least this often
MAX_LATE_KEPT = 1000  # late blocks whose time the report lists
#: how far late blocks may move the schedule (ms beyond the starting prefill)
MAX_SLIP_MS = 30.0


class LiveError(AudioError):
    """Live playing cannot start or go on; a one-line message for the user (an
    :class:`~ddsp_synth.audio_io.AudioError`, so the command line prints just the line)."""


class Ring:
    """A single-producer single-consumer ring of float32 samples, by absolute index.

    ``written`` counts every sample ever written; sample ``i`` sits at ``i % capacity`` until
    it is overwritten ``capacity`` samples later. Under CPython's interpreter lock an int
    attribute changes atomically, and the writer bumps ``written`` only after the samples are
    in, so a reader never sees a sample before it is complete.
    """

    def __init__(self, capacity: int = RING_SAMPLES):
        if capacity & (capacity - 1):
            raise ValueError("ring capacity must be a power of two")
        self.data = np.zeros(capacity, np.float32)
        self.capacity = capacity
        self.mask = capacity - 1
        self.written = 0

    def write(self, x: np.ndarray) -> None:
        n = len(x)
        i = self.written & self.mask
        first = min(n, self.capacity - i)
        self.data[i : i + first] = x[:first]
        if first < n:
            self.data[: n - first] = x[first:]
        self.written += n

    def _copy(self, out: np.ndarray, start: int) -> None:
        """``out[:] = samples[start : start + len(out)]`` (all written and not overwritten)."""
        n = len(out)
        i = start & self.mask
        first = min(n, self.capacity - i)
        out[:first] = self.data[i : i + first]
        if first < n:
            out[first:] = self.data[: n - first]

    def read(self, start: int, stop: int) -> np.ndarray:
        """A copy of samples ``start .. stop - 1``; LiveError if they were overwritten."""
        if self.written - start > self.capacity:
            raise LiveError("the model fell more than the ring's length behind the sound card")
        out = np.empty(stop - start, np.float32)
        self._copy(out, start)
        return out

    def read_into(self, out: np.ndarray, start: int) -> int:
        """Fill ``out`` with samples from ``start``: silence before 0 and past ``written``.

        Returns:
            how many samples at or after 0 were not written yet (0: on time).
        """
        n = len(out)
        written = self.written
        lo = min(max(start, 0), start + n)  # samples before 0: the stream has not begun
        hi = min(max(written, lo), start + n)
        if lo > start:
            out[: lo - start] = 0.0
        if hi > lo:
            self._copy(out[lo - start : hi - start], lo)
        if hi < start + n:
            out[hi - start :] = 0.0
        return start + n - hi


def set_realtime(priority: int | None) -> bool:
    """Put the calling thread on SCHED_FIFO at ``priority`` (None: back to the ordinary
    policy); False where the system does not allow it (then nothing changes)."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        if priority is None:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        else:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except OSError:
        return False


def sync_prefill(n_out, block_samples: int, device_rate: int) -> int:
    """The fewest samples of output delay at which a path computed inside the callback would
    never miss a block: max over block ends ``N`` of ``N - n_out(N)``.

    ``n_out(N)`` is periodic past the start with a period dividing ``device_rate`` (a second
    is a whole number of hops and resampler phases), so one second plus ``lcm(block, rate)``
    covers every case.
    """
    period = block_samples * device_rate // math.gcd(block_samples, device_rate)
    n_blocks = min(-(-(device_rate + period) // block_samples), 500_000)
    worst = 0
    for c in range(1, n_blocks + 1):
        n = c * block_samples
        worst = max(worst, n - n_out(n))
    return worst


def margin_blocks_for(compute_ms: list[float], block_samples: int, device_rate: int) -> int:
    """Whole blocks of margin for the worker: a quarter more than the warm-up's 99th
    percentile hop, plus the time to wake the worker, and at least one block."""
    p99 = float(np.percentile(compute_ms, 99)) if len(compute_ms) else 0.0
    need_ms = MARGIN_FACTOR * p99 + WAKE_MS
    return max(1, -(-int(need_ms * device_rate) // (1000 * block_samples)))


class LiveRunner:
    """The sound card's callback and the model's worker around one path.

    :meth:`start` (before the card starts) warms the model up on the worker's own thread and
    sets the margin from that warm-up; then the card calls :meth:`process` once per block.

    Args:
        path: an :class:`~.paths.AudioPath` or :class:`~.paths.MidiPath`.
        device_rate: the card's sample rate in Hz.
        block_samples: the card's block length in samples.
    """

    def __init__(self, path, device_rate: int, block_samples: int):
        self.path = path
        self.rate = device_rate
        self.block = block_samples
        self.sync_prefill = sync_prefill(path.n_out, block_samples, device_rate)
        self.slip_samples = 0  # added to the prefill by late blocks (see the module docstring)
        self.max_slip = 0  # none until start() sets the margin from the warm-up
        self.slips: list[tuple[int, int]] = []  # (card sample, prefill after the slip)
        self._set_margin(0)
        self.warmup_ms: list[float] = []
        self.audio_in = path.kind == "audio"
        self.inp = Ring() if self.audio_in else None
        self.out = Ring()
        self.sent = Ring()  # what went to the card: recording and the meters read it
        self.midi_pending = collections.deque()  # (arrival perf_counter, bytes) from threads
        self.n_clock = 0  # card samples handled by the callback
        self.late_blocks = 0
        self.late_samples = 0
        self.late_at: list[int] = []  # card sample of the first late blocks (diagnostics)
        self.callback_us = np.zeros(1 << 16, np.float32)  # the latest callbacks' durations
        self.n_callbacks = 0
        self._wake = threading.Lock()  # locked while the worker has nothing to do
        self._wake.acquire()
        self.error: BaseException | None = None
        self.worker_realtime = False
        self._t_prev = time.perf_counter()
        self._ready, self._go, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._worker = threading.Thread(target=self._work, name="ddsp-synth model", daemon=True)
        self._switch_interval = sys.getswitchinterval()

    def _set_margin(self, blocks: int) -> None:
        """The schedule: prefill and latency from the margin and the slips so far."""
        self.margin_blocks = blocks
        self.prefill = self.sync_prefill + blocks * self.block + self.slip_samples
        #: input port -> output port, in seconds (the card's own buffers come on top)
        self.latency_s = self.prefill / self.rate + self.path.delay_s

    def _slip(self, start: int, missing: int) -> None:
        """A late block at card sample ``start`` missed ``missing`` samples: delay the
        schedule by them, within :attr:`max_slip` (callback thread; no allocation beyond
        the report's bounded list)."""
        grow = min(missing, self.max_slip - self.slip_samples)
        if grow <= 0:
            return
        self.slip_samples += grow
        self._set_margin(self.margin_blocks)
        if len(self.slips) < MAX_LATE_KEPT:
            self.slips.append((start, self.prefill))

    # -- the callback (the card's thread) ------------------------------------------------
    def process(self, in_block, out_block: np.ndarray, midi_events=()) -> None:
        """One block: ``in_block`` [n] (None on the MIDI path) in, ``out_block`` [n] filled.

        ``midi_events``: (offset in the block, raw bytes) read from the card's MIDI port
        during this callback. Copies only; never waits.
        """
        t0 = time.perf_counter()
        n = len(out_block)
        start = self.n_clock
        if self.audio_in:
            self.inp.write(in_block)
        else:
            events = self.path.events
            for offset, data in midi_events:
                events.append((start + offset, data))
            pending = self.midi_pending
            while pending:  # arrived from another thread during the last block
                t_arrival, data = pending.popleft()
                offset = int((t_arrival - self._t_prev) * self.rate)
                events.append((start + min(max(offset, 0), n - 1), data))
        self.n_clock = start + n
        missing = self.out.read_into(out_block, start - self.prefill)
        if missing:
            self.late_blocks += 1
            self.late_samples += missing
            if len(self.late_at) < MAX_LATE_KEPT:
                self.late_at.append(start)
            if self.max_slip:
                self._slip(start, missing)
        self.sent.write(out_block)
        try:
            self._wake.release()
        except RuntimeError:  # already released: the worker has not gone back to sleep yet
            pass
        self._t_prev = t0
        self.callback_us[self.n_callbacks & 0xFFFF] = 1e6 * (time.perf_counter() - t0)
        self.n_callbacks += 1

    def post_midi(self, data: bytes) -> None:
        """A MIDI message from another thread (e.g. rtmidi's): stamped at the next block."""
        self.midi_pending.append((time.perf_counter(), bytes(data)))

    # -- the worker ----------------------------------------------------------------------
    def _work(self) -> None:
        self.worker_realtime = set_realtime(WORKER_PRIORITY)
        try:
            # on this thread: its first hops pay for the inference libraries' per-thread setup
            self.warmup_ms = self.path.warm_up()
        except BaseException as err:
            self.error = err
        self._ready.set()
        self._go.wait()
        if self.error is None:
            self._serve()

    def _serve(self) -> None:
        done_in = 0
        try:
            while not self._stop.is_set():
                if self.audio_in:
                    written = self.inp.written
                    if self.path.n_out(written) > self.out.written:
                        if written - done_in > MAX_WORKER_LAG_S * self.rate:
                            raise LiveError(f"the model fell {MAX_WORKER_LAG_S:g} s behind "
                                            "the sound card")
                        self.out.write(self.path.process(self.inp.read(done_in, written)))
                        done_in = written
                        continue
                else:
                    n = self.n_clock
                    if self.path.n_out(n) > self.out.written:
                        self.out.write(self.path.process(n))
                        continue
                self._wake.acquire(timeout=WAKE_TIMEOUT_S)
        except BaseException as err:  # reported by the main thread, which stops the card
            self.error = err

    def start(self, margin_ms: float | None = None) -> None:
        """Start the worker, warm the model up on it, and set the margin: from the warm-up
        (:func:`margin_blocks_for`; late blocks may then slip the schedule) or ``margin_ms``
        rounded up to whole blocks (a fixed schedule). Call before the card starts; a warm-up
        failure is raised here."""
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._worker.start()
        self._ready.wait()
        if self.error is not None:
            self.stop()
            raise self.error
        self._set_margin(margin_blocks_for(self.warmup_ms, self.block, self.rate)
                         if margin_ms is None else
                         max(1, math.ceil(margin_ms * self.rate / (1000 * self.block))))
        self.max_slip = round(MAX_SLIP_MS * self.rate / 1000) if margin_ms is None else 0
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        with contextlib.suppress(RuntimeError):
            self._wake.release()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        sys.setswitchinterval(self._switch_interval)

    # -- what the main thread reads ------------------------------------------------------
    def callback_times_us(self) -> np.ndarray:
        """Durations of the latest (up to 65536) callbacks in microseconds."""
        n = min(self.n_callbacks, len(self.callback_us))
        return self.callback_us[:n].copy()
