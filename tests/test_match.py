"""``match``: known parameters recovered by every method, the outputs, and every bad input."""

import json
import math
import sys

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from conftest import SHARED_DATA, synth_tone
from ddsp_synth.audio_io import AudioError
from ddsp_synth.errors import UserError
from ddsp_synth.match import MatchConfig, MatchError, match, match_files
from ddsp_synth.match.inputs import align, align_pair
from ddsp_synth.stages.params import DeviceError

SR = 16000


def _dry(seconds=3.0, sr=SR):
    """A few seconds of the shared violin (a synthetic tone without the shared data)."""
    path = SHARED_DATA / "train" / "violin.flac"
    if path.exists():
        from ddsp_synth.audio_io import load_audio

        return load_audio(path, sr)[30 * sr : int((30 + seconds) * sr)]
    return synth_tone(seconds, sr, 330.0)


def _pedalboard(chain_values, audio, sr=SR):
    """Target made by pedalboard itself: [(ClassName, {param: value}), ...]."""
    pb = pytest.importorskip("pedalboard")
    board = pb.Pedalboard([getattr(pb, cls)(**kw) for cls, kw in chain_values])
    return board(audio[None], sr)[0]


def _write(tmp_path, dry, target, sr_dry=SR, sr_target=SR):
    sf.write(tmp_path / "dry.wav", dry, sr_dry, subtype="FLOAT")
    sf.write(tmp_path / "target.wav", target, sr_target, subtype="FLOAT")
    return tmp_path / "dry.wav", tmp_path / "target.wav"


def _octaves(a, b):
    return abs(math.log2(a / b))


