"""The effects rack (presets through the PyTorch twins or the real devices) and ``fx``."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import synth_tone
from ddsp_synth.cli import main
from ddsp_synth.rack import (PresetError, Rack, check_preset, layout_preset, layout_settings,
                             read_preset)

SR = 16000
PRESET = {"chain": [
    {"device": "lowshelf", "params": {"cutoff_frequency_hz": 150, "gain_db": 4, "q": 0.7}},
    {"device": "peak", "params": {"cutoff_frequency_hz": 2000, "gain_db": -5, "q": 2}},
    {"device": "compressor", "params": {"threshold_db": -25, "ratio": 4, "attack_ms": 5,
                                        "release_ms": 100}},
    {"device": "distortion", "params": {"drive_db": 10}},
    {"device": "gain", "params": {"gain_db": -6}}]}


def _signal(seconds=3.0, sr=SR):
    """A tone with loud and quiet passages (the compressor acts on the loud ones)."""
    y = synth_tone(seconds, sr, 220.0)
    y[: len(y) // 3] *= 0.05
    return y


def test_the_twins_sound_like_the_real_devices():
    pytest.importorskip("pedalboard")
    x = _signal()
    twins = Rack(PRESET, SR).process(x)
    with Rack(PRESET, SR, engine="real") as real:
        y = real.process(x)
    assert np.abs(twins - y).max() < 1e-4 * np.abs(y).max()
    assert np.abs(twins - x).max() > 0.05  # the rack does something


def test_blocks_of_any_size_equal_the_whole_signal():
    x = np.stack([_signal(), 0.5 * _signal()], 1)  # two channels, the same settings
    rack = Rack(PRESET, SR)
    whole = rack.process(x)
    stream = rack.stream(channels=2)
    rng = np.random.default_rng(0)
    cuts = np.cumsum(rng.integers(1, 3000, 100))
    parts = [stream.process(b) for b in np.split(x, cuts[cuts < len(x)])]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)  # float32 rounding
    np.testing.assert_allclose(whole[:, 0], rack.process(x[:, 0]), atol=1e-7)


def test_presets_round_trip_and_fit_the_apps_layout(tmp_path):
    preset = check_preset(PRESET)
    assert check_preset(preset.to_dict()) == preset
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset.to_dict()))
    assert read_preset(path) == preset
    settings = layout_settings(preset)
    assert settings["highshelf"] is None and settings["gain"] == {"gain_db": -6.0}
    assert layout_preset(settings) == preset
    twice = check_preset({"chain": [{"device": "peak"}, {"device": "peak"}]})
    assert layout_settings(twice) is None  # not the app's layout: loaded as a whole chain
    assert "peak cutoff_frequency_hz=440 Hz gain_db=0 dB" in twice.describe()  # defaults


@pytest.mark.parametrize("data, message", [
    ({"chain": [{"device": "flanger"}]}, "entry 0: unknown device 'flanger'"),
    ({"chain": [{"device": "peak", "params": {"gain_db": 99}}]}, r"outside \[-24, 24\]"),
    ({"chain": [{"device": "peak", "params": {"width": 1}}]}, "no parameter 'width'"),
    ({"chain": [{"device": "gain", "params": {"gain_db": "loud"}}]}, "gain_db"),
    ({"chain": "peak"}, "a 'chain' list"),
    ({"command": ["sox"]}, "this is a device file"),
    ([1, 2], "a 'chain' list"),
])
def test_bad_presets_are_one_line(data, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match=message) as err:
        read_preset(path)
    assert "\n" not in str(err.value) and str(err.value).count(str(path)) == 1


def test_a_device_without_a_twin_plays_only_through_the_real_device():
    from pathlib import Path

    device = Path(__file__).resolve().parents[1] / "examples" / "devices" / "sox_overdrive.json"
    preset = {"chain": [{"device": "sox_overdrive", "params": {}, "source": str(device)}]}
    with pytest.raises(PresetError, match="has no PyTorch twin"):
        Rack(preset, SR)


def test_a_saved_preset_finds_its_device_file_from_any_working_folder(tmp_path, monkeypatch):
    """match ran in folder A with ``--chain devs/dev.json``; the preset it saved in A/out
    must still load from another folder (it named the file relative to A, so it did not)."""
    import shutil
    from pathlib import Path

    from ddsp_synth.rack import sources_relative_to

    work = tmp_path / "a"
    (work / "devs").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "devices"
                / "sox_overdrive.json", work / "devs" / "dev.json")
    monkeypatch.chdir(work)
    made = {"chain": [{"device": "sox_overdrive", "params": {"gain_db": 12.0},
                       "source": "devs/dev.json"}]}
    saved = sources_relative_to(made, work / "out")
    assert saved["chain"][0]["source"] == os.path.join("..", "devs", "dev.json")
    assert made["chain"][0]["source"] == "devs/dev.json"  # the caller's dict is left alone
    (work / "out").mkdir()
    (work / "out" / "preset.json").write_text(json.dumps(saved))
    monkeypatch.chdir(tmp_path)
    preset = read_preset(work / "out" / "preset.json")
    assert Path(preset.entries[0]).resolve() == (work / "devs" / "dev.json").resolve()
    assert preset.values[0][0] == 12.0


def test_transfer_plays_through_the_rack(exported):
    from ddsp_synth.model import load_model
    from ddsp_synth.transfer import TransferOptions, transfer_audio

    model, meta = load_model(exported)
    x = synth_tone(3.0, SR, 300.0)
    options = dict(auto_adjust=False, chunk_seconds=0.7)  # several chunks: state carried
    dry, _ = transfer_audio(model, meta, x, TransferOptions(**options), cache=False)
    wet, _ = transfer_audio(model, meta, x, TransferOptions(effects=PRESET, **options),
                            cache=False)
    np.testing.assert_allclose(wet, Rack(PRESET, SR).process(dry), atol=1e-5)


def test_fx_keeps_rate_channels_and_length_and_equals_pedalboard(tmp_path, capsys):
    pedalboard = pytest.importorskip("pedalboard")
    sr = 44100
    x = np.stack([_signal(2.0, sr), 0.7 * _signal(2.0, sr)], 1).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    (tmp_path / "p.json").write_text(json.dumps(PRESET))
    assert main(["fx", str(tmp_path / "p.json"), str(tmp_path / "in.wav"), "-o",
                 str(tmp_path / "out.wav"), "--quiet"]) == 0
    y, out_sr = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert out_sr == sr and y.shape == x.shape
    board = pedalboard.Pedalboard([
        pedalboard.LowShelfFilter(cutoff_frequency_hz=150, gain_db=4, q=0.7),
        pedalboard.PeakFilter(cutoff_frequency_hz=2000, gain_db=-5, q=2),
        pedalboard.Compressor(threshold_db=-25, ratio=4, attack_ms=5, release_ms=100),
        pedalboard.Distortion(drive_db=10), pedalboard.Gain(gain_db=-6)])
    for ch in range(2):  # each channel on its own, as the rack treats them
        ref = board(x[:, ch], sr)
        board.reset()
        assert np.abs(y[:, ch] - ref).max() < 1e-5
    assert main(["fx", str(tmp_path / "p.json"), str(tmp_path / "in.wav"), "-o",
                 str(tmp_path / "out.wav"), "--quiet"]) == 2  # exists: needs --force
    assert "exists; pass --force" in capsys.readouterr().err
    # exit statuses: every file failed is 2 (nothing written), some of several 1
    (tmp_path / "bad.wav").write_text("not audio")
    assert main(["fx", str(tmp_path / "p.json"), str(tmp_path / "bad.wav"), "-o",
                 str(tmp_path / "bad_out.wav"), "--quiet"]) == 2
    assert main(["fx", str(tmp_path / "p.json"), str(tmp_path / "bad.wav"), str(tmp_path /
                 "in.wav"), "-o", str(tmp_path / "outs"), "--quiet"]) == 1
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["in.wav"]
    # several inputs into a .wav name: refused, not a folder called out2.wav
    assert main(["fx", str(tmp_path / "p.json"), str(tmp_path / "in.wav"), str(tmp_path /
                 "in.wav"), "-o", str(tmp_path / "out2.wav"), "--quiet"]) == 2
    assert "give a folder, not a .wav file name" in capsys.readouterr().err
    assert not (tmp_path / "out2.wav").exists()
    # a chain that lifts the peaks over full scale: the float WAV keeps them and says so
    (tmp_path / "loud.json").write_text(json.dumps({"chain": [{"device": "gain",
                                                              "params": {"gain_db": 24}}]}))
    assert main(["fx", str(tmp_path / "loud.json"), str(tmp_path / "in.wav"), "-o",
                 str(tmp_path / "loud.wav"), "--quiet"]) == 0
    peak = 20 * np.log10(np.abs(sf.read(tmp_path / "loud.wav")[0]).max())
    assert peak > 3 and f"(peaks {peak:+.1f} dBFS, kept in the float WAV" in \
        capsys.readouterr().out


def test_render_and_transfer_say_when_the_rack_would_clip(tmp_path, capsys):
    (tmp_path / "loud.json").write_text(json.dumps({"chain": [{"device": "gain",
                                                              "params": {"gain_db": 24}}]}))
    midi = Path(__file__).resolve().parents[1] / "examples" / "ode_to_joy.mid"
    for cmd in (["render", str(midi)], ["transfer", str(tmp_path / "in.wav")]):
        if cmd[0] == "transfer":
            sf.write(tmp_path / "in.wav", sf.read(tmp_path / "render.wav")[0][:32000], 16000)
        assert main([*cmd, "--model", "flute", "--effects", str(tmp_path / "loud.json"),
                     "-o", str(tmp_path / f"{cmd[0]}.wav"), "--quiet"]) == 0
        y = sf.read(tmp_path / f"{cmd[0]}.wav")[0]
        assert abs(np.abs(y).max() - 0.999) < 1e-3  # scaled down to just under full scale
        out = capsys.readouterr().out
        assert re.search(r"; its peaks reach \+\d+\.\d dBFS, so the file is \d+\.\d dB quieter "
                         r"than it played \(no clipping\)", out), out


def test_the_example_presets_load_and_play_through_the_twins():
    from pathlib import Path

    presets = sorted((Path(__file__).resolve().parents[1] / "examples" / "presets").glob("*.json"))
    assert presets
    for path in presets:
        y = Rack(read_preset(path), SR).process(_signal(1.0))
        assert np.all(np.isfinite(y)) and np.abs(y).max() > 0.01, path.name


def test_the_streaming_engines_play_the_rack_as_offline(exported):
    """stream/live: the rack after the instrument, block by block, equals the rack on the
    stream's whole output (its state carried across blocks and kept through reset)."""
    import mido

    from ddsp_synth.model import load_model
    from ddsp_synth.streaming import MidiLiveEngine, stream_audio

    model, meta = load_model(exported)
    preset = check_preset(PRESET)
    dry = MidiLiveEngine(model, meta, engine="torch")
    wet = MidiLiveEngine(model, meta, engine="torch", effects=preset)
    events = {5: [mido.Message("note_on", note=60, velocity=100)],
              60: [mido.Message("note_off", note=60)]}
    for _ in range(2):  # the second time after reset: the same samples
        dry.reset(), wet.reset()
        ins = np.concatenate([dry.process(events.get(i, ())) for i in range(120)])
        outs = np.concatenate([wet.process(events.get(i, ())) for i in range(120)])
        np.testing.assert_allclose(outs, Rack(preset, SR).process(ins), atol=1e-5)
        assert np.abs(outs - ins).max() > 0.01
    x = synth_tone(1.5, SR, 220.0)
    y0, rep0 = stream_audio(model, x, 160)
    y1, rep1 = stream_audio(model, x, 160, effects=preset)
    assert not rep0["effects"] and rep1["effects"]
    n = len(x) - 480  # the end is padded with silence after the stream's last block
    np.testing.assert_allclose(y1[:n], Rack(preset, SR).process(y0)[:n], atol=1e-5)


