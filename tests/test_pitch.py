"""Pitch: deterministic Viterbi decoding of CREPE activations, bin refinement and the harmonic
check."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from ddsp_synth import harmonic_check
from ddsp_synth.crepe_grid import CREPE_CENTS_OFFSET, CREPE_CENTS_PER_BIN
from ddsp_synth.dsp.units import hz_to_cents
from ddsp_synth.features import FeatureConfig, compute_f0
from ddsp_synth.evaluate import midi_truth
from ddsp_synth.pitch import (VITERBI_JUMP_LOG_PROB, analysis_frames, crepe_activations, decode_f0,
                              viterbi_bins)
from ddsp_synth.streaming import StreamingFeatures

from conftest import SHARED_DATA


def test_viterbi_matches_librosa_with_the_same_transitions():
    """The band of +-11 bins plus a small probability of jumping anywhere (issue 23: with the
    band alone a path could not leave a harmonic for the next note)."""
    rng = np.random.default_rng(0)
    act = rng.uniform(0, 1, (60, 360)) ** 8
    act[:30, 100:110] += 0.5  # a ridge to follow, with noise around it...
    act[30:, 200:210] += 0.5  # ...that moves 100 bins at once: only a jump follows it
    ours = viterbi_bins(act)
    xx, yy = np.meshgrid(range(360), range(360))
    band = np.maximum(12 - abs(xx - yy), 0).astype(float)
    band /= band.sum(axis=1, keepdims=True)
    jump = np.exp(VITERBI_JUMP_LOG_PROB)
    trans = band * (1 - 360 * jump) + jump
    probs = act / act.sum(axis=1, keepdims=True)
    ref = librosa.sequence.viterbi(probs.T, trans)
    np.testing.assert_array_equal(ours, ref)
    assert np.all((ours[:30] >= 100) & (ours[:30] < 110)) and np.all((ours[31:] >= 200) & (ours[31:] < 210))


def test_decode_is_deterministic_and_refines_between_bins():
    act = np.zeros((5, 360), np.float32)
    act[:, 150] = 1.0
    act[:, 151] = 1.0  # equal neighbours: the refined pitch sits half-way (10 cents up)
    f0, conf = decode_f0(act)
    cents = hz_to_cents(f0)
    np.testing.assert_allclose(cents, 20 * 150 + 1997.3794084376191 + 10, atol=1e-3)
    np.testing.assert_allclose(conf, 1.0)
    f0b, _ = decode_f0(act.copy())
    np.testing.assert_array_equal(f0, f0b)


# --------------------------------------------------------------------------------------
# The harmonic check (issue 23): notes with a weak fundamental are read at their pitch
# --------------------------------------------------------------------------------------
# Harmonics 1..30 (dB re the strongest) of the FluidR3 cello's lowest notes (64-71 Hz), the
# median over the frames of a render (seed 9102) that CREPE tiny reads at three times the
# pitch: the fundamental 23 dB under the third harmonic.
CELLO_LOW_DB = [-23.2, -6.1, 0.0, -15.6, -14.8, -8.4, -21.9, -17.9, -23.8, -28.7, -22.8, -25.0,
                -29.9, -40.6, -39.1, -33.1, -27.2, -30.8, -36.6, -33.6, -32.0, -31.9, -35.9,
                -38.1, -38.6, -32.5, -33.6, -32.4, -32.9, -36.9]
# The same for the FluidR3 bassoon's notes that CREPE tiny reads an octave up (seed 9100):
# the odd harmonics 14-22 dB under the second.
BASSOON_OCTAVE_DB = [-17.9, 0.0, -22.4, -14.2, -28.4, -29.8, -44.8, -35.2, -40.5, -56.8,
                     -63.7, -58.5, -59.7, -63.3, -60.3, -57.1, -63.6, -60.1, -67.0, -70.9]


def harmonic_tone(f0_hz, harmonics_db, seconds=1.0, vibrato_cents=15.0, seed=0):
    """A tone with these harmonic levels, random phases and a 5 Hz vibrato: [n] float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(f0_hz * 2 ** (vibrato_cents / 1200 * np.sin(2 * np.pi * 5 * t))) / 16000
    y = sum(10 ** (db / 20) * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi))
            for k, db in enumerate(harmonics_db))
    return (0.3 * y / np.abs(y).max() + 1e-4 * rng.standard_normal(len(t))).astype(np.float32)


def streamed_f0(y):
    live = StreamingFeatures(FeatureConfig())
    frames = []
    for i in range(0, len(y), 160):
        frames += live.push(y[i : i + 160])
    return np.array([f.f0_hz for f in frames + live.finish()])


def cents_error(f0_hz, true_hz):
    return 1200 * np.log2(np.asarray(f0_hz, np.float64)[10:-10] / true_hz)  # edges left out


