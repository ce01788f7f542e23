"""MIDI -> the f0 and loudness curves a model knows how to play.

One implementation for files and live input: :class:`MidiPerformer` is an event-driven
monophonic player (``note_on``, ``note_off``, ``pitch_bend``, ``control_change``, then
``next_frame() -> (f0_hz, loudness_db)`` once per frame). :func:`midi_to_curves` reads a file
and drives a performer with the file's events at frame times, so a stream of the same events
gives the same curves frame for frame.

How MIDI becomes curves:

* **Level.** Velocity, CC7 volume and CC11 expression combine by the General MIDI gain law,
  ``40 log10(velocity / 127) + 40 log10(volume / 100) + 40 log10(expression / 127)`` dB
  (0 dB = full velocity at the default volume). Gains from ``-dynamic_range_db`` to 0 dB are
  spread evenly over the model's own voiced-loudness quantiles between ``quiet_percentile``
  and ``loud_percentile``, as auto-adjust maps a recording onto the model; quieter gains go
  on dB for dB below. So a mezzo-forte lands in the middle of what the model was trained on,
  whatever its training level. (On the five FluidSynth training performances this mapping
  predicts the rendered loudness of held notes within 1.3 to 2.6 dB median.)
* **Articulation.** A detached note attacks (amplitude ramp over ``attack_s``, then a small
  accent that decays over ``decay_s``) and releases (the level falls ``release_fade_db`` over
  ``release_s``, then the frame is muted). A note that starts while another sounds, or within
  ``legato_gap_s`` of its note-off, is legato: f0 glides over ``portamento_s`` and the level
  carries on (no new attack). A repeated pitch re-attacks from ``reattack_dip_db`` below.
* **Pitch.** Note + transpose + pitch bend (range from RPN 0 when the file sets it, else
  +-2 semitones) + vibrato. There is no automatic vibrato by default: files that carry
  vibrato in pitch bend (most performed MIDI) would get it twice, and the output would
  drift from the written pitch. ``vibrato_depth_cents`` adds one; the modulation wheel (CC1)
  adds vibrato as on a General MIDI synth (``mod_wheel_vibrato_cents`` at CC1 = 127).
* **Silence.** Frames where nothing sounds are muted like transfer mutes them
  (``min(loudness_db_quantiles) - 20`` dB) with f0 held at the last note, so the oscillators
  do not jump.
* **Polyphony.** The highest note sounds; a lower note that starts while a higher one
  sounds is dropped, unless the higher one ends within ``max_legato_overlap_s`` (an
  overlapping legato), in which case it follows legato. A higher note cuts the sounding one
  short, and the cut note does not come back when the higher one ends (a melody over held
  chords would otherwise fill every rest with the accompaniment). What was dropped or cut
  is counted and reported.
* **Tracks.** A part is one channel of one track (a type-0 file's channels are separate
  parts); ``track=N`` numbers the parts with notes in file order. Drums (channel 10) are
  never chosen by default and cannot be played.

Timing: ``tempo_scale`` multiplies the tempo (2 = twice as fast). An event at ``t`` seconds
(after tempo scaling) takes effect at frame ``round(t * frame_rate_hz)``, in time order (at
equal times: note-offs, then controllers and pitch bend, then note-ons, so touching notes
are legato and a repeated pitch re-attacks); whether a note-on or a controller of the same
frame comes first does not change the result. A note sounds for at least two frames. The
output lasts the MIDI file's length (its last channel event, any track, after tempo
scaling) plus ``release_s``.
"""

from __future__ import annotations

import bisect
import io
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio_io import AudioError
from .config import ConfigError, check_fields
from .core import midi_to_hz

MIDI_MAX = 127
GM_DEFAULT_VOLUME = 100  # CC7 value General MIDI synths treat as unity gain
GM_GAIN_LAW_DB = 40.0  # General MIDI: gain_db = 40 log10(value / full)
PITCH_BEND_CENTRE = 8192
DEFAULT_BEND_RANGE_SEMITONES = 2.0
MAX_BEND_RANGE_SEMITONES = 48.0
DRUM_CHANNEL = 9  # channel 10 counted from 1: percussion keys, not pitches
A4_MIDI = 69.0  # the default centre when a model's statistics lack one
MUTE_BELOW_QUANTILES_DB = 20.0  # as transfer.adjust_features mutes
MAX_MIDI_FILE_BYTES = 16 * 2**20  # real MIDI files are kilobytes; this bounds parse time
TRANSPOSE_LIMIT_SEMITONES = 48.0
TEMPO_SCALE_RANGE = (0.1, 10.0)
DEFAULT_TEMPO_US_PER_BEAT = 500_000
MIDI_EXTENSIONS = (".mid", ".midi", ".smf", ".kar")
MODEL_RANGE_PERCENTILES = (1.0, 99.0)  # of the training pitches: the instrument's range

CC_MODULATION, CC_DATA_ENTRY, CC_VOLUME, CC_EXPRESSION = 1, 6, 7, 11
CC_DATA_ENTRY_LSB, CC_NRPN_LSB, CC_NRPN_MSB, CC_RPN_LSB, CC_RPN_MSB = 38, 98, 99, 100, 101
CC_ALL_SOUND_OFF, CC_RESET_CONTROLLERS, CC_ALL_NOTES_OFF = 120, 121, 123


class MidiError(AudioError):
    """A MIDI input that cannot be played, with a one-line message for the user.

    Messages do not name the file: the caller prefixes the path once.
    """


