"""The model side of live playing, at the sound card's rate: audio in or MIDI in, audio out.

A path turns the sound card's input (samples, or the passing of time with MIDI events) into
instrument samples at the card's rate. Its output count after ``n_in`` input samples is a
fixed function :meth:`n_out` of ``n_in`` alone (however the input was cut into blocks), and its
output is delayed by a fixed ``delay_s``; :mod:`.runner` schedules the real-time output from
these two, so the reported latency is exact.

* :class:`AudioPath`: resample to the model's rate, :class:`~ddsp_synth.streaming.LiveEngine`
  (pitch and loudness with 32 ms of look-ahead, one hop of synthesis), resample back.
* :class:`MidiPath`: every hop of the card's clock, the MIDI messages stamped before the hop's
  end go to :class:`~ddsp_synth.streaming.MidiLiveEngine` (a note's attack on the note's own
  frame: the hop that gets a note-on returns its first block), and its hop is resampled back.
"""

from __future__ import annotations

import collections
import time

import numpy as np

from .resample import StreamResampler

#: warm-up before playing: compiles and caches what the first hops would otherwise pay for,
#: and measures the per-hop compute that sets the runner's safety margin
WARMUP_SECONDS = 1.0
#: MIDI warm-up: a 20 ms note every this many hops, each after the last one's release (200 ms)
WARMUP_NOTE_HOPS = 30


