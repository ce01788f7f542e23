"""The event-driven monophonic player: MIDI events in, one (f0, loudness) frame at a time
out. The same player renders files and plays live."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..dsp.units import midi_to_hz
from .options import (A4_MIDI, CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF, CC_DATA_ENTRY,
                      CC_DATA_ENTRY_LSB, CC_EXPRESSION, CC_MODULATION, CC_NRPN_LSB, CC_NRPN_MSB,
                      CC_RESET_CONTROLLERS, CC_RPN_LSB, CC_RPN_MSB, CC_VOLUME,
                      DEFAULT_BEND_RANGE_SEMITONES, GM_DEFAULT_VOLUME, MAX_BEND_RANGE_SEMITONES,
                      MIDI_MAX, PITCH_BEND_CENTRE, MidiError, MidiOptions, _clip_int, _map_gain,
                      _stats_quantiles, check_transpose, midi_gain_db)



_IDLE, _NOTE, _RELEASE = 0, 1, 2

# A note sounds for at least two frames: its onset frame is silent (f0 moves there) and the
# next carries the first step of the attack; a shorter note's note-off waits until then.
# With ``attack_on_note_frame`` the onset frame itself carries the first step (one frame less).
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
    onset_frame: int  # its key's note-on frame (a legato takeover starts later than it)
    glide_from_semitones: float = 0.0  # pitch offset at start_frame, glides to 0
    record: list = field(default_factory=list)  # [start_s, end_s, pitch, velocity]

class MidiPerformer:
    """A monophonic MIDI player that turns events into one control frame at a time.

    Call the event methods as events arrive, then :meth:`next_frame` once per frame (every
    ``1 / frame_rate_hz`` s); events take effect at the next frame. The same object serves
    a file (:func:`midi_to_curves`) and a live MIDI input feeding the streaming synthesizer.

    By default a note's own frame (the frame after its note-on) is silent and carries the
    note's pitch, and the attack's first step comes one frame later: f0 moves while nothing
    sounds, and the synthesizer (which interpolates each block between two frames) starts the
    note at its pitch. A live host cannot afford that frame: with ``attack_on_note_frame``
    everything that counts from the note (attack envelope, portamento, automatic vibrato) is
    one frame further along, so the note's own frame carries the attack's first step and
    sounds one frame (10 ms) sooner; the note-off and the release are timed as before. The
    silent frame before such a note still holds the old pitch; the host that can still change
    it (:class:`~ddsp_synth.streaming.MidiLiveEngine`, whose synthesizer has not rendered it
    yet) gives it the note's pitch.

    Args:
        stats: the model's dataset statistics (loudness quantiles, ``pitch_midi_mean``).
        frame_rate_hz: control frames per second (the model's ``synth.frame_rate_hz``).
        options: articulation and level settings.
        transpose_semitones: added to every note (fractional allowed, |x| <= 48).
        attack_on_note_frame: the live timing above (False: as files are rendered).
    """

    def __init__(self, stats: dict, frame_rate_hz: float, options: MidiOptions = MidiOptions(),
                 transpose_semitones: float = 0.0, attack_on_note_frame: bool = False):
        if not isinstance(options, MidiOptions):
            raise MidiError("options must be a MidiOptions")
        try:
            fr = float(frame_rate_hz)
        except (TypeError, ValueError):
            fr = float("nan")
        if not (math.isfinite(fr) and 1.0 <= fr <= 10_000.0):
            raise MidiError(f"frame rate must be in [1, 10000] Hz, got {frame_rate_hz!r}")
        check_transpose(transpose_semitones)
        self.frame_rate_hz = fr
        self.options = options
        self.attack_on_note_frame = bool(attack_on_note_frame)
        #: frames a note is already into its articulation at its own frame (0 or 1)
        self._lead = 1 if self.attack_on_note_frame else 0
        #: a note-off before this many frames from the note-on waits (the first step sounds)
        self._min_note_frames = MIN_NOTE_FRAMES - self._lead
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
        self._ended: _Voice | None = None  # released this frame: a held lower key may follow
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
        self._voice = _Voice(pitch, key.velocity, self.frame, key.onset_frame, glide_from, rec)
        self._target_db = None

    def _since(self, frame: int) -> int:
        """Frames into an articulation that began at ``frame`` (the event's frame), as the
        frame about to be produced sees it."""
        return self.frame - frame + self._lead

    def _glide_offset(self) -> float:
        v = self._voice
        k = self._since(v.start_frame)
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
            # a lower key waits: it follows legato if still held when the note ends
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
            if self.frame < v.start_frame + self._min_note_frames:
                self._deferred_off = v  # too short to be heard yet: end it a little later
            else:
                self._end_voice()
        elif not key.sounded:
            self.n_dropped += 1

    def _end_voice(self) -> None:
        """The sounding note's key came up: it releases, and once every event of this frame
        is in, a lower key struck while it sounded and still held follows it legato
        (:meth:`_follow_ended`)."""
        self._ended = self._voice
        self._release()

    def _follow_ended(self) -> None:
        """After a note ended this frame: the highest key struck after its key (so not a
        chord struck with it), at most ``max_legato_overlap_s`` before its end, never
        sounded and still held, takes over legato. Deciding at the frame rather than at the
        note-off keeps a chord's keys that come up together from sounding one by one."""
        v, self._ended = self._ended, None
        if self._stage != _RELEASE or self._release_frame != self.frame:
            return  # a note struck in the same frame already took over
        waiting = [(p, k) for p, k in self._held.items()
                   if not k.sounded and k.onset_frame > v.onset_frame
                   and self.frame - k.onset_frame <= self._overlap_frames]
        if waiting:
            p, k = max(waiting)
            self.n_delayed += 1
            self._legato(p, k)

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
                and self.frame >= self._voice.start_frame + self._min_note_frames):
            self._end_voice()
        if self._ended is not None:
            self._follow_ended()
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
                k = self._since(self._attack_frame)
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
                t_s = self._since(self._attack_frame) / self.frame_rate_hz - o.vibrato_delay_s
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