@dataclass(frozen=True)
class MidiOptions:
    """How MIDI is played (units in the names; see the module docstring).

    Attributes:
        attack_s: amplitude ramp from silence to the note's level at a detached note.
        attack_accent_db: level above the note's level at the end of the attack
            (negative: a soft onset).
        decay_s: time from the accent back to the note's level.
        release_s: after note-off the level falls ``release_fade_db`` in this time and is
            then muted; also the tail added after the MIDI's end.
        release_fade_db: fall over ``release_s``.
        portamento_s: f0 glide between legato notes.
        legato_gap_s: a note starting at most this long after the previous note-off is
            still legato (0: only touching or overlapping notes).
        max_legato_overlap_s: a lower note starting at most this long before the sounding
            higher note ends follows it legato; a longer overlap is a second voice (dropped).
        reattack_dip_db: a note re-attacked while the last still sounds starts at least
            this far below its level.
        level_smoothing_s: time constant of level changes within a note (CC steps, a new
            velocity under legato).
        dynamic_range_db: MIDI gains from this many dB below full to full span the model's
            loudness quantiles ``quiet_percentile`` to ``loud_percentile``.
        quiet_percentile, loud_percentile: see ``dynamic_range_db`` (percent, voiced frames).
        loudness_shift_db: added to every sounding frame.
        vibrato_depth_cents: automatic vibrato depth (0 = off, the default).
        vibrato_rate_hz: vibrato rate (automatic and modulation wheel).
        vibrato_delay_s, vibrato_ramp_s: the automatic vibrato starts this long after an
            attack and reaches full depth over the ramp.
        mod_wheel_vibrato_cents: vibrato depth at CC1 = 127 (General MIDI modulation).
        max_duration_s: longest output allowed (MIDI length + release), checked before
            anything is allocated.
    """

    attack_s: float = 0.05
    attack_accent_db: float = 1.5
    decay_s: float = 0.12
    release_s: float = 0.2
    release_fade_db: float = 60.0
    portamento_s: float = 0.05
    legato_gap_s: float = 0.0
    max_legato_overlap_s: float = 0.1
    reattack_dip_db: float = 20.0
    level_smoothing_s: float = 0.02
    dynamic_range_db: float = 20.0
    quiet_percentile: float = 10.0
    loud_percentile: float = 98.0
    loudness_shift_db: float = 0.0
    vibrato_depth_cents: float = 0.0
    vibrato_rate_hz: float = 5.5
    vibrato_delay_s: float = 0.3
    vibrato_ramp_s: float = 0.3
    mod_wheel_vibrato_cents: float = 50.0
    max_duration_s: float = 3600.0

    def __post_init__(self):
        check_fields(self, ranges={
            "attack_s": (0.0, 10.0), "attack_accent_db": (-40.0, 40.0), "decay_s": (0.0, 10.0),
            "release_s": (0.0, 30.0), "release_fade_db": (0.0, 200.0),
            "portamento_s": (0.0, 10.0), "legato_gap_s": (0.0, 10.0),
            "max_legato_overlap_s": (0.0, 10.0), "reattack_dip_db": (0.0, 200.0),
            "level_smoothing_s": (0.0, 10.0), "dynamic_range_db": (0.1, 200.0),
            "quiet_percentile": (0.0, 100.0), "loud_percentile": (0.0, 100.0),
            "loudness_shift_db": (-100.0, 100.0), "vibrato_depth_cents": (0.0, 1200.0),
            "vibrato_rate_hz": (0.0, 50.0), "vibrato_delay_s": (0.0, 60.0),
            "vibrato_ramp_s": (0.0, 60.0), "mod_wheel_vibrato_cents": (0.0, 1200.0),
            "max_duration_s": (0.01, 24 * 3600.0)}, prefix="MIDI option ")
        if self.quiet_percentile >= self.loud_percentile:
            raise ConfigError("MIDI options need quiet_percentile < loud_percentile, got "
                              f"{self.quiet_percentile} and {self.loud_percentile}")


# ---------------------------------------------------------------------------------------------
# Level: MIDI gain -> the model's loudness
# ---------------------------------------------------------------------------------------------

def midi_gain_db(velocity, volume=GM_DEFAULT_VOLUME, expression=MIDI_MAX):
    """General MIDI gain in dB of a velocity, CC7 volume and CC11 expression (0..127 each).

    0 dB at velocity 127, volume 100 (the GM default), expression 127; ``-inf`` if any is 0.
    Works elementwise on arrays.
    """
    if np.ndim(velocity) == 0 and np.ndim(volume) == 0 and np.ndim(expression) == 0:
        v, vol, ex = float(velocity), float(volume), float(expression)
        if v <= 0 or vol <= 0 or ex <= 0:
            return -math.inf
        return GM_GAIN_LAW_DB * (math.log10(v / MIDI_MAX) + math.log10(vol / GM_DEFAULT_VOLUME)
                                 + math.log10(ex / MIDI_MAX))
    with np.errstate(divide="ignore"):
        return GM_GAIN_LAW_DB * (np.log10(np.asarray(velocity, np.float64) / MIDI_MAX)
                                 + np.log10(np.asarray(volume, np.float64) / GM_DEFAULT_VOLUME)
                                 + np.log10(np.asarray(expression, np.float64) / MIDI_MAX))


def _stats_quantiles(stats: dict) -> tuple[np.ndarray, float]:
    """The model's voiced-loudness quantiles [n] and its mute level (dB), validated."""
    if not isinstance(stats, dict):
        raise MidiError("the model has no dataset statistics; it cannot be played from MIDI")
    q = stats.get("loudness_db_voiced_quantiles")
    q_all = stats.get("loudness_db_quantiles")
    q = q_all if q is None else q
    q_all = q if q_all is None else q_all
    try:
        q = np.asarray(q, np.float64)
        q_all = np.asarray(q_all, np.float64)
    except (TypeError, ValueError):
        q = q_all = np.zeros(0)
    if (q.ndim != 1 or len(q) < 2 or q_all.ndim != 1 or len(q_all) < 1
            or not np.all(np.isfinite(q)) or not np.all(np.isfinite(q_all))
            or np.any(np.diff(q) < 0)):
        raise MidiError("the model's dataset statistics lack valid loudness quantiles; it "
                        "cannot be played from MIDI")
    return q, float(np.min(q_all)) - MUTE_BELOW_QUANTILES_DB


