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
* **Polyphony.** The highest note sounds. A lower note struck while a higher one sounds
  waits, and follows it legato when the higher one ends, if its key is still held (an
  overlapping legato, however long the overlap, up to ``max_legato_overlap_s``); if its key
  comes up first, it is dropped. Notes struck together (a chord) play their highest. A
  higher note cuts the sounding one short, and a cut note, like the lower notes of a chord,
  does not come back when the higher one ends (a melody over held chords would otherwise
  fill every rest with the accompaniment). What was dropped or cut is counted and reported.
* **Tracks.** A part is one channel of one track (a type-0 file's channels are separate
  parts); ``track=N`` numbers the parts with notes in file order. Drums (channel 10) are
  never chosen by default and cannot be played.

Timing: ``tempo_scale`` multiplies the tempo (2 = twice as fast). An event at ``t`` seconds
(after tempo scaling) takes effect at frame ``round(t * frame_rate_hz)``, in time order (at
equal times: note-offs, then controllers and pitch bend, then note-ons, so touching notes
are legato and a repeated pitch re-attacks); whether a note-on or a controller of the same
frame comes first does not change the result. A note sounds for at least two frames. The
output lasts the MIDI file's length (its last channel event, any track, after tempo
scaling) plus ``release_s``."""

from ..dsp.units import midi_to_hz
from .curves import midi_message, midi_to_curves, n_frames_for_midi, render_midi
from .excerpt import midi_excerpt
from .files import MidiPart, MidiSong, choose_part, is_midi_file, list_tracks, read_midi
from .options import MidiError, MidiOptions, gain_to_loudness_db, midi_gain_db
from .performer import MidiPerformer

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
    "midi_excerpt",
    "midi_message",
    "midi_gain_db",
    "midi_to_curves",
    "midi_to_hz",
    "n_frames_for_midi",
    "read_midi",
    "render_midi",
]
