"""MIDI -> curves -> audio: notes, bends, expression, articulation, polyphony, bad input."""

import math
import os
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from conftest import SHARED_DATA

from ddsp_synth.audio_io import AudioError
from ddsp_synth.config import ConfigError
from ddsp_synth.midi import (
    MidiError,
    MidiOptions,
    MidiPerformer,
    gain_to_loudness_db,
    list_tracks,
    midi_excerpt,
    midi_gain_db,
    midi_message,
    midi_to_curves,
    n_frames_for_midi,
    render_midi,
)

FR = 100.0
OPT = MidiOptions()
# A model-like distribution with a closed form: voiced quantile at percentile p is -60 + p/2 dB.
STATS = {
    "loudness_db_voiced_quantiles": list(np.linspace(-60.0, -10.0, 101)),
    "loudness_db_quantiles": list(np.linspace(-120.0, -10.0, 101)),
    "pitch_midi_mean": 66.0,
    "pitch_midi_quantiles": list(np.linspace(50.0, 85.0, 101)),
}
SILENCE_DB = -140.0  # min(loudness_db_quantiles) - 20, as transfer mutes


def hz_to_midi(f):
    return 69.0 + 12.0 * np.log2(np.asarray(f, np.float64) / 440.0)


def frame(t_s):
    return round(t_s * FR)