def gain_to_loudness_db(gain_db, stats: dict, options: MidiOptions = MidiOptions()):
    """Map General MIDI gains (dB, <= about 0) onto the model's voiced loudness (dB).

    Gains in ``[-dynamic_range_db, 0]`` are spread evenly over the voiced-loudness quantiles
    ``quiet_percentile .. loud_percentile`` (above 0 dB up to the loudest quantile); quieter
    gains continue dB for dB below the quiet quantile (as auto-adjust keeps the distance below
    its lowest quantile). ``loudness_shift_db`` is added; nothing goes below the mute level.

    Args:
        gain_db: scalar or [n] gains (``-inf`` allowed).
        stats: the model's dataset statistics.

    Returns:
        loudness_db, same shape, float64.
    """
    q, silence_db = _stats_quantiles(stats)
    return _map_gain(np.asarray(gain_db, np.float64), q, silence_db, options)


def _map_gain(g, q: np.ndarray, silence_db: float, o: MidiOptions):
    """:func:`gain_to_loudness_db` on validated quantiles ``q`` (scalar or array ``g``)."""
    pct = np.linspace(0.0, 100.0, len(q))
    span = o.loud_percentile - o.quiet_percentile
    with np.errstate(invalid="ignore"):
        p = np.minimum(o.quiet_percentile + span * (1.0 + g / o.dynamic_range_db), 100.0)
        below = np.interp(o.quiet_percentile, pct, q) + (g + o.dynamic_range_db)
        loud = np.where(g >= -o.dynamic_range_db, np.interp(np.nan_to_num(p, nan=0.0), pct, q),
                        below)
    loud = loud + o.loudness_shift_db
    return np.maximum(np.nan_to_num(loud, nan=silence_db, neginf=silence_db), silence_db)


def _clip_int(x, lo: int, hi: int) -> int:
    return min(max(int(x), lo), hi)


# ---------------------------------------------------------------------------------------------
# The performer: events in, one (f0, loudness) per frame out
# ---------------------------------------------------------------------------------------------

_IDLE, _NOTE, _RELEASE = 0, 1, 2
# A note sounds for at least two frames: its onset frame is silent (f0 moves there) and the
# next carries the first step of the attack; a shorter note's note-off waits until then.
MIN_NOTE_FRAMES = 2
_HELD_FOREVER = -(10**12)  # attack frame of a legato continuation: envelope already at level


@dataclass
class _Key:
    velocity: int
    onset_frame: int
    sounded: bool = False


@dataclass
class _Voice:
    pitch: int
    velocity: int
    start_frame: int
    glide_from_semitones: float = 0.0  # pitch offset at start_frame, glides to 0
    record: list = field(default_factory=list)  # [start_s, end_s, pitch, velocity]


