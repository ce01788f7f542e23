"""MIDI's constants, the settings of the player, and how MIDI levels become loudness."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..audio_io import AudioError
from ..config import ConfigError, check_fields

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
# A played part is a melody: more events or notes than these is not a part to play (and
# would hold a server's queue for minutes); they bound memory and time whatever the bytes.
MAX_MIDI_EVENTS = 200_000  # the largest orchestral scores hold about 10^5
MAX_PART_NOTES = 100_000
TRANSPOSE_LIMIT_SEMITONES = 48.0
TEMPO_SCALE_RANGE = (0.1, 10.0)
DEFAULT_TEMPO_US_PER_BEAT = 500_000
MIDI_EXTENSIONS = (".mid", ".midi", ".smf", ".kar")
# of the training pitches (with half a semitone either side): the instrument's range, its
# lowest and highest notes (the 1st percentile put a cello's C2-D#2 and a flute's C4 outside)
MODEL_RANGE_PERCENTILES = (0.0, 100.0)
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
        max_legato_overlap_s: a lower note struck while a higher one sounds, at most this
            long before the higher one ends, follows it legato if still held (any overlap
            of a melody line by default); struck earlier, it is a second voice (dropped).
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
    max_legato_overlap_s: float = 10.0
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


def check_transpose(transpose) -> float:
    try:
        x = float(transpose)
    except (TypeError, ValueError):
        raise MidiError(f"transpose must be a number of semitones, got {transpose!r}") from None
    if not (math.isfinite(x) and abs(x) <= TRANSPOSE_LIMIT_SEMITONES):
        raise MidiError(f"transpose must be within +-{TRANSPOSE_LIMIT_SEMITONES:g} semitones, "
                        f"got {transpose}")
    return x