def check_reads_true_pitch(y, true_hz, raw_ratio):
    """CREPE alone (decoded without the check) reads ``raw_ratio`` x the pitch; the offline
    and the streaming path, with the check, read the pitch itself."""
    raw, _ = decode_f0(crepe_activations(y, 160))
    assert abs(np.median(cents_error(raw, true_hz)) - 1200 * np.log2(raw_ratio)) < 50
    for f0 in (compute_f0(y, FeatureConfig())[0], streamed_f0(y)):
        err = cents_error(f0, true_hz)
        assert np.median(np.abs(err)) < 20 and np.mean(np.abs(err) > 50) < 0.05, np.median(err)


@pytest.mark.parametrize("f0_hz", [55.0, 62.0, 70.0])
def test_low_notes_with_a_weak_fundamental_are_read_at_their_pitch(f0_hz):
    check_reads_true_pitch(harmonic_tone(f0_hz, CELLO_LOW_DB), f0_hz, raw_ratio=3.0)


@pytest.mark.parametrize("f0_hz", [110.0, 207.0])
def test_weak_odd_harmonics_are_not_read_an_octave_up(f0_hz):
    check_reads_true_pitch(harmonic_tone(f0_hz, BASSOON_OCTAVE_DB), f0_hz, raw_ratio=2.0)


@pytest.mark.parametrize("f0_hz", [1000.0, 1500.0, 1900.0])
def test_clean_high_tones_stand(f0_hz):
    y = harmonic_tone(f0_hz, [0.0, -10.0, -20.0])
    for f0 in (compute_f0(y, FeatureConfig())[0], streamed_f0(y)):
        err = cents_error(f0, f0_hz)
        assert np.median(np.abs(err)) < 20 and np.all(np.abs(err) < 50)


# Harmonic levels (dB) of a bright bowed string: every harmonic present, slowly falling.
BOWED_DB = [0.0, -3.0, -6.0, -10.0, -12.0, -15.0, -18.0, -20.0, -24.0, -28.0]


def legato(f1_hz, f2_hz, seconds=0.6, release_s=0.15):
    """``f1`` for ``seconds``, then ``f2`` while ``f1`` dies away (60 dB in ``release_s``),
    as a slurred note change with a ringing string: (audio, first frame of the new note)."""
    a = harmonic_tone(f1_hz, BOWED_DB, seconds=2 * seconds, seed=1)
    n = int(seconds * 16000)
    a[n:] *= np.exp(-np.arange(len(a) - n) / 16000 / (release_s / 6.9))
    a[n:] += harmonic_tone(f2_hz, BOWED_DB, seconds=seconds, seed=2)
    return a, n // 160


@pytest.mark.parametrize("f1_hz, f2_hz", [(554.4, 370.0), (880.0, 587.3), (1318.5, 880.0)])
def test_legato_note_changes_are_not_read_at_half_pitch(f1_hz, f2_hz):
    """Two notes a fifth apart are both harmonics of the octave below the second; while the
    first still rings, the check read the new note's first frames at half its pitch (the
    violin's legato and the models' outputs of it). From 50 ms into the note (the scoring's
    note edge) no frame may be at half, offline or streaming."""
    y, start = legato(f1_hz, f2_hz)
    for f0 in (compute_f0(y, FeatureConfig())[0], streamed_f0(y)):
        err = 1200 * np.log2(f0[start + 5 : start + 55] / f2_hz)
        assert not np.any(np.abs(err + 1200) < 100), np.round(err[:10])
        assert np.median(np.abs(err)) < 20