class MidiPerformer:
    """A monophonic MIDI player that turns events into one control frame at a time.

    Call the event methods as events arrive, then :meth:`next_frame` once per frame (every
    ``1 / frame_rate_hz`` s); events take effect at the next frame. The same object serves
    a file (:func:`midi_to_curves`) and a live MIDI input feeding the streaming synthesizer.

    Args:
        stats: the model's dataset statistics (loudness quantiles, ``pitch_midi_mean``).
        frame_rate_hz: control frames per second (the model's ``synth.frame_rate_hz``).
        options: articulation and level settings.
        transpose_semitones: added to every note (fractional allowed, |x| <= 48).
    """

    def __init__(self, stats: dict, frame_rate_hz: float, options: MidiOptions = MidiOptions(),
                 transpose_semitones: float = 0.0):
        if not isinstance(options, MidiOptions):
            raise MidiError("options must be a MidiOptions")
        try:
            fr = float(frame_rate_hz)
        except (TypeError, ValueError):
            fr = float("nan")
        if not (math.isfinite(fr) and 1.0 <= fr <= 10_000.0):
            raise MidiError(f"frame rate must be in [1, 10000] Hz, got {frame_rate_hz!r}")
        _check_transpose(transpose_semitones)
        self.frame_rate_hz = fr
        self.options = options
        self.transpose_semitones = float(transpose_semitones)
        self._stats = stats
        self._quantiles, self.silence_db = _stats_quantiles(stats)
        mean = stats.get("pitch_midi_mean", A4_MIDI)
        self._rest_pitch = float(mean) if isinstance(mean, (int, float)) and math.isfinite(mean) \
            and 0 <= mean <= MIDI_MAX else A4_MIDI
        o = options
        self._attack_frames = o.attack_s * fr
        self._decay_frames = o.decay_s * fr
        self._release_frames = o.release_s * fr
        self._portamento_frames = o.portamento_s * fr
        self._legato_gap_frames = o.legato_gap_s * fr
        self._overlap_frames = o.max_legato_overlap_s * fr
        self._smooth = (1.0 - math.exp(-1.0 / (o.level_smoothing_s * fr))
                        if o.level_smoothing_s > 0 else 1.0)
        self._dip = 10.0 ** (-o.reattack_dip_db / 20.0)
        self._vib_step = 2.0 * math.pi * o.vibrato_rate_hz / fr
        self.reset()

    # -- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to silence with General MIDI controller defaults; counters cleared."""
        self.frame = 0
        self.bend_semitones = 0.0
        self.bend_range_semitones = DEFAULT_BEND_RANGE_SEMITONES
        self._rpn = (None, None)
        self._cc = {CC_MODULATION: 0, CC_VOLUME: GM_DEFAULT_VOLUME, CC_EXPRESSION: MIDI_MAX}
        self._held: dict[int, _Key] = {}
        self._voice: _Voice | None = None
        self._stage = _IDLE
        self._attack_frame = 0
        self._env0 = 0.0
        self._attack_dip = False
        self._release_frame = 0
        self._release_db = self.silence_db
        self._deferred_off: _Voice | None = None
        self._level_db = None
        self._target_db = None
        self._last_loud = self.silence_db
        self._last_pitch = self._rest_pitch
        self._vib_phase = 0.0
        self.played: list[list] = []
        self.n_dropped = 0
        self.n_truncated = 0
        self.n_delayed = 0

    def _time_s(self) -> float:
        return self.frame / self.frame_rate_hz

    def _target(self) -> float:
        if self._target_db is None:
            v = self._voice
            g = midi_gain_db(v.velocity, self._cc[CC_VOLUME], self._cc[CC_EXPRESSION])
            self._target_db = float(_map_gain(g, self._quantiles, self.silence_db, self.options))
        return self._target_db

    def _close_voice(self) -> None:
        if self._voice is not None and self._voice.record:
            self._voice.record[1] = self._time_s()
            self._voice.record = []

    def _start_voice(self, pitch: int, key: _Key, glide_from: float) -> None:
        self._close_voice()
        key.sounded = True
        rec = [self._time_s(), self._time_s(), pitch + self.transpose_semitones, key.velocity]
        self.played.append(rec)
        self._voice = _Voice(pitch, key.velocity, self.frame, glide_from, rec)
        self._target_db = None

    def _glide_offset(self) -> float:
        v = self._voice
        k = self.frame - v.start_frame
        if v.glide_from_semitones == 0.0 or k >= self._portamento_frames:
            return 0.0
        x = k / self._portamento_frames
        return v.glide_from_semitones * (1.0 - x * x * (3.0 - 2.0 * x))  # smoothstep

    def _attack(self, pitch: int, key: _Key, dip: bool) -> None:
        # Where the attack starts from is settled at the next frame, once every event of
        # this frame is in: the result must not depend on the order of a note-on and a
        # controller that arrive together.
        self._start_voice(pitch, key, 0.0)
        self._stage = _NOTE
        self._attack_frame = self.frame
        self._attack_dip = dip
        self._env0 = None
        self._level_db = None

    def _start_attack(self) -> None:
        """Attack start: the last frame's amplitude relative to the new level (0 from
        silence), at most ``reattack_dip_db`` below it for a re-attack."""
        target = self._target()
        env = 0.0 if self._last_loud <= self.silence_db else \
            min(1.0, 10.0 ** ((self._last_loud - target) / 20.0))
        self._env0 = min(env, self._dip) if self._attack_dip else env
        self._level_db = target

    def _legato(self, pitch: int, key: _Key) -> None:
        old = self._voice
        offset = (old.pitch + self._glide_offset() - pitch) if old is not None else 0.0
        if old is not None and old.start_frame == self.frame:
            offset = old.glide_from_semitones + old.pitch - pitch
        self._start_voice(pitch, key, offset)
        if self._stage == _RELEASE:  # within legato_gap_s: carry on from where it fell to
            self._stage = _NOTE
            self._attack_frame = _HELD_FOREVER
            self._env0 = 0.0
            self._level_db = self._last_loud

    # -- events ---------------------------------------------------------------------------
    def note_on(self, pitch: int, velocity: int) -> None:
        """A key goes down (velocity 0 = note-off, as in MIDI)."""
        pitch = _clip_int(pitch, 0, MIDI_MAX)
        velocity = _clip_int(velocity, 0, MIDI_MAX)
        if velocity == 0:
            self.note_off(pitch)
            return
        old = self._held.get(pitch)
        if old is not None and not old.sounded:
            self.n_dropped += 1  # the same key struck again before it ever sounded
        key = _Key(velocity, self.frame)
        self._held[pitch] = key
        v = self._voice
        if self._stage == _NOTE and v is not None:
            if v.start_frame == self.frame and pitch > v.pitch:
                # Struck in the same frame as the sounding note (a chord): the highest wins,
                # articulated as the replaced one would have been.
                replaced = self._held.get(v.pitch)
                if replaced is not None:
                    replaced.sounded = False
                self.played.remove(v.record)
                if self._attack_frame == self.frame:
                    self._start_voice(pitch, key, 0.0)
                else:
                    self._legato(pitch, key)
            elif pitch == v.pitch:
                self._attack(pitch, key, dip=True)
            elif pitch > v.pitch:
                self.n_truncated += 1
                self._legato(pitch, key)
            # a lower key waits: it plays legato if the sounding note ends soon (note_off)
        elif (self._stage == _RELEASE and v is not None and pitch != v.pitch
              and self.frame - self._release_frame <= self._legato_gap_frames):
            self._legato(pitch, key)
        else:
            self._attack(pitch, key, dip=self._stage == _RELEASE)

    def note_off(self, pitch: int) -> None:
        """A key comes up."""
        pitch = _clip_int(pitch, 0, MIDI_MAX)
        key = self._held.pop(pitch, None)
        if key is None:
            return
        v = self._voice
        if self._stage == _NOTE and v is not None and v.pitch == pitch:
            if self.frame < v.start_frame + MIN_NOTE_FRAMES:
                self._deferred_off = v  # too short to be heard yet: end it a little later
            else:
                self._end_voice()
        elif not key.sounded:
            self.n_dropped += 1

    def _end_voice(self) -> None:
        """The sounding note's key came up: a lower key struck shortly before follows
        legato, otherwise the note releases."""
        v = self._voice
        self._deferred_off = None
        waiting = [(p, k) for p, k in self._held.items()
                   if k.onset_frame > v.start_frame
                   and self.frame - k.onset_frame <= self._overlap_frames]
        if waiting:
            p, k = max(waiting)
            self.n_delayed += 1
            self._legato(p, k)
        else:
            self._release()

    def _release(self) -> None:
        self._deferred_off = None
        self._close_voice()
        self._stage = _RELEASE
        self._release_frame = self.frame
        self._release_db = self._last_loud

    def all_notes_off(self) -> None:
        """Release the sounding note and forget every held key (MIDI CC123)."""
        for key in self._held.values():
            if not key.sounded:
                self.n_dropped += 1
        self._held.clear()
        if self._stage == _NOTE:
            self._release()
        self._deferred_off = None

    def pitch_bend(self, semitones: float) -> None:
        """Pitch bend in semitones (already scaled by the bend range)."""
        s = float(semitones)
        self.bend_semitones = (min(max(s, -MAX_BEND_RANGE_SEMITONES), MAX_BEND_RANGE_SEMITONES)
                               if math.isfinite(s) else 0.0)

    def pitch_bend_raw(self, value: int) -> None:
        """Pitch wheel as MIDI sends it (-8192..8191), scaled by the current bend range."""
        v = _clip_int(value, -PITCH_BEND_CENTRE, PITCH_BEND_CENTRE - 1)
        self.pitch_bend(v / PITCH_BEND_CENTRE * self.bend_range_semitones)

    def control_change(self, cc: int, value: int) -> None:
        """A controller: 1 modulation (vibrato), 7 volume, 11 expression, RPN 0 (pitch-bend
        range, through 101/100/6/38), 120 all sound off, 121 reset, 123 all notes off;
        others are ignored."""
        cc = int(cc)
        value = _clip_int(value, 0, MIDI_MAX)
        if cc in (CC_MODULATION, CC_VOLUME, CC_EXPRESSION):
            self._cc[cc] = value
            self._target_db = None
        elif cc == CC_RPN_MSB:
            self._rpn = (value, self._rpn[1])
        elif cc == CC_RPN_LSB:
            self._rpn = (self._rpn[0], value)
        elif cc in (CC_NRPN_MSB, CC_NRPN_LSB):
            self._rpn = (None, None)
        elif cc == CC_DATA_ENTRY and self._rpn == (0, 0):
            cents = (self.bend_range_semitones % 1.0) * 100.0
            self.bend_range_semitones = min(value + cents / 100.0, MAX_BEND_RANGE_SEMITONES)
        elif cc == CC_DATA_ENTRY_LSB and self._rpn == (0, 0):
            whole = math.floor(self.bend_range_semitones)
            self.bend_range_semitones = min(whole + min(value, 99) / 100.0,
                                            MAX_BEND_RANGE_SEMITONES)
        elif cc == CC_RESET_CONTROLLERS:
            self.bend_semitones = 0.0
            self._cc[CC_MODULATION] = 0
            self._cc[CC_EXPRESSION] = MIDI_MAX
            self._rpn = (None, None)
            self._target_db = None
        elif cc == CC_ALL_NOTES_OFF:
            self.all_notes_off()
        elif cc == CC_ALL_SOUND_OFF:
            self.all_notes_off()
            self._stage = _IDLE

    def send(self, message) -> None:
        """Dispatch a mido message (``note_on``, ``note_off``, ``pitchwheel``,
        ``control_change``); other types are ignored. The channel is not looked at."""
        t = getattr(message, "type", None)
        if t == "note_on":
            self.note_on(message.note, message.velocity)
        elif t == "note_off":
            self.note_off(message.note)
        elif t == "pitchwheel":
            self.pitch_bend_raw(message.pitch)
        elif t == "control_change":
            self.control_change(message.control, message.value)

    # -- frames ---------------------------------------------------------------------------
    def next_frame(self) -> tuple[float, float]:
        """The next control frame: (f0_hz, loudness_db)."""
        o = self.options
        if (self._deferred_off is not None and self._deferred_off is self._voice
                and self._stage == _NOTE
                and self.frame >= self._voice.start_frame + MIN_NOTE_FRAMES):
            self._end_voice()
        if self._stage == _RELEASE:
            k = self.frame - self._release_frame
            if k >= self._release_frames:
                self._stage = _IDLE
        if self._stage == _IDLE:
            loud = self.silence_db
            pitch = self._last_pitch
        else:
            if self._stage == _NOTE:
                if self._env0 is None:
                    self._start_attack()
                target = self._target()
                self._level_db += (target - self._level_db) * self._smooth
                k = self.frame - self._attack_frame
                n_att = self._attack_frames * (1.0 - self._env0)
                if k >= n_att:
                    env = 1.0
                    accent = o.attack_accent_db * max(0.0, 1.0 - (k - n_att) / self._decay_frames) \
                        if self._decay_frames > 0 and k < n_att + self._decay_frames else 0.0
                else:
                    x = k / n_att
                    env = self._env0 + (1.0 - self._env0) * x
                    accent = o.attack_accent_db * x
                if self._attack_frame == _HELD_FOREVER:
                    accent = 0.0
                loud = self._level_db + 20.0 * math.log10(env) + accent if env > 0 \
                    else self.silence_db
            else:
                k = self.frame - self._release_frame
                loud = self._release_db - o.release_fade_db * k / self._release_frames
            v = self._voice
            vib_cents = o.mod_wheel_vibrato_cents * self._cc[CC_MODULATION] / MIDI_MAX
            if o.vibrato_depth_cents > 0 and self._stage == _NOTE \
                    and self._attack_frame != _HELD_FOREVER:
                t_s = (self.frame - self._attack_frame) / self.frame_rate_hz - o.vibrato_delay_s
                if t_s > 0:
                    ramp = min(1.0, t_s / o.vibrato_ramp_s) if o.vibrato_ramp_s > 0 else 1.0
                    vib_cents += o.vibrato_depth_cents * ramp
            pitch = (v.pitch + self.transpose_semitones + self._glide_offset()
                     + self.bend_semitones + vib_cents / 100.0 * math.sin(self._vib_phase))
        loud = max(loud, self.silence_db)
        self._vib_phase = (self._vib_phase + self._vib_step) % (2.0 * math.pi)
        self._last_loud = loud
        self._last_pitch = pitch
        self.frame += 1
        return float(midi_to_hz(pitch)), float(loud)

    def summary(self) -> dict:
        """What was played: ``notes`` [(start_s, end_s, pitch, velocity)] (pitch transposed;
        end = note-off or cut), ``n_played``, ``n_dropped`` (never sounded: a lower voice),
        ``n_truncated`` (cut short by a higher note), ``n_delayed`` (an overlapping lower
        note that followed legato). Keys still held count as dropped if they never sounded."""
        still = sum(1 for k in self._held.values() if not k.sounded)
        notes = [tuple(r) for r in self.played]
        if self._voice is not None and self._voice.record:
            notes[-1] = (notes[-1][0], self._time_s(), *notes[-1][2:])
        return {"notes": notes, "n_played": len(notes), "n_dropped": self.n_dropped + still,
                "n_truncated": self.n_truncated, "n_delayed": self.n_delayed}


