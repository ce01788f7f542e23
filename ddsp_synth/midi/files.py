"""Reading MIDI files: parts (one per track and channel with notes), their events in seconds,
and the choice of the part to play."""

from __future__ import annotations

import bisect
import io
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .options import (DEFAULT_TEMPO_US_PER_BEAT, DRUM_CHANNEL, MAX_MIDI_EVENTS,
                      MAX_MIDI_FILE_BYTES, MAX_PART_NOTES, MIDI_EXTENSIONS, MidiError)



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

def _source_bytes(source) -> bytes:
    """The bytes of a path, of bytes, or of a ``pretty_midi.PrettyMIDI``."""
    if hasattr(source, "instruments") and hasattr(source, "write"):  # a PrettyMIDI
        buf = io.BytesIO()
        try:
            source.write(buf)
        except Exception as err:  # noqa: BLE001 - any failure is a bad object, one line
            raise MidiError(f"cannot use this PrettyMIDI object ({err})") from None
        return buf.getvalue()
    return _read_bytes(source)


def _count_events_kernel(buf) -> int:
    """Events in the track chunks of a Standard MIDI File ``buf`` (uint8 array), walked as
    mido would (delta times, running status, meta and sysex lengths) without building them.
    Compiled by numba: 15 MB in milliseconds, where parsing them into messages takes minutes
    and gigabytes. A malformed track stops its count (mido then says why)."""
    n = len(buf)
    pos = 8 + ((buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]) if n >= 8 else n
    total = 0
    while pos + 8 <= n:
        length = (int(buf[pos + 4]) << 24) | (int(buf[pos + 5]) << 16) | (int(buf[pos + 6]) << 8) \
            | int(buf[pos + 7])
        start, end = pos + 8, min(pos + 8 + length, n)
        if buf[pos] == 77 and buf[pos + 1] == 84 and buf[pos + 2] == 114 and buf[pos + 3] == 107:
            p, status = start, 0
            while p < end:
                while p < end and buf[p] & 0x80:  # delta time (variable length)
                    p += 1
                p += 1
                if p >= end:
                    break
                b = int(buf[p])
                if b >= 0x80:
                    p += 1
                    if b == 0xFF or b == 0xF0 or b == 0xF7:  # meta / sysex: a length, then data
                        if b == 0xFF:
                            p += 1
                        size = 0
                        while p < end and buf[p] & 0x80:
                            size = (size << 7) | (int(buf[p]) & 0x7F)
                            p += 1
                        if p < end:
                            size = (size << 7) | int(buf[p])
                        p += 1 + size
                        total += 1
                        continue
                    status = b
                elif status == 0:
                    break  # data without a status: damaged
                kind = status & 0xF0
                p += 1 if kind == 0xC0 or kind == 0xD0 else (0 if status >= 0xF0 else 2)
                total += 1
        pos = start + length
    return total


_count_events_compiled = None


def count_events(data: bytes) -> int:
    """The number of events a MIDI file holds, before any parsing (see the kernel)."""
    global _count_events_compiled
    if _count_events_compiled is None:
        try:
            import numba

            _count_events_compiled = numba.njit(cache=True, nogil=True)(_count_events_kernel)
        except Exception:  # numba missing or broken: the same walk in Python (slower)
            _count_events_compiled = _count_events_kernel
    return int(_count_events_compiled(np.frombuffer(data, np.uint8)))


def _parse(data: bytes):
    import mido

    n_events = count_events(data)  # before mido builds millions of messages
    if n_events > MAX_MIDI_EVENTS:
        raise MidiError(f"{n_events:,} events is not a melody to play (at most "
                        f"{MAX_MIDI_EVENTS:,})")

    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as err:  # noqa: BLE001 - mido raises many types for damaged files
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MidiError(f"damaged or unreadable MIDI file ({msg[:200]})") from None
    tpb = mid.ticks_per_beat
    if not isinstance(tpb, int) or not 0 < tpb < 0x8000:
        raise MidiError("this MIDI file uses SMPTE time division, which is not supported; "
                        "save it with a tempo-based division (ticks per beat)")
    n_events = sum(len(track) for track in mid.tracks)
    if n_events > MAX_MIDI_EVENTS:
        raise MidiError(f"{n_events:,} events is not a melody to play (at most "
                        f"{MAX_MIDI_EVENTS:,})")
    return mid


def _tempo_map(mid):
    """tick -> seconds, from the tempo changes of every track (type 1 files keep them in
    the first)."""
    tpb = mid.ticks_per_beat
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

    return to_seconds


def _channel_events(mid, to_seconds):
    """The channel events of every (track, channel) in seconds, the tracks' names, the
    channels' programs, and the file's length."""
    length_s, order = 0.0, 0
    by_part: dict[tuple[int, int], list] = {}
    names: dict[int, str] = {}
    programs: dict[tuple[int, int], int] = {}
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
    return by_part, names, programs, length_s


def _part_name(ti: int, ch: int, names: dict, programs: dict) -> str:
    if ti in names:
        return names[ti]
    if ch == DRUM_CHANNEL:
        return "drums"
    import pretty_midi

    return pretty_midi.program_to_instrument_name(programs.get((ti, ch), 0))


def _polyphony(events) -> int:
    sounding, poly = set(), 0
    for _, _, m in events:
        if m.type == "note_on" and m.velocity > 0:
            sounding.add(m.note)
            poly = max(poly, len(sounding))
        elif m.type in ("note_on", "note_off"):
            sounding.discard(m.note)
    return poly


def read_midi(source) -> MidiSong:
    """Parse a MIDI file into parts (one per track and channel with notes) and its length.

    Args:
        source: a path, the file's bytes, or a ``pretty_midi.PrettyMIDI``.

    Raises:
        MidiError: unreadable, not MIDI, too large (bytes, events, or notes in a part), or
            an unusable time division.
    """
    mid = _parse(_source_bytes(source))
    by_part, names, programs, length_s = _channel_events(mid, _tempo_map(mid))
    parts = []
    for (ti, ch), events in by_part.items():
        n_notes = sum(1 for _, _, m in events if m.type == "note_on" and m.velocity > 0)
        if n_notes == 0:
            continue
        if n_notes > MAX_PART_NOTES:
            raise MidiError(f"a part of {n_notes:,} notes is not a melody to play (at most "
                            f"{MAX_PART_NOTES:,})")
        events.sort(key=lambda e: (e[0], _event_rank(e[2]), e[1]))
        parts.append(MidiPart(len(parts), ti, ch, _part_name(ti, ch, names, programs), n_notes,
                              _polyphony(events), events))
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

# parts named in one error line; the rest are counted
MAX_LISTED_PARTS = 8


def tracks_listing(song: MidiSong) -> str:
    """The parts with notes for one line of a message (at most ``MAX_LISTED_PARTS`` named)."""
    shown = [p.describe() for p in song.parts[:MAX_LISTED_PARTS]]
    more = len(song.parts) - len(shown)
    return "; ".join(shown) + (f"; and {more} more (list them with list_tracks)" if more > 0
                               else "")


def choose_part(song: MidiSong, track: int | None = None) -> MidiPart:
    """The part ``track`` names, or the first with pitched notes (drums are never chosen)."""
    listing = tracks_listing(song)
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