class _Beat:
    """Paces a warm-up like playing, one hop per hop's duration: what a hop costs live, its
    caches cooled by whatever ran in between (back to back, hops run about a third faster)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def wait(self, t_s: float) -> None:
        """Sleep until ``t_s`` seconds after this beat began."""
        time.sleep(max(0.0, self.t0 + t_s - time.perf_counter()))


def _take(queue: collections.deque) -> list:
    """Everything in ``queue`` (another thread may be appending: each item is taken once)."""
    out = []
    while queue:
        out.append(queue.popleft())
    return out


class AudioPath:
    """Audio in -> instrument out at the card's rate ``device_rate`` (Hz).

    Args:
        model: a loaded model (16 kHz: the streaming pitch tracker's rate).
        device_rate: the sound card's sample rate in Hz.
        options: :class:`~ddsp_synth.streaming.LiveOptions` (pitch shift, gate...).
        effects: a rack preset played after the instrument by its twins (None: no rack).
    """

    kind = "audio"

    def __init__(self, model, device_rate: int, options=None, effects=None):
        from ..streaming import LiveEngine, LiveOptions

        self.engine = LiveEngine(model, options or LiveOptions(), effects=effects)
        self.model_rate = self.engine.sample_rate
        self.hop = self.engine.synth.hop
        self.lookahead = self.engine.features.latency_samples
        self.down = StreamResampler(device_rate, self.model_rate)
        self.up = StreamResampler(self.model_rate, device_rate)
        self.device_rate = device_rate
        # signal delay of the output stream: the two conversions and one hop of synthesis
        # (the look-ahead shows as output that comes later, which the runner schedules)
        self.delay_s = self.down.delay_s + self.hop / self.model_rate + self.up.delay_s
        self.compute_ms = collections.deque()  # appended by the worker, taken by the main thread

    def reset(self) -> None:
        self.engine.reset()
        self.down.reset()
        self.up.reset()
        self.compute_ms.clear()

    def _engine_out(self, n_model: int) -> int:
        """Samples the live engine has returned after ``n_model`` input samples: frame ``t``
        is complete once sample ``t * hop + lookahead - 1`` is in, and returns one hop."""
        return self.hop * max(0, (n_model - self.lookahead) // self.hop + 1)

    def n_out(self, n_in: int) -> int:
        """Output samples after ``n_in`` input samples (whatever the blocks)."""
        return self.up.n_out(self._engine_out(self.down.n_out(n_in)))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Input samples at the card's rate -> the output samples they complete."""
        t0 = time.perf_counter()
        y = self.engine.process(self.down.push(block))
        # the engine keeps a timing per call: emptied so a long performance does not grow it
        self.engine.times_features.clear()
        self.engine.times_synthesis.clear()
        out = self.up.push(y)
        if len(y):
            self.compute_ms.append(1e3 * (time.perf_counter() - t0))
        return out

    def take_compute_ms(self) -> list[float]:
        """Compute of every call that completed a frame (ms), since the last take."""
        return _take(self.compute_ms)

    def display(self) -> dict:
        """What the tracker hears now: f0 (Hz), confidence, loudness (dB), or {}."""
        fr = self.engine.last_frame
        if fr is None:
            return {}
        return {"f0_hz": fr.f0_hz, "confidence": fr.confidence, "loudness_db": fr.loudness_db,
                "pitched": (self.engine.last_pitched
                            and fr.loudness_db >= self.engine.options.gate_db)}

    def warm_up(self, seconds: float = WARMUP_SECONDS) -> list[float]:
        """Play a sung-like tone for ``seconds`` (then reset): compute per hop in ms."""
        n = int(seconds * self.device_rate)
        t = np.arange(n) / self.device_rate
        phase = 2 * np.pi * np.cumsum(220.0 * 2 ** (0.02 * np.sin(2 * np.pi * 5 * t))) / self.device_rate
        tone = (0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)
        step = self.device_rate // 100
        beat = _Beat()
        for start in range(0, n, step):
            beat.wait(start / self.device_rate)
            self.process(tone[start : start + step])
        times = self.take_compute_ms()
        self.reset()
        return times[len(times) // 4 :]  # the first hops include one-off setup


class MidiPath:
    """MIDI in -> instrument out at the card's rate ``device_rate`` (Hz).

    The input is the card's clock: after ``n`` samples, hops ``0 .. floor(n / hop) - 1``
    (hop in card samples) have ended, and hop ``k`` plays the messages stamped before its
    end. :meth:`process` renders every hop that has ended. The engine plays a note from its
    own frame (``attack_on_note_frame``): hop ``k``'s output block is the note's first.
    """

    kind = "midi"

    def __init__(self, model, meta: dict, device_rate: int, transpose_semitones: float = 0.0,
                 effects=None):
        import mido

        from ..streaming import MidiLiveEngine

        self._parse = mido.Message.from_bytes
        self.engine = MidiLiveEngine(model, meta, transpose_semitones=transpose_semitones,
                                     attack_on_note_frame=True, effects=effects)
        self.model_rate = self.engine.sample_rate
        self.hop = self.engine.hop
        self.up = StreamResampler(self.model_rate, device_rate)
        self.device_rate = device_rate
        self.delay_s = self.up.delay_s
        self.events = collections.deque()  # (stamp in card samples, raw bytes), oldest first
        self.held: tuple[int, ...] = ()  # keys down, for the display
        self.note_ons: list[tuple[int, int, int]] = []  # (stamp, note, hop) of each note-on
        self._held: set[int] = set()
        self.hops_done = 0
        self.compute_ms = collections.deque()  # appended by the worker, taken by the main thread

    def reset(self) -> None:
        self.engine.reset()
        self.up.reset()
        self.events.clear()
        self._held.clear()
        self.held = ()
        self.note_ons.clear()
        self.hops_done = 0
        self.compute_ms.clear()

    def hops_ended(self, n_in: int) -> int:
        """Hops whose end (in card samples) is at or before sample ``n_in``."""
        return n_in * self.model_rate // (self.hop * self.device_rate)

    def hop_end(self, k: int) -> int:
        """The first card sample after hop ``k``."""
        return -(-(k + 1) * self.hop * self.device_rate // self.model_rate)

    def n_out(self, n_in: int) -> int:
        return self.up.n_out(self.hop * self.hops_ended(n_in))

    def first_output(self, k: int) -> int:
        """The first output sample that a note played in hop ``k`` changes (the resampler's
        first output computed from the note's first block).

        The engine's call for hop ``k`` returns, as model samples ``k * hop ..``, the block
        from the frame before the note's to the note's frame, which carries the attack's
        first step (``onset_hops`` = 0; the default performer's silent note frame would put
        it one hop later). Hop 0 has no frame before it: its note's first block is hop 1's.
        """
        first_block = max(k + self.engine.onset_hops, 1)
        return self.up.n_out(self.hop * first_block)

    def _messages(self, end: int) -> list:
        msgs = []
        while self.events and self.events[0][0] < end:
            stamp, data = self.events.popleft()
            try:
                msg = self._parse(data)
            except (ValueError, TypeError, IndexError):
                continue  # a stray or partial message (e.g. sysex debris): nothing to play
            if msg.type == "note_on" and msg.velocity > 0:
                self._held.add(msg.note)
                self.note_ons.append((stamp, msg.note, self.hops_done))
            elif msg.type in ("note_off", "note_on"):
                self._held.discard(msg.note)
            msgs.append(msg)
        return msgs

    def process(self, n_in: int) -> np.ndarray:
        """Render every hop that has ended by card sample ``n_in``: [samples] float32."""
        out = []
        while self.hops_done < self.hops_ended(n_in):
            t0 = time.perf_counter()
            msgs = self._messages(self.hop_end(self.hops_done))
            out.append(self.up.push(self.engine.process(msgs)))
            self.held = tuple(sorted(self._held))
            self.hops_done += 1
            self.compute_ms.append(1e3 * (time.perf_counter() - t0))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def take_compute_ms(self) -> list[float]:
        """Compute of every hop (ms), since the last take."""
        return _take(self.compute_ms)

    def display(self) -> dict:
        return {"held": self.held}

    def warm_up(self, seconds: float = WARMUP_SECONDS) -> list[float]:
        """Play short notes for ``seconds`` (then reset): compute per hop in ms. Each note
        starts from silence and has released before the next."""
        n_hops = int(seconds * self.model_rate / self.hop)
        beat = _Beat()
        for k in range(n_hops):
            beat.wait(k * self.hop / self.model_rate)
            note = 60 + (k // WARMUP_NOTE_HOPS) % 12
            if k % WARMUP_NOTE_HOPS == 0:
                self.events.append((0, bytes([0x90, note, 100])))
            elif k % WARMUP_NOTE_HOPS == 2:
                self.events.append((0, bytes([0x80, note, 0])))
            self.process(self.hop_end(k))
        times = self.take_compute_ms()
        self.reset()
        return times[len(times) // 4 :]