# ---------------------------------------------------------------------------------------------
# Reading MIDI files
# ---------------------------------------------------------------------------------------------

@dataclass
class MidiPart:
    """The notes of one channel of one track: what ``track=N`` chooses.

    Attributes:
        index: the number to pass as ``track``.
        track, channel: where the part is in the file (0-based; channel 9 = drums).
        name: track name or the General MIDI program name.
        n_notes: note-ons in the part.
        max_polyphony: most notes sounding at once.
        events: [(time_s, order, message)] sorted by time (before tempo scaling).
    """

    index: int
    track: int
    channel: int
    name: str
    n_notes: int
    max_polyphony: int
    events: list

    @property
    def is_drums(self) -> bool:
        return self.channel == DRUM_CHANNEL

    def describe(self) -> str:
        what = "drums" if self.is_drums else (
            f"{self.n_notes} notes" + (f", up to {self.max_polyphony} at once"
                                        if self.max_polyphony > 1 else ""))
        return f"{self.index} {self.name!r} (channel {self.channel + 1}, {what})"


@dataclass
class MidiSong:
    """A parsed MIDI file: its parts with notes and its length in seconds."""

    parts: list
    length_s: float


def _event_rank(msg) -> int:
    """Order of events at one instant: note-offs, then controllers/bend, then note-ons."""
    if msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
        return 0
    return 2 if msg.type == "note_on" else 1


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        p = Path(source)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise MidiError("no such file") from None
        except OSError as err:
            raise MidiError(f"cannot read the file ({err.strerror or err})") from None
        if stat.S_ISDIR(st.st_mode):
            raise MidiError("is a folder, not a MIDI file")
        if not stat.S_ISREG(st.st_mode):
            raise MidiError("not a regular file (a device or pipe?); give a .mid file")
        if st.st_size > MAX_MIDI_FILE_BYTES:
            raise MidiError(f"file too large for a MIDI file ({st.st_size / 2**20:.1f} MiB; "
                            f"at most {MAX_MIDI_FILE_BYTES // 2**20} MiB)")
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_MIDI_FILE_BYTES + 1)
        except OSError as err:
            raise MidiError(f"cannot read the file ({err.strerror or err})") from None
    if len(data) > MAX_MIDI_FILE_BYTES:
        raise MidiError(f"file too large for a MIDI file (at most "
                        f"{MAX_MIDI_FILE_BYTES // 2**20} MiB)")
    if not data:
        raise MidiError("empty file, not a MIDI file")
    if data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header); give a Standard MIDI File (.mid)")
    return data