def test_stream_refuses_a_bad_preset_before_any_work(exported, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"chain": [{"device": "flanger", "params": {}}]}))
    x = tmp_path / "in.wav"
    sf.write(x, synth_tone(1.0, SR, 220.0), SR)
    assert main(["stream", str(x), "--model", str(exported), "--effects", str(bad),
                 "-o", str(tmp_path / "out.wav")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.json" in err
    assert not (tmp_path / "out.wav").exists()


def test_settings_beyond_what_the_audio_holds_are_refused_not_rendered_as_nan():
    """The app's knobs went up to 21.6 kHz (made for 48 kHz) while the instruments play at
    16 kHz: a 9 kHz peak, even at 0 dB, rendered NaN (an unstable section) and the request
    crashed. A preset checked at 48 kHz is checked again at the rate it plays at, and the
    twins stay finite whatever they are given."""
    import torch

    from ddsp_synth.stages.registry import make_device
    from ddsp_synth.ui.rack_panel import RACK_SAMPLE_RATE, _param_of

    wide = check_preset({"chain": [{"device": "highshelf",
                                    "params": {"cutoff_frequency_hz": 12000.0, "gain_db": 6.0}}]},
                        48000)
    with pytest.raises(PresetError, match=r"does not play at 16000 Hz: .*cutoff_frequency_hz = "
                                          r"12000.0 is outside \[20, 7200\]"):
        Rack(wide, 16000)
    assert Rack(wide, 48000).process(np.zeros(480, np.float32)).shape == (480,)
    for name, p in (("peak", [9000.0, 0.0, 0.707]), ("highshelf", [12000.0, 6.0, 0.707])):
        y, _ = make_device(name, 16000).twin(16000, 160)(torch.randn(1, 1600) * 0.1,
                                                          torch.tensor([p]))
        assert torch.isfinite(y).all()
    assert _param_of("peak")["cutoff_frequency_hz"].max <= 0.45 * RACK_SAMPLE_RATE
