"""The live engine: audio in, instrument out, block by block, and its simulation from a file.

:class:`LiveEngine` chains :class:`~ddsp_synth.streaming.features.StreamingFeatures`, the
per-frame adjustments of :class:`LiveOptions` and :class:`~ddsp_synth.streaming.step.
StreamingSynth`, every state carried; :func:`stream_audio` feeds it a file as a sound card
would and times each block.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..audio_io import check_input_signal
from ..config import check_fields
from ..errors import InputError
from ..pitch import PITCHED_CONFIDENCE, STEADY_CENTS, STEADY_MIN_CONFIDENCE, STEADY_MS
from .features import Frame, StreamingFeatures
from .step import StreamingSynth


@dataclass(frozen=True)
class LiveOptions:
    """Per-frame adjustments that need no look at the whole input (unlike auto-adjust).

    Attributes:
        pitch_shift_semitones: added to every frame's pitch.
        loudness_shift_db: added to every frame's loudness.
        gate_db: frames quieter than this (input loudness, dB) are muted.
        min_confidence: frames with a lower CREPE confidence (breaths, consonants) are muted,
            unless they hold a steady pitch (see :class:`PitchedGate`) or are bridged.
        bridge_ms: an unpitched stretch is muted only once it has lasted this long since the
            last pitched frame: a legato note change or a bow or breath change (confidence
            dips while the sound goes on) keeps sounding at the tracker's pitch. The causal
            counterpart of :attr:`~ddsp_synth.transfer.TransferOptions.bridge_ms`, which sees
            both sides of the stretch; here the end of a phrase sounds at most this long.
    """

    pitch_shift_semitones: float = 0.0
    loudness_shift_db: float = 0.0
    gate_db: float = -60.0
    min_confidence: float = PITCHED_CONFIDENCE
    bridge_ms: float = 80.0

    def __post_init__(self):
        check_fields(self, ranges={"pitch_shift_semitones": (-48.0, 48.0),
                                   "loudness_shift_db": (-60.0, 60.0), "gate_db": (-200.0, 0.0),
                                   "min_confidence": (0.0, 1.0), "bridge_ms": (0.0, 1000.0)})


# The loudness given to the synthesizer for a muted frame (dB): far below any model's range.
MUTED_DB = -120.0


def live_frame(frame: Frame, options: LiveOptions, pitched: bool | None = None
               ) -> tuple[float, float]:
    """(f0_hz, loudness_db) for the synthesizer from an analysed frame.

    ``pitched``: whether the frame sounds as pitched (a :class:`PitchedGate`'s verdict);
    None: its confidence alone decides (``>= options.min_confidence``).
    """
    f0 = frame.f0_hz * 2.0 ** (options.pitch_shift_semitones / 12.0)
    loud = frame.loudness_db + options.loudness_shift_db
    if pitched is None:
        pitched = frame.confidence >= options.min_confidence
    if frame.loudness_db < options.gate_db or not pitched:
        loud = MUTED_DB
    return f0, loud


class PitchedGate:
    """Which analysed frames sound as pitched, frame by frame with no look-ahead: the causal
    counterpart of the transfer's muting (:func:`~ddsp_synth.transfer.adjust_features`).

    A frame is pitched when its confidence reaches ``options.min_confidence``, or when it
    ends a steady run (the last ``STEADY_MS`` of frames each at least
    ``STEADY_MIN_CONFIDENCE`` and moving less than ``STEADY_CENTS`` per frame: low reeds and
    brass read 0.2-0.45 while their pitch holds still). A frame that is not is still let
    through while the last pitched frame is at most ``options.bridge_ms`` old.

    Muting every dip cut the output at legato note changes, where confidence dips for a
    frame or two while the new note already sounds; the output then carried the previous
    note's tail into the new one (the violin through the streaming engine: 5.1 % of frames
    more than 50 cents off its MIDI, against 3.0 % in what the engine heard).
    """

    def __init__(self, options: LiveOptions, frame_rate_hz: float = 100.0):
        self.options = options
        self.bridge_frames = int(round(options.bridge_ms * frame_rate_hz / 1000.0))
        self.steady_frames = max(2, int(round(STEADY_MS * frame_rate_hz / 1000.0)))
        self.reset()

    def reset(self) -> None:
        self._since_pitched = 1 << 30  # frames since the last pitched one
        self._steady = 0  # length of the steady run ending at the last frame
        self._last_f0 = 0.0

    def __call__(self, frame: Frame) -> bool:
        """Whether ``frame`` (the next frame) sounds as pitched."""
        if frame.confidence < STEADY_MIN_CONFIDENCE or frame.f0_hz <= 0:
            self._steady = 0
        elif self._steady and self._last_f0 > 0 and abs(
                1200.0 * math.log2(frame.f0_hz / self._last_f0)) < STEADY_CENTS:
            self._steady += 1
        else:
            self._steady = 1
        self._last_f0 = frame.f0_hz
        if frame.confidence >= self.options.min_confidence or self._steady >= self.steady_frames:
            self._since_pitched = 0
        else:
            self._since_pitched += 1
        return self._since_pitched <= self.bridge_frames


class LiveEngine:
    """Audio in, instrument out, block by block: :class:`StreamingFeatures` ->
    :func:`live_frame` -> :class:`StreamingSynth`, every state carried.

    ``process(block)`` returns the audio completed by that block (one hop per new frame:
    exactly ``len(block)`` samples when blocks are whole hops) and records the time spent in
    features and synthesis. Output lags input by ``latency_samples`` (feature look-ahead +
    one hop), plus whatever block buffering the host adds. ``last_frame`` is the newest
    analysed frame (None before the first) and ``last_pitched`` whether it sounded as
    pitched (:class:`PitchedGate`), for a host's display.
    """

    last_frame: Frame | None = None
    last_pitched: bool = False

    def __init__(self, model, options: LiveOptions = LiveOptions(), engine: str = "onnx",
                 crepe_model: str | None = None, seed: int = 0, amounts: dict | None = None,
                 effects=None):
        self.features = StreamingFeatures(model.config.features, crepe_model)
        self.synth = StreamingSynth(model, amounts, seed=seed, engine=engine)
        self.options = options
        self.sample_rate = self.synth.sample_rate
        self.rack = RackAfter(effects, self.sample_rate)
        self.latency_samples = self.features.latency_samples + self.synth.latency_samples
        self.gate = PitchedGate(options, model.config.synth.frame_rate_hz)
        self.times_features: list[float] = []
        self.times_synthesis: list[float] = []

    def reset(self) -> None:
        self.features.reset()
        self.synth.reset()
        self.rack.reset()
        self.gate.reset()
        self.last_frame, self.last_pitched = None, False

    def controls(self, frame: Frame) -> tuple[float, float]:
        """(f0_hz, loudness_db) for the synthesizer from the next analysed frame (the gate's
        state moves on: call once per frame, in order; ``last_pitched`` keeps its verdict)."""
        self.last_pitched = self.gate(frame)
        return live_frame(frame, self.options, self.last_pitched)

    def process(self, block: np.ndarray) -> np.ndarray:
        """[n] float32 mono samples in -> the audio of the frames this block completed
        (whole hops, ``latency_samples`` behind the input)."""
        if np.ndim(block) != 1:
            raise InputError(f"a block is mono samples [n], got shape {np.shape(block)}: mix "
                             "the channels down first")
        t0 = time.perf_counter()
        frames = self.features.push(block)
        self.last_frame = frames[-1] if frames else self.last_frame
        t1 = time.perf_counter()
        out = [self.synth.process_frame(*self.controls(fr)) for fr in frames]
        y = self.rack.process(np.concatenate(out) if out else np.zeros(0, np.float32))
        t2 = time.perf_counter()
        self.times_features.append(t1 - t0)
        self.times_synthesis.append(t2 - t1)
        return y


class RackAfter:
    """The effects rack after the instrument in a stream: its twins, each device's state
    carried from block to block, so the stream equals the rack on the whole output. ``None``
    or an empty preset passes blocks through untouched.

    Args:
        effects: a :class:`~ddsp_synth.rack.Preset` (or preset dict) or None.
        sample_rate: Hz of the instrument's output.
    """

    def __init__(self, effects, sample_rate: int):
        self._stream = None
        if effects is not None:
            from ..rack import Rack

            rack = Rack(effects, sample_rate, engine="twins")
            self._stream = rack.stream() if rack.chain is not None else None
        self.active = self._stream is not None

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = self._stream.rack.stream()

    def process(self, block: np.ndarray) -> np.ndarray:
        """[n] float32 -> [n] float32."""
        return block if self._stream is None else self._stream.process(block)


def f0_columns(synth: StreamingSynth) -> list[int]:
    """Where the synthesizer's control frame holds an oscillator's f0 (Hz): the columns of
    its chain's ``*.f0_hz`` parameters (column 0 for the default chain)."""
    cols, at = [], 0
    for param in synth.step.model.synth.params:
        if param.name.rsplit(".", 1)[-1] == "f0_hz":
            cols.extend(range(at, at + param.size))
        at += param.size
    return cols