def read_midi(source) -> MidiSong:
    """Parse a MIDI file into parts (one per track and channel with notes) and its length.

    Args:
        source: a path, the file's bytes, or a ``pretty_midi.PrettyMIDI``.

    Raises:
        MidiError: unreadable, not MIDI, too large, or an unusable time division.
    """
    import mido

    if hasattr(source, "instruments") and hasattr(source, "write"):  # a PrettyMIDI
        buf = io.BytesIO()
        try:
            source.write(buf)
        except Exception as err:  # noqa: BLE001 - any failure is a bad object, one line
            raise MidiError(f"cannot use this PrettyMIDI object ({err})") from None
        data = buf.getvalue()
    else:
        data = _read_bytes(source)
    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as err:  # noqa: BLE001 - mido raises many types for damaged files
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MidiError(f"damaged or unreadable MIDI file ({msg})") from None
    tpb = mid.ticks_per_beat
    if not isinstance(tpb, int) or not 0 < tpb < 0x8000:
        raise MidiError("this MIDI file uses SMPTE time division, which is not supported; "
                        "save it with a tempo-based division (ticks per beat)")
    # Tempo map from every track (type 1 files keep it in the first).
    tempos = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
    tempos.sort(key=lambda x: x[0])
    seg_ticks, seg_seconds, seg_tempo = [0], [0.0], [DEFAULT_TEMPO_US_PER_BEAT]
    for tick, tempo in tempos:
        seconds = seg_seconds[-1] + (tick - seg_ticks[-1]) * seg_tempo[-1] / (1e6 * tpb)
        if tick == seg_ticks[-1]:
            seg_tempo[-1] = tempo
        else:
            seg_ticks.append(tick)
            seg_seconds.append(seconds)
            seg_tempo.append(tempo)

    def to_seconds(tick: int) -> float:
        i = bisect.bisect_right(seg_ticks, tick) - 1
        return seg_seconds[i] + (tick - seg_ticks[i]) * seg_tempo[i] / (1e6 * tpb)

    length_s = 0.0
    by_part: dict[tuple[int, int], list] = {}
    names: dict[int, str] = {}
    programs: dict[tuple[int, int], int] = {}
    order = 0
    for ti, track in enumerate(mid.tracks):
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "track_name" and ti not in names and msg.name.strip():
                names[ti] = msg.name.strip()
            if msg.is_meta or not hasattr(msg, "channel"):
                continue
            t = to_seconds(tick)
            length_s = max(length_s, t)
            if msg.type == "program_change":
                programs.setdefault((ti, msg.channel), msg.program)
            if msg.type in ("note_on", "note_off", "pitchwheel", "control_change"):
                by_part.setdefault((ti, msg.channel), []).append((t, order, msg))
                order += 1
    parts = []
    for (ti, ch), events in by_part.items():
        n_notes = sum(1 for _, _, m in events if m.type == "note_on" and m.velocity > 0)
        if n_notes == 0:
            continue
        events.sort(key=lambda e: (e[0], _event_rank(e[2]), e[1]))
        sounding, poly = set(), 0
        for _, _, m in events:
            if m.type == "note_on" and m.velocity > 0:
                sounding.add(m.note)
                poly = max(poly, len(sounding))
            elif m.type in ("note_on", "note_off"):
                sounding.discard(m.note)
        name = names.get(ti)
        if name is None:
            if ch == DRUM_CHANNEL:
                name = "drums"
            else:
                import pretty_midi

                name = pretty_midi.program_to_instrument_name(programs.get((ti, ch), 0))
        parts.append(MidiPart(len(parts), ti, ch, name, n_notes, poly, events))
    return MidiSong(parts, float(length_s))


