"""Offline: a MIDI file -> the f0 and loudness curves a model plays -> audio."""

from __future__ import annotations

import math

import numpy as np

from .files import choose_part, read_midi, tracks_listing
from .options import (MODEL_RANGE_PERCENTILES, TEMPO_SCALE_RANGE, TRANSPOSE_LIMIT_SEMITONES,
                      MidiError, MidiOptions, check_transpose)
from .performer import MidiPerformer



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
    transpose = check_transpose(transpose)
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
    info["playing"] = part.describe()
    info["tracks_listing"] = tracks_listing(song)
    info["n_pitched_parts"] = sum(1 for p in song.parts if not p.is_drums)
    try:
        q = np.asarray(stats.get("pitch_midi_quantiles", ()), np.float64).reshape(-1)
    except (TypeError, ValueError):
        q = np.zeros(0)
    if len(pitches) and len(q) >= 3 and np.all(np.isfinite(q)):
        pct = np.linspace(0.0, 100.0, len(q))
        lo, hi = (float(np.interp(x, pct, q)) for x in MODEL_RANGE_PERCENTILES)
        outside = float(np.mean((pitches < lo - 0.5) | (pitches > hi + 0.5)))
        shift = 12 * int(np.round((float(np.median(q)) - float(np.median(pitches))) / 12.0))
        # a suggestion the transpose option accepts (whole octaves within its range)
        limit = 12 * int(TRANSPOSE_LIMIT_SEMITONES // 12)
        shift = int(np.clip(transpose + shift, -limit, limit) - transpose) // 12 * 12
        info.update(pitch_range_midi=(float(pitches.min()), float(pitches.max())),
                    model_pitch_range_midi=(lo, hi), fraction_outside_model_range=outside,
                    suggested_transpose_semitones=float(transpose + shift))
    info["message"] = midi_message(info)
    return info


def midi_message(info: dict, track_hint: str | None = "track=N",
                 transpose_hint: str = "transpose={:g}") -> str:
    """One line on what :func:`midi_to_curves` played: the part, the other parts, what
    polyphony removed, and a transpose when most notes lie outside the model's range.

    Args:
        info: ``midi_to_curves(...)["info"]``.
        track_hint: how the caller chooses a part (``"--track N"`` on the command line;
            None: the caller cannot).
        transpose_hint: how the caller transposes, formatted with the semitones.
    """
    lines = [f"playing track {info['playing']}"]
    if info["n_pitched_parts"] > 1:
        other = f"parts with notes: {info['tracks_listing']}"
        lines.append(other + (f"; choose another with {track_hint}" if track_hint else ""))
    if info["max_polyphony"] > 1 and info["n_dropped"] + info["n_truncated"] == 0:
        lines.append("notes that overlap followed each other legato")
    elif info["max_polyphony"] > 1:
        lines.append(f"polyphonic: kept the highest voice ({info['n_dropped']} notes "
                     f"dropped, {info['n_truncated']} cut short)")
    outside = info.get("fraction_outside_model_range", 0.0)
    shift = info.get("suggested_transpose_semitones", info["transpose_semitones"])
    if outside > 0.25 and shift != info["transpose_semitones"]:
        lines.append(f"{outside:.0%} of the notes lie outside the instrument's range; "
                     f"try {transpose_hint.format(shift)}")
    return "; ".join(lines)

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
    from ..transfer import TransferOptions, render

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