@pytest.mark.parametrize("f1_hz, f2_hz", [(147.0, 55.0), (130.8, 65.4)])
def test_streaming_reads_a_low_note_right_from_its_start(f1_hz, f2_hz):
    """A note change down to a low cello note (CREPE alone reads it at 3x): the online divisor
    filter cannot carry a later reading back, so it must take the divisor from the note's
    first frames (a divisor below 100 Hz counts from the change, and switching costs less
    than offline). From 50 ms into the note no frame may be at 3x."""
    a = harmonic_tone(f1_hz, BOWED_DB, seconds=1.2, seed=1)
    n = int(0.6 * 16000)
    a[n:] *= np.exp(-np.arange(len(a) - n) / 16000 / (0.05 / 6.9))
    a[n:] += harmonic_tone(f2_hz, CELLO_LOW_DB, seconds=0.6, seed=2)
    err = 1200 * np.log2(streamed_f0(a)[n // 160 + 5 : n // 160 + 55] / f2_hz)
    assert np.all(np.abs(err) < 50), np.round(err[:10])


def test_streaming_carries_a_held_note_through_octave_flips():
    """A held 233 Hz note whose odd harmonics fade for 80 ms every 0.3 s, as the FluidR3
    bassoon's do: the online Viterbi then reads those stretches at 466 Hz. The streaming
    filter follows the pitch it plays, so it divides them back at once (before: 14 frames
    of 270 at 2x)."""
    f0_hz = 233.0
    rich = harmonic_tone(f0_hz, [0.0, -3.0, -6.0, -9.0, -12.0, -15.0, -18.0, -21.0],
                         seconds=3.0, seed=1)
    odd_weak = harmonic_tone(f0_hz, BASSOON_OCTAVE_DB, seconds=3.0, seed=1)
    cycle = np.arange(len(rich)) / 16000 % 0.3
    mix = np.clip(np.minimum(cycle - 0.15, 0.23 - cycle) / 0.01, 0.0, 1.0)
    y = ((1 - mix) * rich + mix * odd_weak).astype(np.float32)
    err = 1200 * np.log2(streamed_f0(y)[20:-10] / f0_hz)
    assert np.all(np.abs(err) < 50), np.round(err[np.abs(err) >= 50][:10])


@pytest.mark.parametrize("f1_hz, f2_hz", [(220.0, 440.0), (293.7, 587.3)])
def test_streaming_follows_a_legato_octave_slur_within_90_ms(f1_hz, f2_hz):
    """The price of carrying a held note through octave flips: a slur up an octave while
    the first note still rings is played at the old pitch a little longer (evidence for the
    octave below holds while the window hears both notes), but never past 90 ms."""
    y, start = legato(f1_hz, f2_hz)
    err = 1200 * np.log2(streamed_f0(y)[start + 9 : start + 55] / f2_hz)
    assert np.all(np.abs(err) < 50), np.round(err[:10])


def test_stream_carry_keeps_the_pitch_played_across_an_octave_jump():
    k = {int(d): i for i, d in enumerate(harmonic_check.DIVISORS)}
    up = harmonic_check.stream_carry(233.0, 466.0)  # raw up an octave: divisor 1 -> 2
    assert up[k[1], k[2]] and up.sum() == 1
    down = harmonic_check.stream_carry(466.0, 233.0)  # and back: 2 -> 1
    assert down[k[2], k[1]] and down.sum() == 1
    assert not harmonic_check.stream_carry(233.0, 932.0).any()  # 1 -> 4 is never carried
    assert not harmonic_check.stream_carry(233.0, 240.0).any()  # no jump: nothing to carry
    # In the filter the carried change costs nothing: weak evidence for f / 2 is enough.
    score = np.array([0.0] + [-30.0] * (len(k) - 1))
    emission = np.array([0.0, 1.0] + [-5.0] * (len(k) - 2))
    held, _ = harmonic_check.divisor_advance(score, emission)
    carried, back = harmonic_check.divisor_advance(score, emission, free=up)
    assert np.argmax(held) == k[1] and np.argmax(carried) == k[2] and back[k[2]] == k[1]


def test_streaming_plays_a_division_by_four_as_one_by_two(monkeypatch):
    """Offline a division by 4 gets CREPE full's second opinion (it was an octave low 284
    times in 293); live there is none, so the front end plays it as a division by 2."""
    live = StreamingFeatures(FeatureConfig())
    monkeypatch.setattr(live, "_divisor", lambda *args: harmonic_check.DOUBT_DIVISOR)
    assert live._checked(None, None, None, 464.0, 0.9) == pytest.approx(232.0)
    monkeypatch.setattr(live, "_divisor", lambda *args: 3)
    assert live._checked(None, None, None, 195.0, 0.9) == pytest.approx(65.0)


def test_streaming_carries_only_a_held_note_and_never_at_an_attack():
    live = StreamingFeatures(FeatureConfig())
    live.played = (233.0, harmonic_check.STREAM_CARRY_HOLD)
    live.loudness.extend([-30.0] * (harmonic_check.STREAM_ATTACK_FRAMES + 1))
    assert live._carry(233.0, 466.0, 0.9).any()
    live.loudness.append(-30.0 + harmonic_check.STREAM_ATTACK_DB + 1.0)  # an attack
    assert live._carry(233.0, 466.0, 0.9) is None
    live.loudness.extend([-30.0] * (harmonic_check.STREAM_ATTACK_FRAMES + 1))
    assert live._carry(233.0, 466.0, confidence=0.2) is None  # CREPE unsure: a transition
    live.played = (233.0, harmonic_check.STREAM_CARRY_HOLD - 1)  # not held long enough
    assert live._carry(233.0, 466.0, 0.9) is None


@pytest.mark.parametrize("f0_hz", [440.0, 660.0, 990.0])
def test_high_notes_with_a_strong_second_harmonic_stay_put(f0_hz):
    """A note whose second harmonic is 6 dB over its fundamental (the models' outputs of
    high violin, flute and alto sax notes often are) is not halved."""
    y = harmonic_tone(f0_hz, [-6.0, 0.0, -8.0, -12.0, -16.0, -20.0])
    for f0 in (compute_f0(y, FeatureConfig())[0], streamed_f0(y)):
        err = cents_error(f0, f0_hz)
        assert np.median(np.abs(err)) < 20 and np.all(np.abs(err) < 50)


def test_frames_since_change_counts_from_each_note_change():
    hz = np.array([200.0] * 4 + [300.0] * 12 + [301.0] * 3)
    n = harmonic_check.frames_since_change(hz)
    assert list(n[:4]) == [harmonic_check.ONSET_FRAMES] * 4  # the first frame counts as settled
    assert list(n[4:13]) == list(range(9)) and n[-1] == harmonic_check.ONSET_FRAMES
    # streaming, frame by frame, with the previous frame's state: the same counts
    state, online = None, []
    for f in hz:
        c = int(harmonic_check.frames_since_change(np.array([f]), state)[0])
        state = (f, c)
        online.append(c)
    assert online == list(n)


def test_an_unsure_frame_restarts_the_onset_count_of_the_higher_divisors_only():
    """Offline only: the streaming filter keeps counting from changes of pitch."""
    hc = harmonic_check
    hz = np.full(20, 740.0)  # a held F#5: the tracked pitch never changes
    conf = np.full(20, 0.9)
    conf[6:9] = 0.05  # an attack out of silence: CREPE unsure for three frames
    since_change = hc.frames_since_change(hz)
    unsure = hc.frames_since_unsure(since_change, conf)
    assert list(since_change) == [hc.ONSET_FRAMES] * 20
    assert list(unsure[:6]) == [hc.ONSET_FRAMES] * 6 and list(unsure[6:9]) == [0, 0, 0]
    assert list(unsure[9:18]) == list(range(1, 9)) + [hc.ONSET_FRAMES]
    counts = hc.onset_counts(since_change, unsure, hz)
    high = 740.0 / hc.DIVISORS >= hc.RESTART_MIN_HZ  # f / 2 .. f / 4 restart, f / 5 .. do not
    assert list(high) == [True, True, True, True, False, False, False, False]
    assert np.all(counts[:, high] == unsure[:, None])
    assert np.all(counts[:, ~high] == since_change[:, None])


def test_attack_evidence_for_half_the_pitch_no_longer_halves_a_held_note():
    """The alto sax's F#5 out of silence: for the attack's frames (CREPE unsure) the check's
    features favour f / 2, then the steady note does not. Counting from the unsure frames,
    that evidence weighs too little to halve the attack; counted from the last change of
    pitch (long before), it halved it."""
    hc = harmonic_check
    n = 40
    hz = np.full(n, 740.0)
    conf = np.full(n, 0.85)
    conf[20:24] = 0.25  # just under CONFIDENT: the weighting by confidence alone keeps most
    feats = np.zeros((n, len(hc.DIVISORS), 4))
    feats[:, 1:, 0] = -3.0  # steady note: CREPE's activation at f / k far below that at f
    feats[20:28, 1, :] = [1.5, 2.0, 3.0, 0.5]  # the attack: every feature says f / 2
    since_change = hc.frames_since_change(hz)
    counts = hc.onset_counts(since_change, hc.frames_since_unsure(since_change, conf), hz)
    old = hc.divisor_path(hc.divisor_emissions(feats, hz, weight=hc.evidence_weight(
        since_change, conf)))
    new = hc.divisor_path(hc.divisor_emissions(feats, hz, weight=hc.evidence_weight(
        counts, conf)))
    assert np.any(old[20:28] == 2)  # the mechanism this guards against
    assert np.all(new == 1)


def test_an_attack_read_an_octave_low_is_lifted_to_its_note_and_nothing_else():
    hc = harmonic_check

    def track(segments):  # [(hz, confidence, frames)] -> f0, confidence
        return (np.concatenate([np.full(n, f) for f, _, n in segments]),
                np.concatenate([np.full(n, c) for _, c, n in segments]))

    # F#5 out of silence: one unsure frame, 5 frames read at 367 Hz, then the note
    f0, conf = track([(654.0, 0.9, 10), (630.0, 0.2, 1), (367.0, 0.85, 5), (734.0, 0.87, 20)])
    out = hc.repair_attack_octaves(f0, conf)
    assert np.allclose(out[11:16], 734.0) and np.array_equal(out[:11], f0[:11])
    assert np.array_equal(out[16:], f0[16:])
    # a repeated F#5 whose re-attack was read (or halved) at 367 Hz, CREPE sure throughout
    f0, conf = track([(740.0, 0.85, 10), (367.0, 0.8, 8), (734.0, 0.87, 20)])
    out = hc.repair_attack_octaves(f0, conf)
    assert np.allclose(out[10:18], 734.0) and np.array_equal(out[18:], f0[18:])
    # a legato leap of an octave from another note, CREPE sure throughout: left alone
    f0, conf = track([(367.0, 0.85, 5), (734.0, 0.87, 20)])
    f0 = np.r_[np.full(10, 440.0), f0]
    conf = np.r_[np.full(10, 0.9), conf]
    assert np.array_equal(hc.repair_attack_octaves(f0, conf), f0)
    # a note of its own out of silence, longer than an attack: left alone
    f0, conf = track([(0.0 + 1e-3, 0.05, 5), (367.0, 0.85, hc.ATTACK_REPAIR_FRAMES + 5),
                      (734.0, 0.87, 20)])
    assert np.array_equal(hc.repair_attack_octaves(f0, conf), f0)
    # a jump an octave *down*, or one into an unsure frame: left alone
    f0, conf = track([(630.0, 0.2, 1), (734.0, 0.85, 5), (367.0, 0.87, 20)])
    assert np.array_equal(hc.repair_attack_octaves(f0, conf), f0)
    f0, conf = track([(630.0, 0.2, 1), (367.0, 0.85, 5), (734.0, 0.3, 20)])
    assert np.array_equal(hc.repair_attack_octaves(f0, conf), f0)


def test_a_legato_change_read_at_the_notes_common_subharmonic_takes_the_next_note():
    hc = harmonic_check

    def track(*segments):  # (hz, frames) ... -> f0
        return np.concatenate([np.full(n, f) for f, n in segments])

    # F5 -> A#5 on the violin: six frames read at 229 Hz (700 / 3, 911 / 4)
    f0 = track((700.0, 10), (229.0, 6), (911.0, 10))
    ones = np.ones(len(f0), np.int64)
    out = hc.bridge_subharmonics(f0, ones)
    assert np.allclose(out[10:16], 911.0) and np.array_equal(out[:10], f0[:10])
    assert np.array_equal(out[16:], f0[16:])
    # a short note of its own between them (not a fraction of both), one longer than a
    # change, or between two reads of the same note: left alone
    for f0 in (track((700.0, 10), (440.0, 6), (911.0, 10)),
               track((700.0, 10), (350.0, 6), (911.0, 10)),
               track((700.0, 10), (229.0, hc.BRIDGE_FRAMES + 1), (911.0, 10)),
               track((700.0, 10), (233.0, 6), (700.0, 10))):
        assert np.array_equal(hc.bridge_subharmonics(f0, ones), f0)
    # a short low note the check divided by 3, before CREPE's undivided 3x reading of it
    f0 = track((155.6, 10), (77.8, 8), (233.4, 10))
    divisors = np.r_[np.ones(10), np.full(8, 3), np.ones(10)].astype(np.int64)
    assert np.array_equal(hc.bridge_subharmonics(f0, divisors), f0)
    assert not np.array_equal(hc.bridge_subharmonics(f0, np.ones(28, np.int64)), f0)


def test_divisor_path_ignores_a_flicker_and_follows_sustained_evidence():
    k = len(harmonic_check.DIVISORS)
    emissions = np.zeros((40, k)) - 5.0
    emissions[:, 0] = 0.0
    emissions[5, 2] = 6.0  # one frame says f/3: not enough to switch for
    emissions[20:, 2] = 3.0  # from frame 20 on, every frame says f/3
    path = harmonic_check.divisor_path(emissions)
    assert np.all(path[:20] == 1) and np.all(path[20:] == 3)
    score, online = None, []
    for e in emissions:
        score, _ = harmonic_check.divisor_advance(score, e)
        online.append(harmonic_check.DIVISORS[np.argmax(score)])
    assert online[5] == 1 and online[-1] == 3  # causal: it switches a few frames late


def test_check_never_goes_below_its_floor():
    f0 = np.array([100.0, 60.0])
    feats = np.zeros((2, len(harmonic_check.DIVISORS), 4))
    feats[:, 1:, 1] = 5.0  # strong periodicity evidence for every divisor
    e = harmonic_check.divisor_emissions(feats, f0, min_hz=40.0)
    allowed = f0[:, None] / harmonic_check.DIVISORS[None, :] >= 40.0
    assert np.all(np.isfinite(e) == allowed)


def test_only_stretches_the_check_is_unsure_of_get_a_second_opinion():
    f0 = np.r_[np.full(10, 440.0), np.full(10, 466.0), np.full(10, 392.0), np.full(3, 330.0),
               np.full(10, 60.0), np.full(10, 415.0), np.full(10, 104.0)]
    logodds = np.r_[np.full(10, -9.0), np.full(10, -3.0), np.full(10, 2.0), np.full(3, -3.0),
                    np.full(10, -3.0), np.full(10, -3.0), np.full(10, -9.0)]
    divisors = np.ones(len(f0), np.int64)
    divisors[-20:-10] = 2  # divided by the check
    divisors[-10:] = 4  # divided by 4: the octave above is in doubt
    confidence = np.full(len(f0), 0.8)
    # the 466 Hz stretch (the octave below in doubt) and the one divided by 4 (the octave
    # above): 440 is sure, 392 above even odds (the check's own business), 330 too short,
    # 60 Hz would go under the floor, 415 was divided by 2
    stretches = harmonic_check.octave_doubts(f0, divisors, logodds, confidence, min_hz=40.0)
    assert stretches == [(10, 20, 0.5), (53, 63, 2.0)]
    samples = harmonic_check.doubt_samples(stretches)
    assert samples.shape == (2, len(harmonic_check.DOUBT_POSITIONS))
    assert np.all((samples[0] >= 14) & (samples[0] <= 19))  # from its middle on

    def activations(peaks_hz):
        """The second model's activations: one frame per peak."""
        act = np.full((len(peaks_hz), 360), 0.01)
        for i, hz in enumerate(peaks_hz):
            cents = hz_to_cents(hz)
            act[i, int(round((cents - CREPE_CENTS_OFFSET) / CREPE_CENTS_PER_BIN))] = 0.9
        return act

    def settle(stretches, samples, peaks_hz):
        votes = harmonic_check.doubt_votes(f0, stretches, samples, activations(peaks_hz))
        return harmonic_check.settle_doubts(f0, stretches, votes)

    below = settle(stretches[:1], samples[:1], [233.0, 233.0, 466.0])
    assert np.allclose(below[10:20], 233.0) and np.array_equal(below[:10], f0[:10])
    kept = settle(stretches[:1], samples[:1], [233.0, 466.0, 466.0])
    assert np.array_equal(kept, f0)
    above = settle(stretches[1:], samples[1:], [208.0, 208.0, 208.0])
    assert np.allclose(above[53:63], 208.0) and np.array_equal(above[:53], f0[:53])


def test_the_second_opinion_reads_a_third_frame_only_where_two_disagree(monkeypatch):
    """Two agreeing votes of three decide: the third frame is read only where the first two
    differ, and the stretches end where reading all three would put them."""
    from ddsp_synth import pitch

    f0 = np.r_[np.full(10, 440.0), np.full(10, 466.0), np.full(10, 392.0), np.full(10, 370.0)]
    logodds = np.r_[np.full(10, -9.0), np.full(10, -3.0), np.full(10, -9.0), np.full(10, -3.0)]
    stretches = harmonic_check.octave_doubts(f0, np.ones(len(f0), np.int64), logodds,
                                             np.full(len(f0), 0.8), min_hz=40.0)
    assert [s[:2] for s in stretches] == [(10, 20), (30, 40)]
    samples = harmonic_check.doubt_samples(stretches)
    # the second model hears the first stretch an octave low at its first two samples; the
    # second stretch low at its first and third, at its own pitch at its second
    low = {int(samples[0, 0]), int(samples[0, 1]), int(samples[1, 0]), int(samples[1, 2])}
    asked = []

    def frames_fn(i, j):
        asked.extend(range(i, j))
        return np.random.default_rng(i).standard_normal((j - i, 1024))

    def runner(model):
        def run(frames):  # the frames asked for last, in their order
            act = np.full((len(frames), 360), 0.01, np.float32)
            for row, t in enumerate(asked[len(asked) - len(frames):]):
                cents = hz_to_cents(f0[t] / 2 if t in low else f0[t])
                act[row, int(round((cents - CREPE_CENTS_OFFSET) / CREPE_CENTS_PER_BIN))] = 0.9
            return act
        return run

    monkeypatch.setattr(pitch, "crepe_runner", runner)
    out = pitch.second_opinion(f0, np.ones(len(f0), np.int64), logodds, np.full(len(f0), 0.8),
                               frames_fn, 40.0)
    # 5 frames of 6: the first stretch's third is not read
    assert asked == [samples[0, 0], samples[0, 1], samples[1, 0], samples[1, 1], samples[1, 2]]
    assert np.allclose(out[10:20], 233.0) and np.allclose(out[30:40], 185.0)
    assert np.array_equal(out[:10], f0[:10]) and np.array_equal(out[20:30], f0[20:30])


BASSOON_EXCERPT = Path(__file__).parent / "audio" / "bassoon_9104_at_10.34s.flac"


def test_a_bassoon_note_read_an_octave_up_is_settled_by_the_second_opinion():
    """1.5 s of a FluidR3 bassoon render of the fit set (seed 9104, 10.34 s on, with its
    MIDI truth cropped alike): CREPE tiny reads its G#3 (208 Hz) an octave up, and the
    harmonic check is unsure (log-odds about -3). CREPE full, on three of its frames, puts it
    back. (The note's first frames, read at half its pitch here, are another error, which
    this does not touch.)"""
    y, sr = sf.read(BASSOON_EXCERPT, dtype="float32")
    assert sr == 16000
    act = crepe_activations(y, 160)
    frames_fn = lambda i, j: analysis_frames(y, 160, i, j)  # noqa: E731
    n = len(y) // 160  # compute_f0's frames (CREPE's grid has one more at the end)
    truth, keep = midi_truth(BASSOON_EXCERPT, n)
    note = keep & (np.abs(1200 * np.log2(np.maximum(truth, 1.0) / 207.65)) < 50)
    assert note.sum() > 25

    def cents_off(f0):
        return 1200 * np.log2(np.asarray(f0, np.float64)[:n][note] / truth[note])

    alone = cents_off(decode_f0(act, frames_fn=frames_fn, second_model=None)[0])
    octave_up, right = np.abs(alone - 1200) < 50, np.abs(alone) < 50
    assert octave_up.sum() >= 15  # without the second opinion
    for f0 in (decode_f0(act, frames_fn=frames_fn)[0], compute_f0(y, FeatureConfig())[0]):
        off = cents_off(f0)
        assert np.all(np.abs(off[octave_up]) < 50) and np.all(np.abs(off[right]) < 50)


@pytest.mark.skipif(not (SHARED_DATA / "train" / "cello.flac").exists(),
                    reason="needs ../shared/data/train/cello.flac")
def test_cello_training_file_lowest_notes_against_midi_truth():
    """A legato passage of the shared cello file (27.9-36.0 s, C#2 to F#2: 69-92 Hz), which
    CREPE tiny as shipped before read mostly at three times the pitch."""
    import soundfile as sf

    from ddsp_synth.evaluate import midi_truth, truth_metrics

    audio, sr = sf.read(SHARED_DATA / "train" / "cello.flac", dtype="float32")
    f0, _ = compute_f0(audio[int(27.0 * sr) : int(37.0 * sr)], FeatureConfig())
    f0_true, keep = midi_truth(SHARED_DATA / "train" / "cello.flac", int(37.0 * 100))
    m = truth_metrics(f0, f0_true[2700 : 2700 + len(f0)], keep[2700 : 2700 + len(f0)])["all"]
    assert m["frames"] > 500
    assert m["x3"] + m["x2"] < 0.01 and m["off_50c"] < 0.05, m


@pytest.mark.skipif(not (SHARED_DATA / "train" / "altosax.flac").exists(),
                    reason="needs ../shared/data/train/altosax.flac")
def test_altosax_training_file_f_sharp_5_attacks_against_midi_truth():
    """Repeated F#5 (740 Hz) notes out of silence in the shared alto sax file (70.5-75.5 s):
    CREPE reads each attack at 367 Hz, confidently, before the note; the check halved others.
    Before the attack repair and the restart at unsure frames, 13 scored frames here were read
    at half the pitch."""
    import soundfile as sf

    from ddsp_synth.evaluate import midi_truth, truth_metrics

    path = SHARED_DATA / "train" / "altosax.flac"
    audio, sr = sf.read(path, dtype="float32")
    f0, _ = compute_f0(audio[int(70.5 * sr) : int(75.5 * sr)], FeatureConfig())
    f0_true, keep = midi_truth(path, int(75.5 * 100))
    m = truth_metrics(f0, f0_true[7050 : 7050 + len(f0)], keep[7050 : 7050 + len(f0)])["all"]
    assert m["frames"] > 150
    assert m["half"] == 0.0 and m["off_50c"] < 0.01, m
    # the repairs off (how outputs are measured): the restart alone leaves one frame at half
    f0, _ = compute_f0(audio[int(70.5 * sr) : int(75.5 * sr)], FeatureConfig(), repairs=False)
    m = truth_metrics(f0, f0_true[7050 : 7050 + len(f0)], keep[7050 : 7050 + len(f0)])["all"]
    assert 0.0 < m["half"] < 0.01, m


@pytest.mark.skipif(not (SHARED_DATA / "train" / "altosax.flac").exists(),
                    reason="needs ../shared/data/train/altosax.flac")
def test_altosax_f_sharp_5_attacks_streamed_are_lifted_to_their_note():
    """The same passage through the streaming front end, which cannot repair an attack from
    the note after it: each attack's sub-octave tone (15-22 dB under the note) is played an
    octave up from its first frames. Before the lift 30 voiced frames here were played at
    367 Hz (11 of them scored)."""
    import soundfile as sf

    from ddsp_synth.evaluate import midi_truth, truth_metrics

    path = SHARED_DATA / "train" / "altosax.flac"
    audio, sr = sf.read(path, dtype="float32")
    f0 = streamed_f0(audio[int(70.5 * sr) : int(75.5 * sr)])
    f0_true, keep = midi_truth(path, int(75.5 * 100))
    f0_true, keep = f0_true[7050 : 7050 + len(f0)], keep[7050 : 7050 + len(f0)]
    m = truth_metrics(f0, f0_true, keep)["all"]
    assert m["frames"] > 150 and m["half"] == 0.0 and m["off_50c"] == 0.0, m
    voiced = f0_true > 0
    half = np.abs(1200 * np.log2(f0[voiced] / f0_true[voiced]) + 1200) < 50
    assert half.sum() <= 5  # the attacks' first frame or two, where CREPE is unsure


def test_stream_lift_plays_an_octave_up_only_a_window_that_is_mostly_the_octave_above():
    """A window with a tone at f 20 dB under a note at 2 f (an attack's sub-octave) is lifted
    within STREAM_LIFT_FRAMES of an onset; a note at f with its own partial at f is not, nor
    a low pitch, a settled one or one whose octave the analysis cannot read."""
    t = np.arange(1024) / 16000

    def spectrum_db(window):  # [1, N_LOG_BINS], as the front end passes it
        return harmonic_check.log_spectrum_db(np.asarray(window, np.float64)[None])

    note = harmonic_tone(740.0, [0.0, -6.0, -12.0], seconds=1024 / 16000, vibrato_cents=0.0)
    attack = note + 0.015 * np.sin(2 * np.pi * 370.0 * t).astype(np.float32)
    attack_db = spectrum_db(attack)
    assert harmonic_check.octave_up_level_db(attack_db, 370.0) < -15.0
    assert harmonic_check.stream_lift(attack_db, 370.0, 2, 2006.0)
    assert not harmonic_check.stream_lift(attack_db, 370.0, harmonic_check.STREAM_LIFT_FRAMES + 1,
                                          2006.0)  # settled: a real note
    assert not harmonic_check.stream_lift(attack_db, 370.0, 2, 700.0)  # 740 Hz out of range
    real = harmonic_tone(370.0, [0.0, -3.0, -6.0, -9.0], seconds=1024 / 16000, vibrato_cents=0.0)
    real_db = spectrum_db(real)
    assert harmonic_check.octave_up_level_db(real_db, 370.0) > -6.0
    assert not harmonic_check.stream_lift(real_db, 370.0, 0, 2006.0)
    low = harmonic_tone(600.0, [0.0, -6.0], seconds=1024 / 16000, vibrato_cents=0.0)
    low = low + 0.03 * np.sin(2 * np.pi * 300.0 * t).astype(np.float32)
    low_db = spectrum_db(low)
    assert not harmonic_check.stream_lift(low_db, 300.0, 0, 2006.0)  # under STREAM_LIFT_MIN_HZ


def test_frames_since_onset_restarts_at_any_jump_and_where_crepe_is_unsure():
    count = harmonic_check.frames_since_onset
    assert count(None, 370.0, 0.9, 8) == 8  # the first frame: settled
    assert count(740.0, 370.0, 0.9, 8) == 0  # an octave jump counts (not for the check)
    assert count(371.0, 370.0, 0.2, 8) == 0  # unsure
    assert count(371.0, 370.0, 0.9, 2) == 3
    assert count(371.0, 370.0, 0.9, harmonic_check.ONSET_FRAMES) == harmonic_check.ONSET_FRAMES


@pytest.mark.skipif(not (SHARED_DATA / "train" / "violin.flac").exists(),
                    reason="needs ../shared/data/train/violin.flac")
def test_violin_training_file_legato_change_against_midi_truth():
    """A legato change to A4 (440 Hz) in the shared violin file (157.0-158.5 s) that CREPE
    reads for six frames at 147 Hz, a third of the new note and half of the one before; four
    of them are scored. Before the bridge over common subharmonics they were off."""
    import soundfile as sf

    from ddsp_synth.evaluate import midi_truth, truth_metrics

    path = SHARED_DATA / "train" / "violin.flac"
    audio, sr = sf.read(path, dtype="float32")
    f0, _ = compute_f0(audio[int(157.0 * sr) : int(158.5 * sr)], FeatureConfig())
    f0_true, keep = midi_truth(path, int(158.5 * 100))
    f0_true, keep = f0_true[15700 : 15700 + len(f0)], keep[15700 : 15700 + len(f0)]
    a4 = keep & (np.abs(f0_true - 440.0) < 1.0)  # the new note's scored frames
    m = truth_metrics(f0, f0_true, a4)["all"]
    assert m["frames"] > 40
    assert m["off_50c"] == 0.0, m


def _viterbi_reference(act, min_bin, max_bin):
    """The Viterbi recursion written out bin by bin (what ViterbiStep vectorises)."""
    from ddsp_synth import pitch

    log_obs = pitch.log_observations(act, min_bin, max_bin)
    offsets, trans_to = pitch.viterbi_transitions(act.shape[1])
    n_frames, n_bins = log_obs.shape
    score, back = log_obs[0].copy(), np.zeros((n_frames, n_bins), np.int64)
    for t in range(1, n_frames):
        top = int(np.argmax(score))
        jump = score[top] + pitch.VITERBI_JUMP_LOG_PROB
        new = np.empty(n_bins)
        for b in range(n_bins):
            best, src = -np.inf, b - offsets[0]
            for o, off in enumerate(offsets):
                i = b - off
                cand = (score[i] if 0 <= i < n_bins else -np.inf) + trans_to[o, b]
                if cand > best or o == 0:
                    best, src = cand, i
            if jump > best:
                best, src = jump, top
            new[b], back[t, b] = best + log_obs[t, b], src
        if not np.isfinite(new).any():
            new = log_obs[t].copy()
        score = new - new[np.isfinite(new)].max()
    path = [int(np.argmax(score))]
    for t in range(n_frames - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return np.array(path[::-1])


def test_a_jump_prior_heavier_than_all_the_mass_is_refused():
    from ddsp_synth import pitch

    with pytest.raises(ValueError, match="below log"):
        pitch.ViterbiStep(jump_log_prob=-5.0)  # 360 x e^-5 > 1: the band's mass negative
    pitch.ViterbiStep(jump_log_prob=pitch.STREAM_JUMP_LOG_PROB)


def test_vectorised_viterbi_equals_the_recursion_written_out():
    """viterbi_bins (ViterbiStep, which the streaming front end runs too) follows the
    recursion bin by bin: band moves, the jump from the best bin, excluded bins, a silent
    frame."""
    rng = np.random.default_rng(1)
    act = rng.uniform(0, 1, (120, 360)) ** 6
    act[:50, 150:160] += 0.4
    act[50:, 90:96] += 0.4  # a note change larger than the band
    act[70] = 0.0  # nothing heard: the frame's bins are all equal
    path = viterbi_bins(act, 20, 300)
    np.testing.assert_array_equal(path, _viterbi_reference(act, 20, 300))
    assert np.all(path[10:45] >= 150) and np.all(path[60:] < 100)