def is_midi_file(path) -> bool:
    """Whether ``path`` names a MIDI file: a MIDI extension, or a Standard MIDI File header
    (for uploads saved under temporary names)."""
    p = Path(path)
    if p.suffix.lower() in MIDI_EXTENSIONS:
        return True
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"MThd"
    except OSError:
        return False


def list_tracks(source) -> list[str]:
    """One line per part with notes (``"N 'name' (channel C, K notes)"``) for help and errors."""
    return [p.describe() for p in read_midi(source).parts]


def _check_transpose(transpose) -> float:
    try:
        x = float(transpose)
    except (TypeError, ValueError):
        raise MidiError(f"transpose must be a number of semitones, got {transpose!r}") from None
    if not (math.isfinite(x) and abs(x) <= TRANSPOSE_LIMIT_SEMITONES):
        raise MidiError(f"transpose must be within +-{TRANSPOSE_LIMIT_SEMITONES:g} semitones, "
                        f"got {transpose}")
    return x


def _check_tempo_scale(tempo_scale) -> float:
    lo, hi = TEMPO_SCALE_RANGE
    try:
        x = float(tempo_scale)
    except (TypeError, ValueError):
        raise MidiError(f"tempo scale must be a number, got {tempo_scale!r}") from None
    if not (math.isfinite(x) and lo <= x <= hi):
        raise MidiError(f"tempo scale must be between {lo:g} and {hi:g} (2 = twice as fast), "
                        f"got {tempo_scale}")
    return x


def choose_part(song: MidiSong, track: int | None = None) -> MidiPart:
    """The part ``track`` names, or the first with pitched notes (drums are never chosen)."""
    listing = "; ".join(p.describe() for p in song.parts)
    if not song.parts:
        raise MidiError("no notes in this MIDI file")
    if track is None:
        for p in song.parts:
            if not p.is_drums:
                return p
        raise MidiError("only drum notes (channel 10) in this MIDI file; nothing to play")
    if isinstance(track, bool) or not isinstance(track, (int, np.integer)):
        raise MidiError(f"track must be a whole number, got {track!r}; tracks with notes: "
                        f"{listing}")
    if not 0 <= track < len(song.parts):
        raise MidiError(f"no track {track}; tracks with notes: {listing}")
    part = song.parts[int(track)]
    if part.is_drums:
        raise MidiError(f"track {track} is drums (channel 10), not pitched; tracks with "
                        f"notes: {listing}")
    return part


# ---------------------------------------------------------------------------------------------
# Offline: a file -> curves -> audio
# ---------------------------------------------------------------------------------------------

def n_frames_for_midi(length_s: float, frame_rate_hz: float, options: MidiOptions) -> int:
    """Frames of the output: ceil((MIDI length + release) * frame rate)."""
    return max(1, math.ceil(round((length_s + options.release_s) * frame_rate_hz, 6)))


def midi_to_curves(source, stats: dict, frame_rate_hz: float,
                   options: MidiOptions = MidiOptions(), track: int | None = None,
                   transpose: float = 0.0, tempo_scale: float = 1.0) -> dict:
    """Play a MIDI file's part with a :class:`MidiPerformer`: the curves a model needs.

    Args:
        source: a path, the file's bytes or a ``pretty_midi.PrettyMIDI``.
        stats: the model's dataset statistics.
        frame_rate_hz: the model's frame rate.
        track: the part to play (numbers as :func:`list_tracks` shows them; default the first
            with pitched notes).
        transpose: semitones added to every note (|x| <= 48, fractional allowed).
        tempo_scale: multiplies the tempo: 2 plays twice as fast, 0.5 twice as slow (0.1..10).

    Returns:
        dict with ``f0_hz``, ``loudness_db`` ([n_frames] float32, n_frames =
        ceil((MIDI length / tempo_scale + release_s) * frame_rate_hz)), ``notes`` (the notes
        played: [(start_s, end_s, pitch, velocity)], after tempo scale and transpose) and
        ``info`` (the part chosen, the parts available, what polyphony removed, lengths,
        pitch range against the model's, and a one-line ``message``).

    Raises:
        MidiError: bad file, no notes, track out of range, transpose or tempo scale out of
            range, output longer than ``options.max_duration_s``, unusable statistics.
    """
    transpose = _check_transpose(transpose)
    tempo_scale = _check_tempo_scale(tempo_scale)
    performer = MidiPerformer(stats, frame_rate_hz, options, transpose)
    song = read_midi(source)
    part = choose_part(song, track)
    fr = performer.frame_rate_hz
    length_s = song.length_s / tempo_scale
    total_s = length_s + options.release_s
    if total_s > options.max_duration_s:
        raise MidiError(f"the output would last {total_s:.0f} s (MIDI length {length_s:.0f} s "
                        f"+ release); the limit is {options.max_duration_s:.0f} s")
    n_frames = n_frames_for_midi(length_s, fr, options)
    frames = [round(t / tempo_scale * fr) for t, _, _ in part.events]
    f0 = np.empty(n_frames, np.float32)
    loud = np.empty(n_frames, np.float32)
    ei, n_events = 0, len(part.events)
    for i in range(n_frames):
        while ei < n_events and frames[ei] <= i:
            performer.send(part.events[ei][2])
            ei += 1
        f0[i], loud[i] = performer.next_frame()
    summary = performer.summary()
    info = _info(song, part, summary, stats, length_s, n_frames / fr, options, transpose,
                 tempo_scale)
    return {"f0_hz": f0, "loudness_db": loud, "notes": summary["notes"], "info": info}