class MidiLiveEngine:
    """MIDI events in, instrument out, one hop per frame: the synthesis-only live path.

    A :class:`~ddsp_synth.midi.MidiPerformer` turns events into the model's f0/loudness frame
    by frame (the same player that renders MIDI files) and :class:`StreamingSynth` plays each
    frame. A host calls :meth:`process` once per hop with the MIDI messages (mido) that
    arrived during it; the block returned is the previous frame's (``latency_samples`` = one
    hop, 10 ms at 16 kHz: no feature look-ahead on this path).

    When a note starts sounding (``onset_hops``: calls from the one that gets the note-on
    to the one whose block carries its first sound):

    * by default (1) the performer plays as files are rendered: the note's frame is silent
      at the note's pitch and the attack starts on the next one, so the output equals the
      offline MIDI rendering one hop later;
    * with ``attack_on_note_frame`` (0: what ``ddsp-synth live`` uses) the note's own frame
      carries the attack's first step (see :class:`~ddsp_synth.midi.MidiPerformer`), so the
      block returned by the call that got the note-on starts the note, 10 ms sooner. That
      block is interpolated from the frame before, silent but still at the last note's
      pitch: f0 would slide from there to the note's during the block. The synthesizer has
      not rendered that frame yet, so when a note starts from silence its f0 is set to the
      note's (in the step's ``prev_controls``; ``n_retuned`` counts these) and the note
      starts at its pitch. The frame's other controls stay as decoded (silent); nothing is
      computed twice.
    """

    def __init__(self, model, meta: dict, options=None, transpose_semitones: float = 0.0,
                 engine: str = "onnx", seed: int = 0, amounts: dict | None = None,
                 attack_on_note_frame: bool = False, effects=None):
        from ..midi import MidiOptions, MidiPerformer

        self.synth = StreamingSynth(model, amounts, seed, engine)
        self.rack = RackAfter(effects, self.synth.sample_rate)
        self.seed = seed
        self.performer = MidiPerformer(meta.get("dataset_stats"),
                                       model.config.synth.frame_rate_hz,
                                       options or MidiOptions(), transpose_semitones,
                                       attack_on_note_frame=attack_on_note_frame)
        self.sample_rate = self.synth.sample_rate
        self.hop = self.synth.hop
        self.latency_samples = self.synth.latency_samples
        self.attack_on_note_frame = bool(attack_on_note_frame)
        self.onset_hops = 0 if self.attack_on_note_frame else 1
        self._f0_cols = f0_columns(self.synth)
        self._prev_index = self.synth.step.state_names.index("prev_controls")
        self.reset()

    def reset(self) -> None:
        """A fresh performance: silence, controllers at their defaults, the noise from the
        seed again (the same messages give the same samples)."""
        self.performer.reset()
        self.synth.reset()
        self.rack.reset()
        self.synth.generator.manual_seed(self.seed)
        self.n_retuned = 0
        self._last: tuple[float, float] | None = None  # the frame given last: f0, loudness

    def _retune_last_frame(self, f0_hz: float, loudness_db: float) -> None:
        """A note starting from silence: the silent frame before it, whose block this frame
        renders, takes the note's f0 (``attack_on_note_frame`` only)."""
        if not self.attack_on_note_frame or self._last is None:
            return
        last_f0, last_db = self._last
        if not (last_db <= self.performer.silence_db < loudness_db and last_f0 != f0_hz):
            return
        state = list(self.synth.state)
        prev = state[self._prev_index].clone()
        prev[:, self._f0_cols] = f0_hz
        state[self._prev_index] = prev
        self.synth.state = tuple(state)
        self.n_retuned += 1

    def process(self, messages=(), noise: np.ndarray | None = None) -> np.ndarray:
        """Apply this hop's MIDI messages, then render: [hop] float32."""
        for message in messages:
            self.performer.send(message)
        f0_hz, loudness_db = self.performer.next_frame()
        self._retune_last_frame(f0_hz, loudness_db)
        self._last = (f0_hz, loudness_db)
        return self.rack.process(self.synth.process_frame(f0_hz, loudness_db, noise))


