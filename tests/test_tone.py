"""Tone matching (issue 20, part 3): the rack's EQ, compressor and output gain estimated from a
reference recording, measured on the shared recordings."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ddsp_synth.audio_io import AudioError
from ddsp_synth.errors import InputError
from ddsp_synth.rack import RACK_LAYOUT, Rack, layout_settings
from ddsp_synth.tone import (bands_for_rates, estimate_tone, integrated_loudness, ltas_db,
                             match_tone, shape_error_db)
from ddsp_synth.dsp.loudness import k_weighting_sos

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SECONDS = 8.0


def _clip(instrument: str, seconds: float = SECONDS):
    """The last ``seconds`` of a shared training recording: ([n] float32, rate)."""
    path = SHARED / "train" / f"{instrument}.flac"
    if not path.exists():
        pytest.skip(f"{path} not found (the shared data)")
    audio, rate = sf.read(path, dtype="float32")
    return audio[-int(seconds * rate):], rate


@pytest.fixture(scope="module")
def pair():
    """A violin recording (the output) and a cello recording through a 'radio' chain
    (pedalboard: thin and mid-forward EQ, a 4:1 compressor, -6 dB): the reference."""
    pedalboard = pytest.importorskip("pedalboard")
    out, sr = _clip("violin")
    ref, ref_sr = _clip("cello")
    board = pedalboard.Pedalboard([
        pedalboard.LowShelfFilter(cutoff_frequency_hz=400, gain_db=-12, q=0.7),
        pedalboard.PeakFilter(cutoff_frequency_hz=1800, gain_db=8, q=0.7),
        pedalboard.HighShelfFilter(cutoff_frequency_hz=4500, gain_db=-10, q=0.7),
        pedalboard.Compressor(threshold_db=-30, ratio=4, attack_ms=5, release_ms=100),
        pedalboard.Gain(gain_db=-6)])
    return out, sr, board(ref, ref_sr), ref_sr


def _errors(audio, sr, ref, ref_sr):
    """(1/3-octave LTAS shape error in dB, loudness error in LU) against the reference."""
    bands = bands_for_rates(sr, ref_sr)
    audio, ref = np.asarray(audio, np.float64)[None], np.asarray(ref, np.float64)[None]
    return (shape_error_db(ltas_db(audio, sr, bands), ltas_db(ref, ref_sr, bands)),
            integrated_loudness(audio, sr) - integrated_loudness(ref, ref_sr))


def _knobs(preset):
    return {name: dict(zip(dict(RACK_LAYOUT)[name], values))
            for name, values in zip(preset.names, preset.values)}


def test_k_weighting_at_48k_is_the_one_printed_in_bs1770():
    sos = k_weighting_sos(48000)
    np.testing.assert_allclose(sos[0], [1.53512485958697, -2.69169618940638, 1.19839281085285,
                                        1.0, -1.69065929318241, 0.73248077421585], atol=1e-6)
    np.testing.assert_allclose(sos[1, 3:], [1.0, -1.99004745483398, 0.99007225036621],
                               atol=1e-6)


def test_matching_brings_spectrum_and_loudness_close_to_the_reference(pair):
    out, sr, ref, ref_sr = pair
    preset = match_tone(out, sr, ref, ref_sr)
    assert preset.names == ("lowshelf", "peak", "highshelf", "compressor", "gain")
    assert layout_settings(preset) is not None  # the app's rack shows it on its knobs
    matched = Rack(preset, sr).process(out)
    ltas_before, loud_before = _errors(out, sr, ref, ref_sr)
    ltas_after, loud_after = _errors(matched, sr, ref, ref_sr)
    # measured: 10.1 dB and +11.3 LU before, 5.5 dB and 0.02 LU after
    assert ltas_before > 8.0 and abs(loud_before) > 8.0  # really different to begin with
    assert ltas_after < 0.6 * ltas_before
    assert abs(loud_after) < 0.5
    knobs = _knobs(preset)
    assert knobs["compressor"]["ratio"] > 1.5  # the cello record is more compressed
    # the same preset means the same on the real devices
    with Rack(preset, sr, engine="real") as real:
        np.testing.assert_allclose(real.process(out), matched, atol=1e-4)


def test_amount_zero_is_the_identity_and_half_goes_half_way(pair):
    out, sr, ref, ref_sr = pair
    estimate = estimate_tone(out, sr, ref, ref_sr)
    none = estimate.preset(0.0)
    assert all(v["gain_db"] == 0.0 for k, v in _knobs(none).items()
               if k in ("lowshelf", "peak", "highshelf", "gain"))
    assert _knobs(none)["compressor"]["ratio"] == 1.0
    # the identity up to float32 rounding in the biquads (about -100 dB)
    np.testing.assert_allclose(Rack(none, sr).process(out), out, atol=2e-5)
    full, half = _knobs(estimate.preset(1.0)), _knobs(estimate.preset(0.5))
    assert half["peak"]["gain_db"] == pytest.approx(full["peak"]["gain_db"] / 2, abs=0.1)
    assert half["compressor"]["ratio"] == pytest.approx(full["compressor"]["ratio"] ** 0.5,
                                                        abs=0.01)
    loud_before = _errors(out, sr, ref, ref_sr)[1]
    loud_half = _errors(Rack(estimate.preset(0.5), sr).process(out), sr, ref, ref_sr)[1]
    assert loud_half == pytest.approx(loud_before / 2, abs=0.5)


@pytest.mark.parametrize("aspects", [["loudness"], ["eq"], ["dynamics", "loudness"]])
def test_aspects_switched_off_leave_their_devices_neutral(pair, aspects):
    out, sr, ref, ref_sr = pair
    knobs = _knobs(match_tone(out, sr, ref, ref_sr, aspects=aspects))
    eq_gains = [knobs[d]["gain_db"] for d in ("lowshelf", "peak", "highshelf")]
    assert (any(g != 0 for g in eq_gains)) == ("eq" in aspects)
    assert (knobs["compressor"]["ratio"] > 1.0) == ("dynamics" in aspects)
    if "dynamics" not in aspects:
        assert knobs["compressor"] == dict(RACK_LAYOUT)["compressor"]
    assert (knobs["gain"]["gain_db"] != 0.0) == ("loudness" in aspects)
    if aspects == ["loudness"]:  # the gain alone matches the loudness
        matched = Rack(match_tone(out, sr, ref, ref_sr, aspects=aspects), sr).process(out)
        assert abs(_errors(matched, sr, ref, ref_sr)[1]) < 0.3


def test_any_rate_and_channel_count_and_a_file(pair, tmp_path):
    out, sr, ref, ref_sr = pair
    stereo = np.stack([ref, 0.8 * ref], 1)
    path = tmp_path / "ref.flac"
    sf.write(path, stereo, 44100)  # written at another rate than its samples: any rate
    preset = match_tone(out, sr, str(path))
    assert len(preset.entries) == 5


@pytest.mark.parametrize("make, error, message", [
    (lambda p, sr: (np.zeros(3 * sr, np.float32), sr), InputError, "the reference is silent"),
    (lambda p, sr: (np.full(int(0.4 * sr), 0.1, np.float32), sr), InputError,
     "the reference is too short: 0.40 s"),
    (lambda p, sr: (np.full(3 * sr, np.nan, np.float32), sr), InputError, "NaN"),
    (lambda p, sr: ((p.write_text("not audio"), str(p))[1], None), AudioError,
     "unreadable audio"),
    (lambda p, sr: (str(p.with_name("missing.wav")), None), AudioError, "missing.wav"),
])
def test_bad_references_are_one_line(pair, tmp_path, make, error, message):
    out, sr, _, _ = pair
    reference, rate = make(tmp_path / "ref.wav", sr)
    with pytest.raises(error, match=message) as err:
        match_tone(out, sr, reference, rate)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(amount=1.5), "amount must be a number from 0 to 1"),
    (dict(aspects=["eq", "reverb"]), "unknown aspect 'reverb'"),
    (dict(n_peaks=20), "n_peaks must be a whole number from 0 to 8"),
])
def test_bad_settings_are_one_line(pair, kwargs, message):
    out, sr, ref, ref_sr = pair
    with pytest.raises(InputError, match=message):
        match_tone(out, sr, ref, ref_sr, **kwargs)


def _shipped(name):
    from ddsp_synth.model import shipped_models

    if name not in shipped_models():
        pytest.skip(f"the shipped {name} model is not installed")
    return name


def test_render_with_a_tone_reference_prints_and_saves_the_rack(pair, tmp_path, capsys):
    import json

    from ddsp_synth.cli import main
    from ddsp_synth.rack import read_preset

    _, _, ref, ref_sr = pair
    midi = Path(__file__).resolve().parents[1] / "examples" / "ode_to_joy.mid"
    sf.write(tmp_path / "ref.wav", ref, ref_sr)
    effects = tmp_path / "fx.json"
    effects.write_text(json.dumps({"chain": [{"device": "distortion",
                                              "params": {"drive_db": 6}}]}))
    args = ["render", str(midi), "--model", _shipped("violin"), "-o", str(tmp_path / "o.wav"),
            "--tempo-scale", "3", "--quiet", "--tone-reference", str(tmp_path / "ref.wav"),
            "--tone-amount", "80", "--effects", str(effects), "--preset-out",
            str(tmp_path / "p.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tone match (80%, eq, dynamics, loudness) after --effects: lowshelf " in out
    saved = read_preset(tmp_path / "p.json")  # the whole rack after the instrument
    assert saved.names == ("distortion", "lowshelf", "peak", "highshelf", "compressor", "gain")
    # played again from the saved preset: the same file
    assert main(["render", str(midi), "--model", "violin", "-o", str(tmp_path / "again.wav"),
                 "--tempo-scale", "3", "--quiet", "--effects", str(tmp_path / "p.json")]) == 0
    a, _ = sf.read(tmp_path / "o.wav")
    b, _ = sf.read(tmp_path / "again.wav")
    assert np.abs(a - b).max() < 2e-4
    # nothing overwritten without --force, checked before any work
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    # a MIDI file that plays silent (CC7 volume 0): tone matching is refused naming the file,
    # nothing is written; without it the silent file is written with a warning
    import mido

    mid = mido.MidiFile()
    track = mido.MidiTrack([mido.Message("control_change", control=7, value=0),
                            mido.Message("note_on", note=72, velocity=100),
                            mido.Message("note_off", note=72, time=960)])
    mid.tracks.append(track)
    mid.save(str(tmp_path / "mute.mid"))
    mute = ["render", str(tmp_path / "mute.mid"), "--model", "violin", "--quiet", "-o"]
    assert main([*mute, str(tmp_path / "m1.wav"), "--tone-reference",
                 str(tmp_path / "ref.wav")]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'mute.mid'}: it plays silent (every note's velocity" in err
    assert not (tmp_path / "m1.wav").exists()
    assert main([*mute, str(tmp_path / "m2.wav")]) == 0
    assert f"warning: {tmp_path / 'm2.wav'}: the output is silent" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--tone-reference", "{silent}"], "--tone-reference {silent}: the reference is silent"),
    (["--tone-reference", "{short}"], "the reference is too short: 0.50 s"),
    (["--tone-reference", "{text}"], "unreadable audio"),
    (["--tone-reference", "{missing}"], "missing.wav"),
    (["--tone-reference", "{short}", "--tone-aspects", "eq,tempo"], "unknown aspect 'tempo'"),
    (["--tone-reference", "{short}", "--tone-amount", "150"], "must be from 0 to 100"),
    (["--preset-out", "{tmp}/p.json"], "give --tone-reference too"),
])
def test_bad_tone_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    from ddsp_synth.cli import main

    sr = 16000
    files = {"silent": tmp_path / "silent.wav", "short": tmp_path / "short.wav",
             "text": tmp_path / "text.wav", "missing": tmp_path / "missing.wav",
             "tmp": tmp_path}
    sf.write(files["silent"], np.zeros(2 * sr, np.float32), sr)
    sf.write(files["short"], np.full(sr // 2, 0.1, np.float32), sr)
    files["text"].write_text("not audio")
    extra = [e.format(**files) for e in extra]
    message = message.format(**files)
    midi = Path(__file__).resolve().parents[1] / "examples" / "ode_to_joy.mid"
    code = main(["render", str(midi), "--model", _shipped("violin"), "-o",
                 str(tmp_path / "o.wav"), "--quiet", *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "p.json").exists()