def _info(song, part, summary, stats, length_s, duration_s, options, transpose,
          tempo_scale) -> dict:
    notes = summary["notes"]
    pitches = np.array([n[2] for n in notes], np.float64)
    info = {
        "track": part.index, "track_name": part.name, "midi_track": part.track,
        "channel": part.channel + 1,
        "tracks": [p.describe() for p in song.parts],
        "n_notes": part.n_notes, "max_polyphony": part.max_polyphony,
        "n_played": summary["n_played"], "n_dropped": summary["n_dropped"],
        "n_truncated": summary["n_truncated"], "n_delayed": summary["n_delayed"],
        "midi_length_s": length_s, "release_s": options.release_s, "duration_s": duration_s,
        "tempo_scale": tempo_scale, "transpose_semitones": transpose,
    }
    lines = [f"playing track {part.describe()}"]
    pitchable = [p for p in song.parts if not p.is_drums]
    if len(pitchable) > 1:
        lines.append(f"{len(pitchable)} tracks with notes; choose another with track=N")
    if part.max_polyphony > 1:
        lines.append(f"polyphonic: kept the highest voice ({summary['n_dropped']} notes "
                     f"dropped, {summary['n_truncated']} cut short)")
    try:
        q = np.asarray(stats.get("pitch_midi_quantiles", ()), np.float64).reshape(-1)
    except (TypeError, ValueError):
        q = np.zeros(0)
    if len(pitches) and len(q) >= 3 and np.all(np.isfinite(q)):
        pct = np.linspace(0.0, 100.0, len(q))
        lo, hi = (float(np.interp(x, pct, q)) for x in MODEL_RANGE_PERCENTILES)
        outside = float(np.mean((pitches < lo) | (pitches > hi)))
        shift = 12 * int(np.round((float(np.median(q)) - float(np.median(pitches))) / 12.0))
        # a suggestion the transpose option accepts (whole octaves within its range)
        limit = 12 * int(TRANSPOSE_LIMIT_SEMITONES // 12)
        shift = int(np.clip(transpose + shift, -limit, limit) - transpose) // 12 * 12
        info.update(pitch_range_midi=(float(pitches.min()), float(pitches.max())),
                    model_pitch_range_midi=(lo, hi), fraction_outside_model_range=outside,
                    suggested_transpose_semitones=float(transpose + shift))
        if outside > 0.25 and shift != 0:
            lines.append(f"{outside:.0%} of the notes lie outside the instrument's range; "
                         f"try transpose {transpose + shift:+g}")
    info["message"] = "; ".join(lines)
    return info


def render_midi(model, meta: dict, path, options: MidiOptions = MidiOptions(),
                track: int | None = None, transpose: float = 0.0, tempo_scale: float = 1.0,
                progress=None, transfer_options=None) -> tuple[np.ndarray, dict]:
    """Play a MIDI file through a model with the chunked renderer.

    Args:
        model, meta: from ``load_model`` (``meta["dataset_stats"]`` gives the levels).
        path: a MIDI file (path, bytes or PrettyMIDI).
        transfer_options: a ``TransferOptions`` for the renderer's gains, reverb mix, chunk
            length and seed (its auto-adjust and shifts are not used).
        progress: e.g. tqdm, advanced by the seconds rendered.

    Returns:
        audio [n_frames * hop] float32 at ``model.config.synth.sample_rate`` (MIDI length +
        release), and info: :func:`midi_to_curves`'s ``info`` plus ``f0_hz``, ``loudness_db``
        and ``notes``.
    """
    from .transfer import TransferOptions, render

    if getattr(model, "encoder", None) is not None:
        raise MidiError("this model needs input audio (it has a z encoder); it cannot be "
                        "played from MIDI")
    stats = (meta or {}).get("dataset_stats")
    curves = midi_to_curves(path, stats, model.config.synth.frame_rate_hz, options, track,
                            transpose, tempo_scale)
    audio = render(model, curves["f0_hz"], curves["loudness_db"],
                   transfer_options or TransferOptions(), progress)
    info = dict(curves["info"], f0_hz=curves["f0_hz"], loudness_db=curves["loudness_db"],
                notes=curves["notes"])
    return audio, info


__all__ = [
    "MidiError",
    "MidiOptions",
    "MidiPart",
    "MidiPerformer",
    "MidiSong",
    "choose_part",
    "gain_to_loudness_db",
    "is_midi_file",
    "list_tracks",
    "midi_gain_db",
    "midi_to_curves",
    "midi_to_hz",
    "n_frames_for_midi",
    "read_midi",
    "render_midi",
]