def stream_audio(model, audio: np.ndarray, block_samples: int, options: LiveOptions = LiveOptions(),
                 engine: str = "torch", crepe_model: str | None = None, seed: int = 0,
                 progress=None, amounts: dict | None = None,
                 effects=None) -> tuple[np.ndarray, dict]:
    """Simulate live use: feed ``audio`` to a :class:`LiveEngine` in blocks, as a sound card
    would, and time each block.

    ``progress`` (e.g. tqdm) is advanced by one per block. ``effects`` (a rack preset) runs
    after the instrument by its twins, its time counted in the synthesis column.

    Returns:
        output audio [len(audio)]: the blocks' outputs joined (the blocks before the feature
        look-ahead fills return nothing, so it lags ``audio`` by the synthesis hop only; live,
        those blocks are silence and the lag is the total below), and a
        report: per-block compute times (features, synthesis, total; median and p99 in ms),
        the block length and the algorithmic latency of each stage in ms.
    """
    audio = check_input_signal(audio)
    live = LiveEngine(model, options, engine, crepe_model, seed, amounts, effects)
    features, synth = live.features, live.synth
    sr = live.sample_rate
    out = []
    for start in range(0, len(audio), block_samples):
        out.append(live.process(audio[start : start + block_samples]))
        if progress is not None:
            progress.update(1)
    y = np.concatenate(out) if out else np.zeros(0, np.float32)
    y = np.pad(y, (0, max(0, len(audio) - len(y))))[: len(audio)]
    t_feat = np.array(live.times_features) * 1e3
    t_synth = np.array(live.times_synthesis) * 1e3
    total = t_feat + t_synth
    block_ms = 1e3 * block_samples / sr

    def stats(x):
        return {"median_ms": float(np.median(x)), "p99_ms": float(np.percentile(x, 99)),
                "max_ms": float(np.max(x))}

    report = {
        "engine": engine,
        "effects": live.rack.active,
        "pitch_model": features.crepe_model,
        "blocks": len(total),
        "block_ms": block_ms,
        "hop_ms": 1e3 * synth.hop / sr,
        "compute_features": stats(t_feat),
        "compute_synthesis": stats(t_synth),
        "compute_total": stats(total),
        "late_blocks": int(np.sum(total > block_ms)),
        "latency_ms": {
            "features_lookahead": 1e3 * features.latency_samples / sr,
            "synthesis": 1e3 * synth.latency_samples / sr,
            "block_buffer": block_ms,
        },
    }
    lat = report["latency_ms"]
    lat["total"] = lat["features_lookahead"] + lat["synthesis"] + lat["block_buffer"]
    return y.astype(np.float32), report