def write_midi(path, parts, end_s=None, bend_range=None):
    """parts: list of dicts(notes=[(start, end, pitch, vel)], bends=[(t, raw)], ccs=[(t, cc, v)],
    program, is_drum, name). Returns the path."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for part in parts:
        inst = pretty_midi.Instrument(part.get("program", 40), part.get("is_drum", False),
                                      part.get("name", ""))
        inst.notes = [pretty_midi.Note(v, p, s, e) for s, e, p, v in part.get("notes", [])]
        inst.pitch_bends = [pretty_midi.PitchBend(b, t) for t, b in part.get("bends", [])]
        ccs = [(t, c, v) for t, c, v in part.get("ccs", [])]
        if bend_range is not None:  # RPN 0, staggered so pretty_midi keeps the order
            ccs = [(0.0, 101, 0), (0.001, 100, 0), (0.002, 6, bend_range), (0.003, 38, 0),
                   (0.004, 101, 127), (0.005, 100, 127)] + ccs
        inst.control_changes = [pretty_midi.ControlChange(c, v, t) for t, c, v in ccs]
        pm.instruments.append(inst)
    if end_s is not None:
        pm.instruments[0].control_changes.append(pretty_midi.ControlChange(91, 0, end_s))
    pm.write(str(path))
    return path


# ---------------------------------------------------------------------------------------------
# level mapping
# ---------------------------------------------------------------------------------------------

def test_gain_law_and_quantile_mapping():
    assert midi_gain_db(127) == 0.0
    assert midi_gain_db(64) == pytest.approx(40 * math.log10(64 / 127))
    assert midi_gain_db(127, 100, 64) == pytest.approx(40 * math.log10(64 / 127))
    assert midi_gain_db(127, 127, 127) == pytest.approx(40 * math.log10(1.27))
    assert midi_gain_db(0) == -math.inf and midi_gain_db(100, 100, 0) == -math.inf
    g = np.array([0.0, -5.0, -10.0, -20.0, -26.0, -math.inf])
    got = gain_to_loudness_db(g, STATS, OPT)
    # Closed form for STATS: percentile p = 10 + 88 (1 + g/20) -> -60 + p/2 dB; below -20 dB
    # gain the level goes on dB for dB under the 10th percentile (-55 dB); -inf is muted.
    p = 10 + 88 * (1 + g[:4] / 20)
    want = np.r_[-60 + p / 2, -55.0 - 6.0, SILENCE_DB]
    np.testing.assert_allclose(got, want, atol=1e-9)
    shifted = gain_to_loudness_db(g[:3], STATS, MidiOptions(loudness_shift_db=-6.0))
    np.testing.assert_allclose(shifted, want[:3] - 6.0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# pitch: notes, transpose, pitch bend with and without an RPN bend range
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bend_range", [None, 7])
def test_f0_follows_notes_and_bend_vibrato(tmp_path, bend_range):
    notes = [(0.2, 1.4, 64, 90), (1.6, 3.0, 71, 90)]
    t = np.arange(1.8, 3.0, 0.01)
    raw = np.round(3000 * np.sin(2 * np.pi * 5.5 * (t - 1.8))).astype(int)  # vibrato by bend
    bends = list(zip(t, raw)) + [(3.0, 0)]
    path = write_midi(tmp_path / "bend.mid", [{"notes": notes, "bends": bends}],
                      bend_range=bend_range)
    out = midi_to_curves(path, STATS, FR, OPT, transpose=2.5)
    rng = 2.0 if bend_range is None else float(bend_range)
    got = hz_to_midi(out["f0_hz"])
    for start, end, pitch, _ in notes:
        # Away from the onset glide and the note-off, on frames that sound.
        for i in range(frame(start) + 8, frame(end)):
            bent = [b for tb, b in bends if frame(tb) <= i]
            want = pitch + 2.5 + (bent[-1] / 8192 * rng if bent and start > 1.5 else 0.0)
            assert abs(got[i] - want) * 100 < 0.05, (i, got[i], want)
    depth = np.ptp(got[frame(2.0):frame(2.9)])
    assert depth == pytest.approx(2 * 3000 / 8192 * rng, rel=0.02)


def test_transpose_and_tempo_scale(tmp_path):
    path = write_midi(tmp_path / "t.mid", [{"notes": [(0.5, 1.5, 60, 100), (2.0, 3.0, 67, 100)]}])
    base = midi_to_curves(path, STATS, FR, OPT)
    fast = midi_to_curves(path, STATS, FR, OPT, transpose=-12, tempo_scale=2.0)
    assert [n[:3] for n in fast["notes"]] == [(0.25, 0.75, 48.0), (1.0, 1.5, 55.0)]
    assert len(fast["f0_hz"]) == frame(3.0 / 2 + OPT.release_s)
    np.testing.assert_allclose(fast["f0_hz"][frame(1.2)] * 2, base["f0_hz"][frame(2.5)], rtol=1e-6)
    slow = midi_to_curves(path, STATS, FR, OPT, tempo_scale=0.5)
    assert [n[:2] for n in slow["notes"]] == [(1.0, 3.0), (4.0, 6.0)]


# ---------------------------------------------------------------------------------------------
# levels and articulation
# ---------------------------------------------------------------------------------------------

def test_levels_follow_velocity_expression_and_volume(tmp_path):
    vels = [30, 60, 90, 120]
    notes = [(0.5 + i, 1.2 + i, 62, v) for i, v in enumerate(vels)]
    swell = [(5.0 + k * 0.04, 11, int(40 + k * 87 / 49)) for k in range(50)]  # 40 -> 127
    notes.append((5.0, 7.2, 62, 100))
    ccs = [(0.0, 7, 100)] + swell + [(8.0, 7, 50)]
    notes.append((8.2, 9.0, 62, 100))
    path = write_midi(tmp_path / "lv.mid", [{"notes": notes, "ccs": ccs}])
    out = midi_to_curves(path, STATS, FR, OPT)
    ld = out["loudness_db"]
    sustain = [ld[frame(s) + 40] for s, *_ in notes[:4]]
    want = gain_to_loudness_db(midi_gain_db(np.array(vels)), STATS, OPT)
    np.testing.assert_allclose(sustain, want, atol=0.05)
    assert np.all(np.diff(sustain) > 3.0)
    rise = ld[frame(5.3):frame(7.0)]
    assert np.all(np.diff(rise) >= -1e-6) and rise[-1] - rise[0] > 15.0
    assert ld[frame(7.1)] == pytest.approx(
        float(gain_to_loudness_db(midi_gain_db(100, 100, 127), STATS, OPT)), abs=0.1)
    assert ld[frame(8.9)] == pytest.approx(
        float(gain_to_loudness_db(midi_gain_db(100, 50, 127), STATS, OPT)), abs=0.05)


def test_attack_decay_release_and_muted_gap(tmp_path):
    o = MidiOptions(attack_s=0.05, attack_accent_db=3.0, decay_s=0.1, release_s=0.2,
                    release_fade_db=60.0)
    path = write_midi(tmp_path / "ar.mid", [{"notes": [(0.5, 1.5, 60, 100), (2.0, 2.6, 72, 100)]}])
    out = midi_to_curves(path, STATS, FR, o)
    ld, f0 = out["loudness_db"], hz_to_midi(out["f0_hz"])
    level = float(gain_to_loudness_db(midi_gain_db(100), STATS, o))
    i0 = frame(0.5)
    assert np.all(ld[:i0 + 1] == SILENCE_DB)  # silent up to and including the onset frame
    att = ld[i0:i0 + 6]
    assert np.all(np.diff(att) > 0)
    # Linear amplitude ramp with a dB accent rising with it: frame k of 5.
    np.testing.assert_allclose(att[1:], level + 20 * np.log10(np.arange(1, 6) / 5)
                               + 3.0 * np.arange(1, 6) / 5, atol=1e-4)
    dec = ld[i0 + 5:i0 + 16]
    np.testing.assert_allclose(dec, level + 3.0 * (1 - np.arange(11) / 10), atol=1e-4)
    i1 = frame(1.5)
    np.testing.assert_allclose(ld[i1:i1 + 20], level - 3.0 * np.arange(20), atol=1e-4)
    gap = slice(i1 + 20, frame(2.0) + 1)
    assert np.all(ld[gap] == SILENCE_DB)
    # f0 held at the last note while muted; it moves to the next note at that note's
    # (still silent) onset frame, so the oscillators never jump while they sound.
    assert np.all(np.abs(f0[i1 + 20:frame(2.0)] - 60.0) < 1e-4)
    assert f0[frame(2.0)] == pytest.approx(72.0, abs=1e-4)
    # Output = MIDI length + release; the last note's release fits in it.
    assert len(ld) == n_frames_for_midi(2.6, FR, o) == frame(2.8)
    assert ld[-1] == pytest.approx(level - 3.0 * 19, abs=1e-4)


def test_legato_glides_and_keeps_level_detached_reattacks(tmp_path):
    o = MidiOptions(portamento_s=0.06)
    notes = [(0.5, 1.0, 60, 100), (1.0, 1.5, 64, 100), (1.5, 2.0, 62, 100),  # legato
             (2.1, 2.6, 67, 100)]  # detached
    path = write_midi(tmp_path / "lg.mid", [{"notes": notes}])
    out = midi_to_curves(path, STATS, FR, o)
    ld, f0 = out["loudness_db"], hz_to_midi(out["f0_hz"])
    level = float(gain_to_loudness_db(midi_gain_db(100), STATS, o))
    legato = ld[frame(0.8):frame(2.0)]
    assert np.all(np.abs(legato - level) < 1e-6)  # no dip, no new attack
    up = f0[frame(1.0):frame(1.0) + 7]
    assert np.all(np.diff(up) > 0)
    assert up[0] == pytest.approx(60.0) and up[-1] == pytest.approx(64.0)
    assert 60.5 < f0[frame(1.0) + 3] < 63.5  # mid-glide, not a jump
    down = f0[frame(1.5):frame(1.5) + 7]
    assert np.all(np.diff(down) < 0) and down[-1] == pytest.approx(62.0)
    # Detached: the release starts at 2.0, the next note re-attacks from where it fell.
    i = frame(2.1)
    assert ld[i - 1] < level - 25.0
    assert f0[i] == pytest.approx(67.0)  # no glide into a detached note
    assert np.all(np.diff(ld[i:i + 5]) > 0)
    assert [n[2] for n in out["notes"]] == [60.0, 64.0, 62.0, 67.0]
    # With a legato gap of 0.15 s the same detached note becomes legato.
    out2 = midi_to_curves(path, STATS, FR, MidiOptions(portamento_s=0.06, legato_gap_s=0.15))
    assert hz_to_midi(out2["f0_hz"][i + 1]) < 66.5
    assert out2["loudness_db"][i + 3] > level - 12


def test_repeated_note_reattacks(tmp_path):
    path = write_midi(tmp_path / "rep.mid", [{"notes": [(0.5, 1.0, 60, 100), (1.0, 1.5, 60, 100)]}])
    o = MidiOptions(reattack_dip_db=20.0)
    ld = midi_to_curves(path, STATS, FR, o)["loudness_db"]
    level = float(gain_to_loudness_db(midi_gain_db(100), STATS, o))
    i = frame(1.0)
    assert ld[i] == pytest.approx(level - 20.0 + 0.0, abs=0.01)
    assert np.all(np.diff(ld[i:i + 3]) > 0)


def test_optional_vibrato_and_mod_wheel(tmp_path):
    path = write_midi(tmp_path / "v.mid", [{"notes": [(0.2, 2.2, 69, 100)],
                                          "ccs": [(3.0, 1, 127)]}], end_s=3.0)
    plain = hz_to_midi(midi_to_curves(path, STATS, FR, OPT)["f0_hz"])
    assert np.ptp(plain[frame(0.4):frame(2.2)]) < 1e-9  # off by default
    o = MidiOptions(vibrato_depth_cents=30.0, vibrato_rate_hz=5.0, vibrato_delay_s=0.3,
                    vibrato_ramp_s=0.2)
    vib = hz_to_midi(midi_to_curves(path, STATS, FR, o)["f0_hz"])
    assert np.ptp(vib[frame(0.25):frame(0.5)]) < 1e-9  # not before the delay
    steady = vib[frame(1.0):frame(2.2)] - 69.0
    assert np.max(steady) == pytest.approx(0.3, abs=0.01)
    assert np.min(steady) == pytest.approx(-0.3, abs=0.01)
    spec = np.abs(np.fft.rfft(steady - steady.mean(), 1200))
    assert np.fft.rfftfreq(1200, 1 / FR)[np.argmax(spec)] == pytest.approx(5.0, abs=0.1)
    wheel = write_midi(tmp_path / "w.mid", [{"notes": [(0.2, 2.2, 69, 100)],
                                           "ccs": [(0.0, 1, 127)]}])
    w = hz_to_midi(midi_to_curves(wheel, STATS, FR, OPT)["f0_hz"])[frame(0.5):frame(2.2)]
    assert np.ptp(w) == pytest.approx(2 * OPT.mod_wheel_vibrato_cents / 100, rel=0.02)


def test_very_short_note_still_sounds_and_panic_controllers():
    perf = MidiPerformer(STATS, FR, OPT)
    perf.note_on(60, 100)
    perf.note_off(60)  # a 0-frame note: still gets its first attack step
    out = [perf.next_frame()[1] for _ in range(4)]
    # Silent onset frame, one attack step, then the release from there.
    assert out[0] == SILENCE_DB and out[1] > SILENCE_DB + 50 and out[3] < out[2] == out[1]
    assert perf.summary()["notes"][0][1] == pytest.approx(2 / FR)
    perf.note_on(64, 100)
    [perf.next_frame() for _ in range(10)]
    perf.control_change(123, 0)  # all notes off: a release, not a cut
    a = [perf.next_frame()[1] for _ in range(3)]
    assert SILENCE_DB < a[2] < a[1] < a[0]
    perf.note_on(67, 100)
    [perf.next_frame() for _ in range(10)]
    perf.control_change(120, 0)  # all sound off: silent at once
    assert perf.next_frame()[1] == SILENCE_DB


def test_type0_file_channels_and_tempo_changes(tmp_path):
    import mido

    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr += [mido.MetaMessage("set_tempo", tempo=500000, time=0),  # 120 bpm
           mido.Message("note_on", channel=0, note=72, velocity=90, time=0),
           mido.Message("note_on", channel=1, note=48, velocity=90, time=0),
           mido.Message("note_off", channel=0, note=72, time=480),  # 0.5 s
           mido.MetaMessage("set_tempo", tempo=1000000, time=0),  # 60 bpm from 0.5 s
           mido.Message("note_on", channel=0, note=74, velocity=90, time=480),  # 1.5 s
           mido.Message("note_off", channel=1, note=48, time=0),
           mido.Message("note_off", channel=0, note=74, time=240)]  # half a beat: 2.0 s
    path = tmp_path / "t0.mid"
    mid.save(str(path))
    assert len(list_tracks(path)) == 2
    top = midi_to_curves(path, STATS, FR, OPT)
    assert [n[:3] for n in top["notes"]] == [(0.5 - 0.5, 0.5, 72.0), (1.5, 2.0, 74.0)]
    bass = midi_to_curves(path, STATS, FR, OPT, track=1)
    assert [n[:3] for n in bass["notes"]] == [(0.0, 1.5, 48.0)]
    assert len(bass["f0_hz"]) == frame(2.0 + OPT.release_s)


# ---------------------------------------------------------------------------------------------
# polyphony and tracks
# ---------------------------------------------------------------------------------------------

def test_polyphonic_keeps_highest_voice(tmp_path):
    notes = [(0.5, 1.0, 60, 80), (0.5, 1.0, 64, 80), (0.5, 1.0, 67, 80),  # a chord
             (1.2, 1.7, 72, 80), (1.2, 1.7, 60, 80), (1.2, 1.7, 65, 80),  # another
             (2.0, 4.0, 48, 80),  # a held bass note ...
             (2.5, 3.0, 76, 80),  # ... cut short by a melody note over it
             (3.2, 3.5, 74, 80)]  # ... which starts after the bass was cut: bass not resumed
    path = write_midi(tmp_path / "poly.mid", [{"notes": notes}])
    out = midi_to_curves(path, STATS, FR, OPT)
    got = [(round(s, 2), round(e, 2), p) for s, e, p, _ in out["notes"]]
    assert got == [(0.5, 1.0, 67.0), (1.2, 1.7, 72.0), (2.0, 2.5, 48.0), (2.5, 3.0, 76.0),
                   (3.2, 3.5, 74.0)]
    f0, ld = hz_to_midi(out["f0_hz"]), out["loudness_db"]
    assert np.all(np.abs(f0[frame(0.6):frame(1.0)] - 67) < 1e-6)
    assert np.all(ld[frame(3.0) + 21:frame(3.2) + 1] == SILENCE_DB)  # bass stays cut
    info = out["info"]
    assert (info["n_dropped"], info["n_truncated"], info["max_polyphony"]) == (4, 1, 3)
    assert "polyphonic: kept the highest voice (4 notes dropped, 1 cut short)" in info["message"]


def test_overlapping_legato_down_is_not_dropped(tmp_path):
    # Keyboard legato: the next (lower) key goes down 50 ms before the last comes up.
    notes = [(0.5, 1.05, 67, 90), (1.0, 1.55, 65, 90), (1.5, 2.0, 64, 90)]
    path = write_midi(tmp_path / "ov.mid", [{"notes": notes}])
    out = midi_to_curves(path, STATS, FR, OPT)
    assert [n[2] for n in out["notes"]] == [67.0, 65.0, 64.0]
    assert [round(n[0], 2) for n in out["notes"]] == [0.5, 1.05, 1.55]
    assert out["info"]["n_delayed"] == 2 and out["info"]["n_dropped"] == 0
    level = float(gain_to_loudness_db(midi_gain_db(90), STATS, OPT))
    assert np.all(np.abs(out["loudness_db"][frame(0.8):frame(2.0)] - level) < 1e-6)


def test_a_long_overlapping_legato_is_not_a_hole_and_a_chord_stays_a_chord(tmp_path):
    # A slow keyboard legato overlaps 0.2 s: each lower note takes over when the one above
    # it comes up, with no silence between (it used to be dropped past 0.1 s of overlap).
    notes = [(0.0, 1.2, 72, 90), (1.0, 2.2, 67, 90), (2.0, 3.0, 64, 90)]
    out = midi_to_curves(write_midi(tmp_path / "slow.mid", [{"notes": notes}]), STATS, FR, OPT)
    assert [(round(s, 2), round(e, 2), p) for s, e, p, _ in out["notes"]] == \
        [(0.0, 1.2, 72.0), (1.2, 2.2, 67.0), (2.2, 3.0, 64.0)]
    assert np.all(out["loudness_db"][frame(0.2):frame(3.0)] > SILENCE_DB + 60)
    assert out["info"]["n_delayed"] == 2 and out["info"]["n_dropped"] == 0
    assert out["info"]["message"].endswith("notes that overlap followed each other legato")
    # A chord struck together plays its top; its lower note does not come back when the top
    # ends early, and a chord struck under a melody note whose keys all come up with it
    # does not sound one by one.
    notes = [(0.0, 1.0, 67, 90), (0.0, 2.0, 60, 90),
             (2.5, 3.5, 79, 90), (3.0, 3.5, 64, 90), (3.0, 3.5, 67, 90)]
    out = midi_to_curves(write_midi(tmp_path / "chord.mid", [{"notes": notes}]), STATS, FR, OPT)
    assert [(round(s, 2), round(e, 2), p) for s, e, p, _ in out["notes"]] == \
        [(0.0, 1.0, 67.0), (2.5, 3.5, 79.0)]
    assert out["info"]["n_dropped"] == 3


def test_track_choice_and_drums(tmp_path):
    parts = [{"notes": [(0.0, 1.0, 36, 100)], "is_drum": True, "program": 0, "name": "kit"},
             {"notes": [(0.5, 1.5, 72, 100)], "name": "flute"},
             {"notes": [(0.5, 1.5, 55, 100)], "name": "cello", "program": 42}]
    path = write_midi(tmp_path / "tracks.mid", parts)
    lines = list_tracks(path)
    assert len(lines) == 3 and "drums" in lines[0] and "'flute'" in lines[1]
    first = midi_to_curves(path, STATS, FR, OPT)
    assert first["info"]["track"] == 1 and first["notes"][0][2] == 72.0
    second = midi_to_curves(path, STATS, FR, OPT, track=2)
    assert second["info"]["track_name"] == "cello" and second["notes"][0][2] == 55.0
    # every part is listed with the number that chooses it (the drums count), in the
    # caller's own spelling of the option
    assert "parts with notes: 0 'kit'" in first["info"]["message"]
    assert "1 'flute'" in first["info"]["message"] and "2 'cello'" in first["info"]["message"]
    assert first["info"]["message"].endswith("choose another with track=N")
    assert midi_message(first["info"], "--track N").endswith("choose another with --track N")
    assert "choose another" not in midi_message(first["info"], None)
    with pytest.raises(MidiError, match="track 0 is drums"):
        midi_to_curves(path, STATS, FR, OPT, track=0)
    with pytest.raises(MidiError, match=r"no track 3; tracks with notes: 0 'kit'.*2 'cello'"):
        midi_to_curves(path, STATS, FR, OPT, track=3)


def test_range_hint_counts_the_instruments_lowest_and_highest_notes(tmp_path):
    # Training pitches from C2 (36) to A4 (69), few of them at the bottom: a part on C2-E2
    # is in range (the 1st percentile, E2, called it outside), two octaves under is not (the
    # hint moves its median to the model's, by octaves).
    stats = dict(STATS, pitch_midi_quantiles=[36.0] + list(np.linspace(40.0, 69.0, 100)))
    low = [(0.5 * i, 0.5 * i + 0.4, p, 90) for i, p in enumerate([36, 38, 40, 36])]
    info = midi_to_curves(write_midi(tmp_path / "low.mid", [{"notes": low}]), stats, FR,
                          OPT)["info"]
    assert info["fraction_outside_model_range"] == 0.0
    assert "outside" not in info["message"]
    lower = [(s, e, p - 24, v) for s, e, p, v in low]
    info = midi_to_curves(write_midi(tmp_path / "lower.mid", [{"notes": lower}]), stats, FR,
                          OPT)["info"]
    assert info["fraction_outside_model_range"] == 1.0
    assert info["message"].endswith("outside the instrument's range; try transpose=36")
    assert midi_message(info, None, "--transpose {:g}").endswith("try --transpose 36")


# ---------------------------------------------------------------------------------------------
# one implementation: the performer driven event by event gives midi_to_curves' frames
# ---------------------------------------------------------------------------------------------

def test_performer_event_by_event_equals_midi_to_curves(tmp_path):
    rng = np.random.default_rng(3)
    notes, t = [], 0.3
    for k in range(24):
        dur = float(rng.uniform(0.1, 0.6))
        gap = float(rng.choice([0.0, 0.0, 0.05, 0.3, -0.04]))
        notes.append((t, t + dur, int(rng.integers(55, 80)), int(rng.integers(30, 127))))
        t += dur + gap
    notes.append((1.0, 1.4, 50, 70))  # a lower second voice under the line
    bends = [(float(x), int(2000 * np.sin(7 * x))) for x in np.arange(0.3, t, 0.013)]
    ccs = [(float(x), 11, int(64 + 60 * np.sin(x))) for x in np.arange(0.0, t, 0.031)]
    ccs += [(2.0, 1, 90), (4.0, 7, 80)]
    path = write_midi(tmp_path / "mix.mid", [{"notes": notes, "bends": bends, "ccs": ccs}],
                      bend_range=3)
    want = midi_to_curves(path, STATS, FR, OPT, transpose=1.0, tempo_scale=1.25)
    # The same events as a live host would send them, from pretty_midi's own reading.
    inst = pretty_midi.PrettyMIDI(str(path)).instruments[0]
    events = [(n.end, 0, ("off", n.pitch)) for n in inst.notes]
    events += [(c.time, 1, ("cc", c.number, c.value)) for c in inst.control_changes]
    events += [(b.time, 1, ("bend", b.pitch)) for b in inst.pitch_bends]
    events += [(n.start, 2, ("on", n.pitch, n.velocity)) for n in inst.notes]
    events.sort(key=lambda e: (e[0], e[1]))
    perf = MidiPerformer(STATS, FR, OPT, transpose_semitones=1.0)
    bend_range = 2.0
    f0, ld, k = [], [], 0
    for i in range(len(want["f0_hz"])):
        while k < len(events) and round(events[k][0] / 1.25 * FR) <= i:
            ev = events[k][2]
            if ev[0] == "on":
                perf.note_on(ev[1], ev[2])
            elif ev[0] == "off":
                perf.note_off(ev[1])
            elif ev[0] == "bend":
                perf.pitch_bend(ev[1] / 8192 * bend_range)
            else:
                if ev[1] == 6:
                    bend_range = float(ev[2])
                perf.control_change(ev[1], ev[2])
            k += 1
        a, b = perf.next_frame()
        f0.append(a)
        ld.append(b)
    np.testing.assert_allclose(np.array(f0, np.float32), want["f0_hz"], rtol=1e-6)
    np.testing.assert_allclose(np.array(ld, np.float32), want["loudness_db"], atol=1e-4)
    assert perf.summary()["notes"] == want["notes"]


def _perform(events, n_frames, **kw):
    """Drive a performer with {frame: [(method, args...)]}: (f0 in MIDI, loudness) per frame."""
    perf = MidiPerformer(STATS, FR, OPT, **kw)
    f0, ld = [], []
    for i in range(n_frames):
        for name, *args in events.get(i, ()):
            getattr(perf, name)(*args)
        a, b = perf.next_frame()
        f0.append(a)
        ld.append(b)
    return hz_to_midi(f0), np.array(ld), perf


def test_attack_on_note_frame_is_the_file_timing_one_frame_sooner():
    """Live timing: a note's own frame carries the attack's first step (files: it is silent
    and the attack starts a frame later). Attack, decay, portamento and a deferred note-off
    all come one frame sooner; a note-off is heard when it comes, as in files."""
    events = {10: [("note_on", 60, 100)], 40: [("note_on", 64, 100)],  # legato up at 40
              41: [("note_off", 60)], 70: [("note_off", 64)],
              100: [("note_on", 67, 90), ("note_off", 67)],  # a note shorter than a frame
              130: [("note_on", 55, 80), ("note_on", 62, 80)],  # a chord: the highest plays
              160: [("note_off", 55), ("note_off", 62)]}
    f_file, l_file, p_file = _perform(events, 200)
    f_live, l_live, p_live = _perform(events, 200, attack_on_note_frame=True)
    level = float(gain_to_loudness_db(midi_gain_db(100), STATS, OPT))
    # The file's onset frame is silent; live, it is the file's next frame.
    assert l_file[10] == SILENCE_DB and l_live[10] > SILENCE_DB + 50
    # 10..69: attack, decay, the held note and the legato glide up to 64, one frame sooner
    # (the file's 70 is its first release frame, holding the level).
    np.testing.assert_array_equal(l_live[10:69], l_file[11:70])
    np.testing.assert_allclose(f_live[10:69], f_file[11:70], atol=1e-9)
    assert 60.0 < f_live[40] < 64.0 and f_file[40] == pytest.approx(60.0)  # glide begins
    # The note-off at 70 is heard at 70 in both: the live note is one frame longer.
    np.testing.assert_array_equal(l_live[70:100], l_file[70:100])
    assert l_live[70] == l_live[69] > l_live[71]  # a release starts from the last level
    # The short note and the chord: the file's frames shifted by one, release included.
    np.testing.assert_array_equal(l_live[100:129], l_file[101:130])
    np.testing.assert_array_equal(l_live[130:159], l_file[131:160])
    np.testing.assert_allclose(f_live[130:159], f_file[131:160], atol=1e-9)
    assert f_live[131] == pytest.approx(62.0)
    assert l_live[10 + 4] == pytest.approx(level + OPT.attack_accent_db, abs=1e-4)  # step 5 of 5
    # Same notes played and counted; the live short note ends one frame sooner.
    notes_file, notes_live = p_file.summary()["notes"], p_live.summary()["notes"]
    assert [n[2:] for n in notes_live] == [n[2:] for n in notes_file]
    assert notes_live[2][1] == pytest.approx(notes_file[2][1] - 1 / FR)


# ---------------------------------------------------------------------------------------------
# bad input: one line, MidiError (an AudioError), nothing allocated for absurd lengths
# ---------------------------------------------------------------------------------------------

def _bad_cases(tmp_path):
    good = write_midi(tmp_path / "good.mid", [{"notes": [(0.0, 1.0, 60, 90)]}])
    data = good.read_bytes()
    (tmp_path / "text.mid").write_text("this is not MIDI\n")
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "cut.mid").write_bytes(data[: len(data) // 2])
    (tmp_path / "header.mid").write_bytes(data[:14])
    (tmp_path / "dir.mid").mkdir()
    no_notes = write_midi(tmp_path / "nonotes.mid", [{"ccs": [(0.0, 7, 100)]}])
    drums = write_midi(tmp_path / "drums.mid", [{"notes": [(0.0, 1.0, 36, 90)], "is_drum": True}])
    long = write_midi(tmp_path / "long.mid", [{"notes": [(0.0, 1.0, 60, 90),
                                                         (40000.0, 40001.0, 62, 90)]}])
    cases = {
        "missing": (tmp_path / "nope.mid", {}, "no such file"),
        "folder": (tmp_path / "dir.mid", {}, "folder"),
        "empty": (tmp_path / "empty.mid", {}, "empty"),
        "text": (tmp_path / "text.mid", {}, "not a MIDI file"),
        "truncated": (tmp_path / "cut.mid", {}, "damaged or unreadable"),
        "header only": (tmp_path / "header.mid", {}, "no notes|damaged"),
        "no notes": (no_notes, {}, "no notes"),
        "only drums": (drums, {}, "only drum notes"),
        "track -1": (good, {"track": -1}, "no track -1"),
        "track str": (good, {"track": "1"}, "whole number"),
        "transpose 100": (good, {"transpose": 100}, "transpose"),
        "transpose nan": (good, {"transpose": float("nan")}, "transpose"),
        "tempo 0": (good, {"tempo_scale": 0.0}, "tempo scale"),
        "tempo 1e9": (good, {"tempo_scale": 1e9}, "tempo scale"),
        "tempo inf": (good, {"tempo_scale": float("inf")}, "tempo scale"),
        "tempo slow long": (good, {"tempo_scale": 0.1, "options": MidiOptions(max_duration_s=5)},
                            "limit is 5 s"),
        "11 hours": (long, {}, "the limit is 3600 s"),
        "no stats": (good, {"stats": {}}, "loudness quantiles"),
        "nan stats": (good, {"stats": {"loudness_db_quantiles": [float("nan")] * 3}},
                      "loudness quantiles"),
        "stats none": (good, {"stats": None}, "no dataset statistics"),
        "frame rate 0": (good, {"frame_rate_hz": 0.0}, "frame rate"),
        "frame rate str": (good, {"frame_rate_hz": "fast"}, "frame rate"),
    }
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.mid")
        cases["fifo"] = (tmp_path / "fifo.mid", {}, "not a regular file")
    return cases


def test_bad_inputs_give_one_line_errors(tmp_path):
    for name, (path, kw, pattern) in _bad_cases(tmp_path).items():
        kw = dict(kw)
        stats = kw.pop("stats", STATS)
        fr = kw.pop("frame_rate_hz", FR)
        with pytest.raises(MidiError, match=pattern) as err:
            midi_to_curves(path, stats, fr, **kw)
        msg = str(err.value)
        assert "\n" not in msg and "Traceback" not in msg and str(tmp_path) not in msg, name
        assert isinstance(err.value, AudioError)


@pytest.mark.parametrize("bad", [{"attack_s": -1.0}, {"release_s": float("nan")},
                                 {"quiet_percentile": 90.0, "loud_percentile": 10.0},
                                 {"dynamic_range_db": 0.0}, {"max_duration_s": 1e9},
                                 {"release_s": "long"}, {"portamento_s": 1e6}])
def test_bad_options_one_line(bad):
    with pytest.raises(ConfigError) as err:
        MidiOptions(**bad)
    assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)


def test_live_input_is_clamped_not_raised():
    perf = MidiPerformer(STATS, FR, OPT)
    perf.note_on(300, 500)  # out of MIDI range: clamped
    perf.pitch_bend(float("nan"))
    perf.control_change(11, -5)
    perf.control_change(6, 127)  # data entry without RPN 0 selected: ignored
    f0, ld = perf.next_frame()
    assert f0 == pytest.approx(440 * 2 ** ((127 - 69) / 12)) and ld == SILENCE_DB
    perf.note_off(127)
    assert perf.bend_range_semitones == 2.0


# ---------------------------------------------------------------------------------------------
# with a shipped model: the output's measured pitch follows the notes
# ---------------------------------------------------------------------------------------------

def _shipped(name):
    from ddsp_synth.model import available_models, load_model

    models = available_models()
    if name not in models:
        pytest.skip(f"shipped model {name!r} not present")
    return load_model(models[name])


def _measure_cents(audio, model, want_midi, mask):
    import torch

    from ddsp_synth.features import compute_f0

    torch.set_num_threads(1)
    f0, conf = compute_f0(audio, model.config.features)
    n = min(len(f0), len(want_midi))
    ok = mask[:n] & (conf[:n] >= 0.85)
    return 100 * (hz_to_midi(f0[:n][ok]) - want_midi[:n][ok]), int(ok.sum())


def test_rendered_midi_pitch_and_length_violin(tmp_path):
    model, meta = _shipped("violin")
    notes = [(0.3, 0.9, 67, 90), (0.9, 1.5, 71, 100), (1.5, 2.1, 74, 110),  # legato
             (2.3, 2.9, 79, 70), (3.1, 3.8, 76, 100)]  # detached
    path = write_midi(tmp_path / "v.mid", [{"notes": notes}])
    audio, info = render_midi(model, meta, path)
    hop, fr = model.config.synth.hop, model.config.synth.frame_rate_hz
    assert len(audio) == n_frames_for_midi(3.8, fr, OPT) * hop
    assert len(audio) == round((3.8 + OPT.release_s) * model.config.synth.sample_rate)
    want = np.full(len(info["f0_hz"]), np.nan)
    mask = np.zeros(len(want), bool)
    for s, e, p, _ in notes:
        a, b = round((s + 0.08) * fr), round((e - 0.05) * fr)
        want[a:b], mask[a:b] = p, True
    cents, n = _measure_cents(audio, model, want, mask)
    assert n > 0.6 * mask.sum()
    assert np.median(np.abs(cents)) < 20.0
    tail = audio[-int(OPT.release_s * model.config.synth.sample_rate) // 4:]
    body = audio[int(0.5 * 16000):int(2.0 * 16000)]
    assert np.sqrt(np.mean(tail ** 2)) < 0.05 * np.sqrt(np.mean(body ** 2))  # the release fades


def test_rendered_shared_violin_excerpt_follows_reference_f0():
    """~10 s of the shared FluidSynth performance: the output's pitch against the generator's
    own reference f0 (MIDI pitch + pitch bend, NAME.f0.csv), an independent reading."""
    mid, ref_csv = SHARED_DATA / "train" / "violin.mid", SHARED_DATA / "train" / "violin.f0.csv"
    if not (mid.exists() and ref_csv.exists()):
        pytest.skip("shared data absent")
    model, meta = _shipped("violin")
    t0, t1 = 20.0, 30.0
    ex = midi_excerpt(pretty_midi.PrettyMIDI(str(mid)), t0, t1)
    audio, _info = render_midi(model, meta, ex)
    fr = model.config.synth.frame_rate_hz
    assert len(audio) == n_frames_for_midi(ex.get_end_time(), fr, OPT) * model.config.synth.hop
    ref = np.loadtxt(ref_csv, delimiter=",", skiprows=1)
    i0 = round(t0 * fr)
    ref_f0 = ref[i0:i0 + int((t1 - t0) * fr), 1]
    mask = np.zeros(len(ref_f0), bool)
    for n in ex.instruments[0].notes:
        mask[int(np.ceil((n.start + 0.08) * fr)):int((n.end - 0.08) * fr)] = True
    mask &= ref_f0 > 0
    cents, n = _measure_cents(audio, model, hz_to_midi(np.where(ref_f0 > 0, ref_f0, 1.0)), mask)
    assert n > 0.5 * mask.sum() and mask.sum() > 300
    assert np.median(np.abs(cents)) < 20.0


# --------------------------------------------------------------------------------------
# Bounded before parsing: millions of events are refused without building them
# --------------------------------------------------------------------------------------
def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _smf(*tracks: bytes, tpb: int = 480) -> bytes:
    import struct

    head = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), tpb)
    return head + b"".join(b"MTrk" + struct.pack(">I", len(t)) + t for t in tracks)


def _running_status_notes(n_pairs: int) -> bytes:
    """One note-on, then note-on/off pairs in running status (3 bytes per event)."""
    return (b"\x00\x90\x3c\x40" + (b"\x01\x3c\x00" + b"\x01\x3c\x40") * n_pairs
            + b"\x00\xff\x2f\x00")


def test_event_count_before_parsing_equals_mido(tmp_path):
    import glob

    import mido

    from ddsp_synth.midi.files import count_events

    busy = (b"\x00\xff\x03\x05Lead!"                            # meta: track name
            b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7"                  # sysex
            b"\x00\xc0\x28" b"\x00\xd0\x40" b"\x05\x50"           # program, aftertouch (+running)
            b"\x00\xb0\x07\x64" b"\x00\x0a\x40"                  # CC, running CC
            b"\x00\xe0\x00\x50" + _vlq(200) + b"\x90\x3e\x50"    # bend, long delta
            + _vlq(20000) + b"\x80\x3e\x00" b"\x00\xff\x2f\x00")
    files = [_smf(_running_status_notes(500)), _smf(busy, _running_status_notes(3)), _smf(busy)]
    for path in [*glob.glob(str(SHARED_DATA / "train" / "*.mid")),
                 str(Path(__file__).resolve().parents[1] / "examples" / "ode_to_joy.mid")]:
        files.append(Path(path).read_bytes())
    for i, data in enumerate(files):
        (tmp_path / f"{i}.mid").write_bytes(data)
        expected = sum(len(t) for t in mido.MidiFile(tmp_path / f"{i}.mid", clip=True).tracks)
        assert count_events(data) == expected, i


def test_millions_of_events_are_refused_before_mido_reads_them(tmp_path, monkeypatch):
    import mido

    from ddsp_synth.midi import read_midi

    path = tmp_path / "flood.mid"  # 15 MB: under the byte cap, 5 million notes
    path.write_bytes(_smf(_running_status_notes(2_500_000)))

    def refuse(*args, **kwargs):
        raise AssertionError("mido parsed the whole file before the count refused it")
    monkeypatch.setattr(mido, "MidiFile", refuse)
    with pytest.raises(MidiError, match=r"5,000,002 events is not a melody"):
        read_midi(path)
