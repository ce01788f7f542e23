"""``match``: known parameters recovered by every method, the outputs, and every bad input."""

import json
import math
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED_DATA, synth_tone
from ddsp_synth.audio_io import AudioError
from ddsp_synth.errors import UserError
from ddsp_synth.match import MatchConfig, MatchError, match, match_files
from ddsp_synth.match.inputs import align
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
    np.testing.assert_allclose(matched, np.clip(expected, -1, 1), atol=1e-4)
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
    assert report["rel_spec"] < 0.3 and report["device_evaluations"] > 80


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


def test_large_offset_and_short_overlap(tmp_path):
    dry = _dry(1.5)
    d, t = _write(tmp_path, dry, np.concatenate([np.zeros(4000, np.float32), dry]))
    _fails(MatchError, "offset from dry by", d, t, "gain", "cma", tmp_path / "o")
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