# --------------------------------------------------------------------------------------
# Each method recovers known parameters of a target made by the real device
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_autodiff_recovers_peak_and_writes_outputs(tmp_path):
    dry = _dry()
    target = _pedalboard([("PeakFilter", dict(cutoff_frequency_hz=1800.0, gain_db=9.0, q=1.5))],
                         dry)
    d, t = _write(tmp_path, dry, target)
    out = tmp_path / "out"
    report = match_files(d, t, "peak", "autodiff", out, steps=60, seed=0, progress=False)
    preset = json.loads((out / "preset.json").read_text())
    assert preset["method"] == "autodiff" and [c["device"] for c in preset["chain"]] == ["peak"]
    p = preset["chain"][0]["params"]
    assert set(p) == {"cutoff_frequency_hz", "gain_db", "q"}
    assert _octaves(p["cutoff_frequency_hz"], 1800.0) < 0.1
    assert abs(p["gain_db"] - 9.0) < 1.0
    assert report["rel_spec"] < 0.1
    # matched.wav is the dry file through the real device with the preset's parameters
    matched, sr = sf.read(out / "matched.wav", dtype="float32")
    assert sr == SR and len(matched) == len(dry)
    expected = _pedalboard([("PeakFilter", p)], dry)
    assert sf.info(out / "matched.wav").subtype == "FLOAT"  # not clipped, nor 16 bits
    np.testing.assert_allclose(matched, expected, atol=1e-5)
    assert report["iterations"] == len(report["loss_per_step"]) > 0
    assert report["loss_final"] < 0.2 * report["loss_dry"]
    assert report["spectral_distance_after"] < report["spectral_distance_before"]
    assert report["device_evaluations"] == 0
    assert report["stopped_by"] in ("steps", "max_seconds", "converged", "matched")
    assert (out / "match.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cma_recovers_shelf_and_drive(tmp_path):
    dry = _dry()
    target = _pedalboard([("HighShelfFilter", dict(cutoff_frequency_hz=3000.0, gain_db=-8.0)),
                          ("Distortion", dict(drive_db=18.0))], dry)
    d, t = _write(tmp_path, dry, target)
    report = match_files(d, t, "highshelf:q=0.7071,distortion", "cma", tmp_path / "o",
                         steps=60, seed=1, progress=False)
    shelf, dist = (c["params"] for c in report["chain"])
    assert _octaves(shelf["cutoff_frequency_hz"], 3000.0) < 0.25
    assert abs(shelf["gain_db"] + 8.0) < 1.5 and abs(dist["drive_db"] - 18.0) < 1.5
    assert shelf["q"] == pytest.approx(0.7071)  # fixed, not estimated
    assert report["rel_spec"] < 0.15 and report["device_evaluations"] > 0


COMPRESSOR_TRUE = dict(threshold_db=-30.0, ratio=6.0, attack_ms=5.0, release_ms=100.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spsa", "hybrid"])
def test_black_box_methods_recover_compressor(tmp_path, method):
    dry = _dry()
    target = _pedalboard([("Compressor", COMPRESSOR_TRUE)], dry)
    d, t = _write(tmp_path, dry, target)
    report = match_files(d, t, "compressor:attack_ms=5:release_ms=100", method,
                         tmp_path / "o", steps=80, seed=2, progress=False)
    p = report["chain"][0]["params"]
    assert abs(p["threshold_db"] + 30.0) < 4.0
    assert abs(math.log2(p["ratio"] / 6.0)) < 0.6
    # the real devices ran (the informed start may leave few iterations to run)
    assert report["rel_spec"] < 0.3 and report["device_evaluations"] > 0


@pytest.mark.slow
def test_proxy_method_recovers_drive(tmp_path):
    from ddsp_synth.gradients.proxy.files import find_proxy

    if find_proxy("distortion", SR) is None:
        pytest.skip("no shipped distortion proxy")
    dry = _dry()
    target = _pedalboard([("Distortion", dict(drive_db=20.0))], dry)
    d, t = _write(tmp_path, dry, target)
    report = match_files(d, t, "distortion", "proxy", tmp_path / "o", steps=40, seed=3,
                         progress=False)
    assert report["models"] == ["proxy"]
    assert abs(report["chain"][0]["params"]["drive_db"] - 20.0) < 3.0
    assert report["rel_spec"] < 0.3


# --------------------------------------------------------------------------------------
# Inputs that are fixed up (and said so)
# --------------------------------------------------------------------------------------
def test_alignment_finds_offset_and_refuses_large_ones():
    x = _dry(2.0)
    for lag in (0, 160, -320, 799):
        t = np.roll(x, lag)
        assert align(x, t, SR, 50.0) == lag
    with pytest.raises(MatchError, match=r"offset from dry by \+200 ms \(more than \+-50 ms\)"):
        align(x, np.concatenate([np.zeros(3200, np.float32), x]), SR, 50.0)


def test_another_recording_is_not_taken_for_an_offset_copy():
    """A target that holds only a faint copy of dry, 300 ms late, under other sound: the
    advice is not to trim but to check the files."""
    x = _dry(2.0)
    other = np.random.default_rng(5).normal(0, 0.1, len(x) + 4800).astype(np.float32)
    late = np.concatenate([np.zeros(4800, np.float32), x])
    with pytest.raises(MatchError, match=r"does not look like dry through a device: the two "
                                         r"correlate at most 0\.\d+, best at \+300 ms"):
        align(x, other + 0.3 * late, SR, 50.0)
    with pytest.raises(MatchError, match=r"offset from dry by \+300 ms"):
        align(x, late + 0.05 * other, SR, 50.0)


def test_a_filter_s_own_phase_is_not_taken_for_an_offset():
    # on a held tone the cross-correlation peak follows the filter's phase at the notes'
    # partials (a low shelf: -2 samples, a Butterworth low-pass: +12); the device's own
    # delay is part of what match must reproduce, so only a real offset is taken out
    from scipy.signal import butter, lfilter, sosfilt

    rng = np.random.default_rng(0)
    tone = (synth_tone(3.0, SR, 196.0) + 0.02 * rng.standard_normal(3 * SR)).astype(np.float32)
    a_lin, w0 = 10 ** (-9.0 / 40), 2 * np.pi * 400.0 / SR
    alpha, c = np.sin(w0) / 2 * np.sqrt(2.0), np.cos(w0)
    k = 2 * np.sqrt(a_lin) * alpha
    shelf = ([a_lin * ((a_lin + 1) - (a_lin - 1) * c + k),
              2 * a_lin * ((a_lin - 1) - (a_lin + 1) * c),
              a_lin * ((a_lin + 1) - (a_lin - 1) * c - k)],
             [(a_lin + 1) + (a_lin - 1) * c + k, -2 * ((a_lin - 1) + (a_lin + 1) * c),
              (a_lin + 1) + (a_lin - 1) * c - k])
    filtered = {"low shelf": lfilter(*shelf, tone),
                "low-pass": sosfilt(butter(2, 300, fs=SR, output="sos"), tone)}
    for name, target in filtered.items():
        for offset in (0, 160, -37):
            t = np.roll(target, offset).astype(np.float32)
            assert abs(align(tone, t, SR, 50.0) - offset) <= 1, (name, offset)


QUICK = MatchConfig(n_workers=1, search_points=4)


def test_alignment_of_a_short_dry_file_does_not_wrap_around():
    # a dry file shorter than the +-1 s search: negative lags must not alias circularly
    rng = np.random.default_rng(3)
    x = rng.standard_normal(SR // 4).astype(np.float32)
    for lag in (-400, -40, 0, 300):
        t = np.roll(np.concatenate([x, rng.standard_normal(SR).astype(np.float32) * 0.01]),
                    lag)
        assert align(x, t, SR, 50.0) == lag


def test_a_filter_delay_is_not_reported_as_an_offset(tmp_path):
    # a low-pass moves the correlation peak by a few samples: the report compares the matched
    # output with the target at the offset left between them (none)
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(4)
    dry = (_dry(2.0) + 0.02 * rng.standard_normal(2 * SR)).astype(np.float32)
    target = sosfilt(butter(2, 300, fs=SR, output="sos"), dry).astype(np.float32)
    d, t = _write(tmp_path, dry, target)
    report = match_files(d, t, "lowpass2", "autodiff", tmp_path / "o", progress=False,
                         config=QUICK)
    assert not any("aligned" in n for n in report["notes"]), report["notes"]
    assert report["rel_spec"] < 0.05


def test_without_pedalboard_autodiff_renders_by_twin_and_spsa_refuses(tmp_path, monkeypatch):
    from ddsp_synth.match import run as match_mod

    def missing():
        raise DeviceError("pedalboard is not installed; it is the optional 'effects' extra")

    monkeypatch.setattr(match_mod, "import_pedalboard", missing)
    dry = _dry(2.0)
    d, t = _write(tmp_path, dry, dry * 10 ** (-6 / 20))
    report = match_files(d, t, "gain", "autodiff", tmp_path / "o", progress=False,
                         config=QUICK)
    assert any("rendered by the PyTorch twins" in n for n in report["notes"])
    assert abs(report["chain"][0]["params"]["gain_db"] + 6.0) < 0.1
    assert (tmp_path / "o" / "matched.wav").exists()
    with pytest.raises(MatchError, match="method 'spsa' needs the real devices: pedalboard"):
        match_files(d, t, "gain", "spsa", tmp_path / "o2", progress=False, config=QUICK)
    assert not (tmp_path / "o2").exists()
    # a stereo dry file: matched.wav by the twins too, each channel (not a lost result)
    import ddsp_synth.fx as fx_mod

    def no_devices(*args, **kwargs):
        raise DeviceError("device 'gain' failed to start: pedalboard is not installed")

    monkeypatch.setattr(fx_mod, "fx_file", no_devices)
    stereo = np.stack([dry, 0.5 * dry], 1)
    sf.write(tmp_path / "st.wav", stereo, SR, subtype="FLOAT")
    sf.write(tmp_path / "st_t.wav", stereo * 10 ** (-6 / 20), SR, subtype="FLOAT")
    report = match_files(tmp_path / "st.wav", tmp_path / "st_t.wav", "gain", "autodiff",
                         tmp_path / "o3", progress=False, config=QUICK)
    g = report["chain"][0]["params"]["gain_db"]
    matched, _ = sf.read(tmp_path / "o3" / "matched.wav", dtype="float32")
    np.testing.assert_allclose(matched, stereo * 10 ** (g / 20), atol=1e-5)




def test_resampled_shifted_and_longer_target_is_matched(tmp_path):
    pb = pytest.importorskip("pedalboard")
    dry = _dry(2.0)
    wet = pb.Gain(gain_db=-6.0)(dry[None], SR)[0]
    target = np.concatenate([np.zeros(320, np.float32), wet, np.zeros(4000, np.float32)])
    import soxr

    target = soxr.resample(target, SR, 22050)
    d, t = _write(tmp_path, dry, target, SR, 22050)
    report = match_files(d, t, "gain", "cma", tmp_path / "o", steps=15, progress=False,
                         config=QUICK)
    notes = " | ".join(report["notes"])
    assert "target resampled from 22050 Hz to the dry file's 16000 Hz" in notes
    assert "offset +20.0 ms (+320 samples)" in notes
    assert "lengths differ" in notes
    assert abs(report["chain"][0]["params"]["gain_db"] + 6.0) < 0.5
    # the resampler's band edge is in the target only unless the dry file and the output
    # went through it too: then the right gain reads as a match (it read 0.2 and more)
    assert "through the same round trip" in notes
    assert report["rel_spec"] < 0.05, report["rel_spec"]


def test_a_stereo_dry_file_gets_a_stereo_matched_file(tmp_path):
    pb = pytest.importorskip("pedalboard")
    left = _dry(2.0)
    stereo = np.stack([left, 0.5 * left[::-1]], axis=1)
    sf.write(tmp_path / "dry.wav", stereo, SR, subtype="FLOAT")
    sf.write(tmp_path / "target.wav", pb.Gain(gain_db=-4.0)(stereo.T.copy(), SR).T, SR,
             subtype="FLOAT")
    report = match_files(tmp_path / "dry.wav", tmp_path / "target.wav", "gain", "cma",
                         tmp_path / "o", steps=12, progress=False, config=QUICK)
    g = report["chain"][0]["params"]["gain_db"]
    assert abs(g + 4.0) < 0.3
    assert any("the dry file's 2 channels" in n for n in report["notes"])
    matched, sr = sf.read(tmp_path / "o" / "matched.wav", dtype="float32")
    assert sr == SR and matched.shape == stereo.shape
    np.testing.assert_allclose(matched, stereo * 10 ** (g / 20), atol=1e-5)


def test_chain_entry_may_be_a_json_device_file(tmp_path):
    script = ("import sys, soundfile as sf; x, sr = sf.read(sys.argv[1], dtype='float32'); "
              "sf.write(sys.argv[2], x * 10 ** (float(sys.argv[3]) / 20), sr, subtype='FLOAT')")
    dev = tmp_path / "pygain.json"
    dev.write_text(json.dumps({"command": [sys.executable, "-c", script, "{input}", "{output}",
                                           "{level_db}"],
                               "params": [{"name": "level_db", "unit": "dB", "min": -20,
                                           "max": 20, "default": 0}]}))
    dry = _dry(1.0)
    d, t = _write(tmp_path, dry, dry * 10 ** (-4.0 / 20))
    report = match_files(d, t, str(dev), "cma", tmp_path / "o", steps=3, progress=False,
                         config=QUICK)
    entry = report["chain"][0]
    assert entry["device"] == "pygain" and entry["source"] == str(dev)
    assert abs(entry["params"]["level_db"] + 4.0) < 2.0


# --------------------------------------------------------------------------------------
# Bad inputs: one line, nothing written
# --------------------------------------------------------------------------------------
@pytest.fixture()
def pair(tmp_path):
    dry = _dry(1.0)
    return _write(tmp_path, dry, dry * 0.5)


def _fails(exc, message, *args, **kwargs):
    with pytest.raises(exc, match=message) as info:
        match_files(*args, progress=False, config=QUICK, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_unreadable_missing_silent_and_nan_files(tmp_path, pair):
    d, t = pair
    bad = tmp_path / "text.wav"
    bad.write_text("not audio")
    msg = _fails(AudioError, "unreadable audio", bad, t, "gain", "cma", tmp_path / "o")
    assert msg.count(str(bad)) == 1
    _fails(AudioError, "no such file", tmp_path / "nope.wav", t, "gain", "cma", tmp_path / "o")
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    _fails(AudioError, "silent", d, tmp_path / "silent.wav", "gain", "cma", tmp_path / "o")
    nan = np.ones(SR, np.float32) * 0.1
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    _fails(AudioError, "NaN", tmp_path / "nan.wav", t, "gain", "cma", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_unknown_device_parameter_method_and_bad_numbers(tmp_path, pair):
    d, t = pair
    out = tmp_path / "o"
    _fails(DeviceError, "unknown device 'eq'", d, t, "peak,eq", "cma", out)
    _fails(DeviceError, "peak has no parameter 'gian_db'", d, t, "peak:gian_db=3", "cma", out)
    _fails(MatchError, "unknown method 'adam'", d, t, "peak", "adam", out)
    _fails(DeviceError, "no such plugin", d, t, "/nowhere/Comp.vst3", "cma", out)
    _fails(MatchError, "every parameter of the chain is fixed", d, t, "gain:gain_db=3", "cma",
           out)
    _fails(MatchError, "--steps must be a positive number", d, t, "gain", "cma", out, steps=0)
    _fails(MatchError, "--max-seconds must be a positive number", d, t, "gain", "cma", out,
           max_seconds=float("nan"))
    assert not out.exists()


def test_a_target_that_is_the_dry_signal_is_nothing_to_match():
    dry = _dry(2.0)
    with pytest.raises(MatchError, match="the same signal as dry .* nothing to match"):
        align_pair(dry, dry.copy(), SR)
    rounded = (np.round(dry * 32767) / 32767).astype(np.float32)  # saved again at 16 bits
    with pytest.raises(MatchError, match="nothing to match"):
        align_pair(dry, rounded, SR)
    align_pair(dry, dry * 0.98, SR)  # a 0.2 dB change is something


def test_large_offset_and_short_overlap(tmp_path):
    dry = _dry(1.5)
    d, t = _write(tmp_path, dry, np.concatenate([np.zeros(4000, np.float32), dry]))
    _fails(MatchError, "offset from dry by", d, t, "gain", "cma", tmp_path / "o")
    # a clip shorter than min_seconds is refused before alignment, naming the file
    d, t = _write(tmp_path, dry, dry[: SR // 4])
    _fails(AudioError, "0.250 s\\) is too short", d, t, "gain", "cma", tmp_path / "o")
    # both long enough, but 40 ms apart: the common part is 0.48 s
    short = dry[: int(0.52 * SR)]
    lag = int(0.04 * SR)
    d, t = _write(tmp_path, short, np.concatenate([np.zeros(lag, np.float32), short[:-lag]]))
    _fails(MatchError, "overlap by 0.48 s", d, t, "gain", "cma", tmp_path / "o")


def test_existing_outputs_need_force(tmp_path, pair):
    pytest.importorskip("pedalboard")
    d, t = pair
    out = tmp_path / "o"
    match_files(d, t, "gain", "cma", out, steps=2, progress=False, config=QUICK)
    before = (out / "preset.json").read_text()
    _fails(UserError, r"preset.json exists; pass --force", d, t, "gain", "cma", out)
    assert (out / "preset.json").read_text() == before
    report = match_files(d, t, "gain", "cma", out, steps=2, force=True, progress=False,
                         config=QUICK)
    assert report["iterations"] >= 2


def test_match_works_on_arrays_without_files():
    pb = pytest.importorskip("pedalboard")
    dry = _dry(2.0)
    target = pb.Gain(gain_db=-5.0)(dry[None], SR)[0]
    result = match(dry, target, SR, "gain", "cma", steps=10, config=QUICK)
    assert abs(result.preset["chain"][0]["params"]["gain_db"] + 5.0) < 0.5
    assert result.matched.shape == dry.shape and result.report["rel_spec"] < 0.1


def test_a_target_with_dither_where_the_dry_file_is_silent_still_reads_as_a_match():
    """A target saved at 16 bits with dither (sox's default) carries noise where the dry
    file is digitally silent: the distance no longer counts that noise against the dry
    file's zeros (rel_spec 0.45 for the exact setting, 'not close'), and says so."""
    pb = pytest.importorskip("pedalboard")
    dry = _dry(2.0).copy()
    dry[int(0.6 * SR): int(1.0 * SR)] = 0.0  # a rest, digitally silent
    target = pb.Gain(gain_db=-5.0)(dry[None], SR)[0]
    rng = np.random.default_rng(0)
    lsb = 1.0 / 32768  # TPDF dither of 16 bits, about -97 dBFS
    target = (target + lsb * (rng.random(len(dry)) - rng.random(len(dry)))).astype(np.float32)
    exact = match(dry, target, SR, "gain", "cma", steps=10, config=QUICK)
    assert abs(exact.preset["chain"][0]["params"]["gain_db"] + 5.0) < 0.5
    assert exact.report["rel_spec"] < 0.1
    assert any("noise floor (-10" in n or "noise floor (-9" in n for n in exact.report["notes"])
    clean = match(dry, pb.Gain(gain_db=-5.0)(dry[None], SR)[0], SR, "gain", "cma", steps=10,
                  config=QUICK)
    assert not any("noise floor" in n for n in clean.report["notes"])
    # a device's decaying tail in the dry file's rest is sound to match, not a floor
    from ddsp_synth.match.inputs import target_noise_floor

    t = np.arange(int(0.5 * SR)) / SR
    tail = np.random.default_rng(1).standard_normal(len(t)) * np.exp(-t / 0.08)
    wet = scipy.signal.fftconvolve(dry, 0.05 * tail)[: len(dry)].astype(np.float32)
    assert target_noise_floor(dry, wet, SR) is None
    assert target_noise_floor(dry, target, SR) == pytest.approx(lsb / 6 ** 0.5, rel=0.3)


def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path, pair):
    d, t = pair
    out = tmp_path / "o"
    out.mkdir()
    (out / "matched.wav").write_bytes(d.read_bytes())  # the dry file lives in the result
    kept = (out / "matched.wav").read_bytes()
    _fails(UserError, "holds an input of this command", out / "matched.wav", t, "gain", "cma",
           out, force=True)
    assert (out / "matched.wav").read_bytes() == kept
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    _fails(UserError, "holds other files", d, t, "gain", "cma", other, force=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_pipe_is_refused_before_it_is_opened(tmp_path, pair):
    import os

    d, _ = pair
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    _fails(AudioError, "not a regular file", d, fifo, "gain", "cma", tmp_path / "o")
    _fails(AudioError, "not a regular file", fifo, d, "gain", "cma", tmp_path / "o")


def test_a_one_sample_or_constant_dry_file_is_named_as_such(tmp_path):
    d1, t = _write(tmp_path, np.full(1, 0.5, np.float32), _dry(1.0))
    _fails(AudioError, "constant|shorter than", d1, t, "gain", "cma", tmp_path / "o")
    dc, t = _write(tmp_path, np.full(SR, 0.5, np.float32), _dry(1.0))
    _fails(AudioError, "a constant", dc, t, "gain", "cma", tmp_path / "o")


@pytest.mark.slow
def test_every_phase_obeys_the_time_budget(tmp_path):
    pytest.importorskip("pedalboard")
    import time

    dry = _dry(3.0)
    target = _pedalboard([("PeakFilter", dict(cutoff_frequency_hz=900.0, gain_db=6.0)),
                          ("LowShelfFilter", dict(cutoff_frequency_hz=200.0, gain_db=-4.0)),
                          ("Compressor", COMPRESSOR_TRUE), ("Distortion", dict(drive_db=6.0))],
                         dry)
    d, t = _write(tmp_path, dry, target)
    for method in ("cma", "spsa", "autodiff"):
        t0 = time.monotonic()
        report = match_files(d, t, "peak,lowshelf,compressor,distortion", method,
                             tmp_path / method, max_seconds=3.0, progress=False,
                             config=MatchConfig(n_workers=1))
        assert report["optimisation_seconds"] < 3.0 + 2.0, (method, report["optimisation_seconds"])
        assert time.monotonic() - t0 < 30


# --------------------------------------------------------------------------------------
# Where match listens, where it starts, what it says the clip pins down (issue 19)
# --------------------------------------------------------------------------------------
def _steps_tone(levels_db, seconds_each=1.0, f0=220.0, seed=0):
    """A bright harmonic tone held at each level in turn (dB re full scale peak): [n]."""
    rng = np.random.default_rng(seed)
    n = int(seconds_each * SR)
    t = np.arange(n * len(levels_db)) / SR
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 30) if k * f0 < SR / 2)
    env = np.repeat([10 ** (v / 20) for v in levels_db], n)
    return (y / np.abs(y).max() * env + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def test_a_short_clip_is_compared_whole():
    from ddsp_synth.match.windows import analysis_windows

    dry = _steps_tone([-6, -30, -12], 1.5)
    w = analysis_windows(dry, SR, MatchConfig(whole_clip_seconds=6.0))
    assert (w.starts, w.length, w.preroll) == ((0,), len(dry), 0)
    assert w.cut(dry).shape == (1, len(dry))


def test_windows_of_a_long_clip_cover_its_loud_and_soft_passages():
    from ddsp_synth.match.windows import analysis_windows, frame_levels_db

    levels = [-6, -6, -6, -20, -20, -20, -40, -40, -40, -6, -6, -6]  # 2 s each, 24 s
    dry = _steps_tone(levels, 2.0)
    config = MatchConfig()
    w = analysis_windows(dry, SR, config)
    length = int(config.analysis_seconds * SR)
    assert w.length == length and w.preroll == int(config.preroll_seconds * SR)
    assert 2 <= len(w.starts) <= config.max_windows
    starts = sorted(w.starts)
    assert all(b - a >= length for a, b in zip(starts, starts[1:]))  # no overlap
    cut = w.cut(dry)
    assert cut.shape == (len(w.starts), w.preroll + length)
    s = w.starts[0]
    np.testing.assert_array_equal(cut[0, w.preroll :], dry[s : s + length])
    # every level of the clip is in the compared audio: loud, middle and soft
    frame = int(config.level_frame_seconds * SR)
    heard = frame_levels_db(w.cut(dry, with_preroll=False).reshape(-1), frame)
    for level in (-6, -20, -40):
        rms = frame_levels_db(_steps_tone([level], 1.0), frame).mean()
        assert np.sum(np.abs(heard - rms) < 1.5) >= config.level_frames_per_bin, level
    # the loudest stretch alone (what match compared before) misses the soft passages
    loudest = frame_levels_db(dry[s : s + length], frame)
    assert loudest.min() > -25


def _broadband(seconds=4.0, seed=5):
    """Harmonics over the whole band plus a little noise: an EQ is visible everywhere."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * 110.0 * t + rng.uniform(0, 6.3)) / np.sqrt(k)
            for k in range(1, 70))
    y = y / np.abs(y).max() * 0.3 * (0.7 + 0.3 * np.sin(2 * np.pi * 0.5 * t))
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _guesses(chain_text, dry, target, config=MatchConfig()):
    """The informed starts of ``chain_text`` for the pair: ([natural [P] per start], notes)."""
    import time

    from ddsp_synth.chains import chain_devices, fixed_params, make_chain
    from ddsp_synth.match.guess import informed_guesses
    from ddsp_synth.match.windows import analysis_windows
    from ddsp_synth.stages.params import denormalise, normalise

    chain = make_chain(chain_text, SR, method="autodiff")
    fixed = fixed_params(chain)
    base = normalise(chain.params, np.array([p.default for p in chain.params]))
    for i, v in fixed.items():
        base[i] = chain.params[i].to_normalised(v)
    free = [i for i in range(len(base)) if i not in fixed]
    w = analysis_windows(dry, SR, config)
    g = informed_guesses(chain_devices(chain), chain.params, base, free, dry, target,
                         w.cut(dry), w.cut(target, False), w.preroll, SR, config,
                         time.monotonic() + 20)
    return [denormalise(chain.params, u[None])[0] for u in g.starts], g


def test_informed_start_lands_near_a_known_three_band_eq():
    dry = _broadband()
    target = _pedalboard([("LowShelfFilter", dict(cutoff_frequency_hz=200.0, gain_db=-8.0)),
                          ("PeakFilter", dict(cutoff_frequency_hz=1500.0, gain_db=7.0, q=2.0)),
                          ("HighShelfFilter", dict(cutoff_frequency_hz=4000.0, gain_db=-9.0))],
                         dry)
    starts, g = _guesses("lowshelf:q=0.7071,peak,highshelf:q=0.7071", dry, target)
    assert len(starts) == 1 and g.eq_error_db < 0.5
    assert "EQ from the long-term spectra" in g.notes[0]
    low, peak, high = starts[0][0:3], starts[0][3:6], starts[0][6:9]
    assert _octaves(low[0], 200.0) < 0.2 and abs(low[1] + 8.0) < 1.0
    assert _octaves(peak[0], 1500.0) < 0.1 and abs(peak[1] - 7.0) < 0.7
    assert _octaves(peak[2], 2.0) < 0.3
    assert _octaves(high[0], 4000.0) < 0.2 and abs(high[1] + 9.0) < 1.0
    assert low[2] == pytest.approx(0.7071, rel=1e-4)  # fixed, not estimated


def test_informed_start_reads_threshold_and_drive_from_envelopes():
    # loud and soft passages: the compressor acts on the loud ones only, tanh is linear on
    # the soft ones
    dry = _steps_tone([-4, -40, -10, -30, -4, -20], 1.0)
    target = _pedalboard([("Compressor", dict(threshold_db=-24.0, ratio=5.0, attack_ms=5.0,
                                              release_ms=100.0)),
                          ("Distortion", dict(drive_db=15.0))], dry)
    starts, g = _guesses("compressor:attack_ms=5:release_ms=100,distortion", dry, target)
    thr, ratio, _, _, drive = starts[1]  # the envelope fit, before the level search
    assert abs(thr + 24.0) < 3.0 and _octaves(ratio, 5.0) < 0.6 and abs(drive - 15.0) < 1.5
    thr, ratio, _, _, drive = starts[0]  # after the level search
    assert abs(thr + 24.0) < 3.0 and abs(drive - 15.0) < 1.5
    assert any("compressor from envelopes" in n for n in g.notes)


def _identify_at_truth(chain_text, values, dry):
    """The identifiability report at the true parameters of a target made by the twins."""
    import torch

    from ddsp_synth.chains import chain_devices, fixed_params, make_chain
    from ddsp_synth.match.identify import identifiability, param_labels
    from ddsp_synth.stages.params import denormalise, from_dict, normalise

    chain = make_chain(chain_text, SR, method="autodiff")
    devices = chain_devices(chain)
    natural = np.concatenate([from_dict(d.params, v, d.name)
                              for (_, d), v in zip(devices, values)])
    for i, v in fixed_params(chain).items():
        natural[i] = v
    u = normalise(chain.params, natural)
    x = torch.from_numpy(dry)[None]

    def render(cands):
        p = torch.from_numpy(denormalise(chain.params, cands)).float()
        with torch.no_grad():
            return chain(x.repeat(len(cands), 1), p)[0].numpy()

    free = [i for i in range(len(u)) if i not in fixed_params(chain)]
    report = identifiability(render, u, free, chain.params, param_labels(devices), render(u[None]),
                             0, SR, 1.0)
    return {r["param"]: r for r in report["params"]}, report


PCD = "peak,compressor:attack_ms=5:release_ms=100,distortion"
PCD_VALUES = [dict(cutoff_frequency_hz=1000.0, gain_db=6.0, q=1.0),
              dict(threshold_db=-30.0, ratio=4.0), dict(drive_db=12.0)]


def test_identifiability_flags_threshold_against_drive_without_quiet_passages():
    rows, report = _identify_at_truth(PCD, PCD_VALUES, _steps_tone([-6, -6, -6]))
    thr, drive = rows["compressor.threshold_db"], rows["distortion.drive_db"]
    assert thr["status"] == drive["status"] == "trades_off"
    assert "distortion.drive_db" in thr["trades_off_with"]
    assert "compressor.threshold_db" in drive["trades_off_with"]
    assert thr["uncertainty"] > 5.0 and thr["alone"] < 2.0  # each pinned alone, not together
    # a well-determined parameter: the peak's frequency, to a fraction of an octave
    peak = rows["peak.cutoff_frequency_hz"]
    assert peak["status"] == "pinned" and peak["uncertainty"] < 0.2
    assert peak["uncertainty_unit"] == "oct" and thr["uncertainty_unit"] == "dB"
    assert set(rows) == {"peak.cutoff_frequency_hz", "peak.gain_db", "peak.q",
                         "compressor.threshold_db", "compressor.ratio", "distortion.drive_db"}
    # the trade-off in one sentence, with two settings that sound the same, rendered
    trade = [t for t in report["trade_offs"] if "compressor.threshold_db" in t["params"]][0]
    assert "distortion.drive_db" in trade["params"] and trade["apart_db"] <= 2.0
    a, b = trade["settings"]
    assert abs(a["compressor.threshold_db"] - b["compressor.threshold_db"]) > 3.0
    # lower threshold, more drive (or the other way round): they make up for each other
    assert ((a["compressor.threshold_db"] - b["compressor.threshold_db"])
            * (a["distortion.drive_db"] - b["distortion.drive_db"]) < 0)
    assert "compressor.threshold_db and distortion.drive_db trade off" in report["sentence"]
    assert report["sentence"].startswith("The clip pins down peak.cutoff_frequency_hz")


def test_a_pinned_parameter_that_makes_up_for_an_open_one_is_not_said_to_trade_off():
    """The attack is left open and the threshold, pinned within 2 dB, makes up for it: the
    sentence must not list the threshold as pinned and then as trading off."""
    from ddsp_synth.match.identify import sentence
    from ddsp_synth.stages.registry import make_device

    comp = make_device("compressor", SR)
    labels = [f"compressor.{p.name}" for p in comp.params]
    rows = [{"param": "compressor.threshold_db", "status": "pinned"},
            {"param": "compressor.attack_ms", "status": "trades_off"}]
    trade = {"params": ["compressor.attack_ms", "compressor.threshold_db"], "apart_db": 0.4,
             "settings": [{"compressor.attack_ms": 9.0, "compressor.threshold_db": -30.7},
                          {"compressor.attack_ms": 2.8, "compressor.threshold_db": -29.3}]}
    text = sentence(rows, [trade], list(comp.params), labels)
    assert text.startswith("The clip pins down compressor.threshold_db;")
    assert "compressor.attack_ms is left open, as a small change of compressor.threshold_db " \
           "makes up for it: any of these settings sounds the same (attack_ms 9 ms, " \
           "threshold_db -30.7 dB; or attack_ms 2.8 ms, threshold_db -29.3 dB" in text
    assert "trade off" not in text


def test_identifiability_pins_the_drive_once_the_clip_has_quiet_passages():
    rows, _ = _identify_at_truth(PCD, PCD_VALUES, _steps_tone([-6, -45, -6]))
    assert rows["distortion.drive_db"]["status"] == "pinned"
    assert rows["distortion.drive_db"]["uncertainty"] < 1.0


def test_identifiability_says_when_a_parameter_barely_matters():
    # the compressor never acts on a clip 30 dB below its threshold
    rows, report = _identify_at_truth("compressor", [dict(threshold_db=-5.0, ratio=4.0)],
                                      _steps_tone([-40, -45]))
    assert rows["compressor.attack_ms"]["status"] == "barely_audible"
    assert rows["compressor.ratio"]["status"] == "barely_audible"
    assert "barely change the sound of this clip" in report["sentence"]


def test_a_gradient_method_that_stalls_hands_the_rest_of_the_time_to_cma(tmp_path):
    pytest.importorskip("pedalboard")
    import time

    dry = _dry(2.0)
    target = _pedalboard([("Gain", dict(gain_db=-5.0)), ("Distortion", dict(drive_db=14.0))],
                         dry)
    d, t = _write(tmp_path, dry, target)
    # every convergence counts as a stall: nothing is ever "matched", any loss is too high
    # and Adam converges soon (a short patience, a coarse tolerance)
    config = MatchConfig(n_workers=1, good_enough=0.0, fallback_above=0.0, tolerance=0.05,
                         patience={"autodiff": 5, "proxy": 5, "hybrid": 5, "spsa": 5})
    t0 = time.monotonic()
    report = match_files(d, t, "gain,distortion", "autodiff", tmp_path / "o", max_seconds=15.0,
                         progress=False, config=config)
    names = [p["phase"] for p in report["phases"]]
    assert names[0] == "informed starts" and "autodiff" in names
    # CMA-ES after the gradient (then the identifiability report, where time is left)
    assert "cma (the gradient stalled)" in names
    assert names.index("cma (the gradient stalled)") > names.index("autodiff")
    assert names[-1] in ("cma (the gradient stalled)", "identifiability")
    gradient = report["phases"][names.index("autodiff")]
    fallback = report["phases"][names.index("cma (the gradient stalled)")]
    assert fallback["iterations"] > 0, report["phases"]  # CMA-ES ran on the same losses
    assert fallback["best_loss"] <= gradient["best_loss"]
    assert report["loss_final"] == pytest.approx(fallback["best_loss"])
    # within the budget (and the identifiability report inside it)
    assert report["optimisation_seconds"] < 15.0 + 2.0
    assert time.monotonic() - t0 < 60
    assert report["rel_spec"] < 0.1


def test_report_and_cli_say_what_the_clip_pins_down(tmp_path, capsys):
    pytest.importorskip("pedalboard")
    from ddsp_synth.cli import main

    dry = _steps_tone([-6, -40, -12, -30], 2.0)  # 8 s: windows, not the whole clip
    target = _pedalboard([("PeakFilter", dict(cutoff_frequency_hz=1200.0, gain_db=8.0, q=1.0)),
                          ("Compressor", dict(threshold_db=-20.0, ratio=4.0, attack_ms=5.0,
                                              release_ms=100.0))], dry)
    d, t = _write(tmp_path, dry, target)
    out = tmp_path / "m"
    argv = ["match", str(d), str(t), "--chain",
            "peak,compressor:attack_ms=5:release_ms=100", "--method", "autodiff", "-o",
            str(out), "--max-seconds", "20", "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    report = json.loads((out / "report.json").read_text())
    ident = report["identifiability"]
    # the printed sentence is the report's, after the summary line
    assert len(lines) == 2 and lines[0].startswith(str(out)) and lines[1] == ident["sentence"]
    rows = {r["param"]: r for r in ident["params"]}
    assert set(rows) == {"peak.cutoff_frequency_hz", "peak.gain_db", "peak.q",
                         "compressor.threshold_db", "compressor.ratio"}
    for name in ("peak.cutoff_frequency_hz", "peak.gain_db", "compressor.threshold_db"):
        assert rows[name]["status"] == "pinned", rows[name]
        assert name in lines[1]
    p = {f"{c['device']}.{k}": v for c in report["chain"] for k, v in c["params"].items()}
    assert _octaves(p["peak.cutoff_frequency_hz"], 1200.0) < 0.5
    assert abs(p["peak.gain_db"] - 8.0) < 2.0 and abs(p["compressor.threshold_db"] + 20.0) < 2.0
    # several windows over loud and soft passages, and where each came from
    analysis = report["analysis"]
    assert not analysis["whole_clip"] and len(analysis["windows"]) >= 2
    levels = [w["level_db"] for w in analysis["windows"]]
    assert max(levels) - min(levels) > 15.0


def test_the_identifiability_sentence_says_each_parameter_once_and_keeps_device_names():
    """A pinned partner of a group makes up for the others (not 'pinned' and 'trades off'
    at once); a group member is not said again to barely matter; a sentence that starts with
    a device's name does not capitalise it."""
    from ddsp_synth.match.identify import sentence
    from ddsp_synth.stages.registry import make_device

    params = make_device("compressor", SR).params
    labels = [f"compressor.{p.name}" for p in params]
    status = {"compressor.threshold_db": "trades_off", "compressor.ratio": "pinned",
              "compressor.attack_ms": "barely_audible", "compressor.release_ms": "barely_audible"}
    rows = [{"param": n, "status": status[n]} for n in labels]
    group = ["compressor.threshold_db", "compressor.ratio", "compressor.attack_ms"]
    trade = [{"params": group, "apart_db": 0.5,
              "settings": [{n: 1.0 for n in group}, {n: 2.0 for n in group}]}]
    text = sentence(rows, trade, params, labels)
    assert text.startswith("The clip pins down compressor.ratio; compressor.threshold_db and "
                           "compressor.attack_ms are left open, as a small change of "
                           "compressor.ratio makes up for them")
    assert text.count("compressor.attack_ms") == 1  # in its group, not again as barely audible
    assert "compressor.release_ms barely changes the sound" in text
    rows = [{"param": n, "status": "barely_audible"} for n in labels]
    assert sentence(rows, [], params, labels).startswith("On this clip, compressor.threshold_db")


def test_identifiability_of_a_match_that_is_not_close_says_so():
    from ddsp_synth.match.run import _local_caveat

    ident = {"params": [], "trade_offs": [], "sentence": "The clip pins down peak.gain_db."}
    config = MatchConfig()
    close = _local_caveat(ident, 0.05, config)
    assert close["match_is_close"] and close["sentence"] == ident["sentence"]
    far = _local_caveat(ident, 0.27, config)
    assert not far["match_is_close"]
    assert far["sentence"].startswith("Around this setting (the match is not close, rel_spec "
                                      "0.27")
    assert far["sentence"].endswith("the clip pins down peak.gain_db.")


def _dark_loud_bright_soft(seconds_each=0.5, repeats=4, seed=3):
    """Loud dark notes (harmonics of 110 Hz falling as 1 / k^1.5) alternating with soft
    bright ones (of 165 Hz, as 1 / k^0.5): a band's energy lies mostly in one kind of
    passage, as in a melody whose high notes are the soft ones."""
    rng = np.random.default_rng(seed)
    n = int(seconds_each * SR)
    t = np.arange(n) / SR

    def tone(f0, slope, level_db):
        y = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k ** slope
                for k in range(1, int(7000 / f0)))
        return y / np.abs(y).max() * 10 ** (level_db / 20)

    parts = [tone(110.0, 1.5, -3.0) if i % 2 == 0 else tone(165.0, 0.5, -30.0)
             for i in range(2 * repeats)]
    y = np.concatenate(parts)
    return (y + 1e-4 * rng.standard_normal(len(y))).astype(np.float32)


def test_transfer_estimate_takes_a_compressors_gain_out_of_the_eq():
    """Through an EQ and a fast compressor, the plain long-term estimate reads each band's
    gain weighted by where its energy lies (low bands in the compressed loud notes read
    low); with each frame's broadband gain divided out it reads the EQ."""
    import torch

    from ddsp_synth.match.guess import response_db, transfer_db
    from ddsp_synth.stages.twins import Peak

    dry = _dark_loud_bright_soft()
    target = _pedalboard([("PeakFilter", dict(cutoff_frequency_hz=1000.0, gain_db=6.0, q=1.0)),
                          ("Compressor", dict(threshold_db=-30.0, ratio=8.0, attack_ms=5.0,
                                              release_ms=100.0))], dry)

    def error_db(frame_gains):
        f, g, w = transfer_db(dry, target, SR, frame_gains=frame_gains)
        true = response_db(Peak(SR), torch.tensor([[1000.0, 6.0, 1.0]], dtype=torch.float64),
                           torch.tensor(f, dtype=torch.float64))[0].numpy()
        w = w / w.sum()
        r = g - true
        return float(np.sqrt((((r - (r * w).sum()) ** 2) * w).sum()))

    plain, per_frame = error_db(False), error_db(True)  # 7.1 and 2.0 dB when written
    assert per_frame < 2.5 and plain > 5.0


def test_eq_guess_before_a_distortion_is_refitted_without_its_harmonics(monkeypatch):
    """A distortion's harmonics are coherent with the dry signal's and read as a treble
    boost in the long-term estimate; the re-fit measures that bias on the twins' output and
    recovers the high shelf's cut."""
    import importlib

    guess = importlib.import_module("ddsp_synth.match.guess")  # the package exports match()
    dry = _steps_tone([-6, -30, -12, -24], 1.0, f0=196.0)
    target = _pedalboard([("HighShelfFilter", dict(cutoff_frequency_hz=2500.0, gain_db=-10.0)),
                          ("Distortion", dict(drive_db=18.0))], dry)
    chain = "highshelf:q=0.7071,distortion"
    refitted, g = _guesses(chain, dry, target)
    monkeypatch.setattr(guess, "BIAS_ITERATIONS", 0)
    plain, _ = _guesses(chain, dry, target)
    assert any("without the distortion's harmonics" in n for n in g.notes)
    # the shelf's gain (-10 dB): -8.2 re-fitted, -3.9 without, when written
    assert abs(refitted[0][1] + 10.0) < 2.5 and abs(plain[0][1] + 10.0) > 4.0


def test_a_gradient_method_out_of_steps_short_of_a_match_hands_over_to_cma(tmp_path):
    """Running out of steps short of a match is a stall too: the rest of the budget goes to
    CMA-ES instead of being left unused."""
    pytest.importorskip("pedalboard")
    dry = _dry(2.0)
    target = _pedalboard([("Gain", dict(gain_db=-5.0)), ("Distortion", dict(drive_db=14.0))],
                         dry)
    d, t = _write(tmp_path, dry, target)
    # never converges (a long patience), never good enough: only the steps end the loop
    config = MatchConfig(n_workers=1, good_enough=0.0, fallback_above=0.0,
                         patience={"autodiff": 10**6, "proxy": 5, "hybrid": 5, "spsa": 5},
                         steps={**MatchConfig().steps, "autodiff": 15})
    report = match_files(d, t, "gain,distortion", "autodiff", tmp_path / "o",
                         max_seconds=10.0, progress=False, config=config)
    names = [p["phase"] for p in report["phases"]]
    assert names.index("cma (the gradient stalled)") > names.index("autodiff")
    assert report["phases"][names.index("cma (the gradient stalled)")]["iterations"] > 0
    # steps the caller asked for end the search where they run out
    report = match_files(d, t, "gain,distortion", "autodiff", tmp_path / "o2", steps=15,
                         max_seconds=10.0, progress=False, config=config)
    assert report["stopped_by"] == "steps"
    assert "cma (the gradient stalled)" not in [p["phase"] for p in report["phases"]]
