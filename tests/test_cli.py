"""The ddsp-synth command line: every command end to end (prepare -> train -> export -> eval,
transfer, stream, export-runtime, demo), overwrite protection and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ddsp_synth.dsp.interpolation import n_frames_for
from ddsp_synth.cli import main
from ddsp_synth.features import FeatureConfig, compute_f0, compute_loudness

from conftest import synth_tone

HOP = 160


def test_demo_renders_a_pitched_phrase_with_reverb_tail(tmp_path):
    out = tmp_path / "demo.wav"
    assert main(["demo", "-o", str(out)]) == 0
    y, sr = sf.read(out)
    assert sr == 16000 and len(y) == 5 * 16000 - 1  # 4 s phrase + 1 s reverb (ir_size - 1)
    assert 0.85 < np.abs(y).max() <= 10 ** (-1 / 20) + 1e-3
    # The first note is A4: the FFT peak of 0.1-0.4 s sits at 440 Hz within vibrato range.
    seg = y[int(0.1 * sr): int(0.4 * sr)] * np.hanning(int(0.3 * sr))
    spec = np.abs(np.fft.rfft(seg, 1 << 16))
    peak_hz = np.argmax(spec) * sr / (1 << 16)
    assert abs(1200 * np.log2(peak_hz / 440.0)) < 30
    # The ring-out after the phrase is quiet but not silent (reverb tail kept).
    tail = y[int(4.3 * sr):]
    assert 0 < np.sqrt(np.mean(tail**2)) < 0.1 * np.sqrt(np.mean(y[: 4 * sr] ** 2))


def test_demo_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "demo.wav"
    out.write_bytes(b"keep me")
    assert main(["demo", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--force" in err
    assert out.read_bytes() == b"keep me"
    assert main(["demo", "-o", str(out), "--force", "--seconds", "1"]) == 0
    assert sf.info(out).frames == 2 * 16000 - 1


def test_console_script_module_runs(tmp_path):
    out = tmp_path / "d.flac"
    proc = subprocess.run([sys.executable, "-m", "ddsp_synth", "demo", "-o", str(out),
                           "--seconds", "1", "--sample-rate", "44100"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = sf.info(out)
    assert info.samplerate == 44100 and info.format == "FLAC"


def test_bad_numeric_input_is_one_line_error(capsys):
    assert main(["demo", "--seconds", "-1", "-o", "/tmp/never.wav"]) == 2
    assert "error" in capsys.readouterr().err
    assert n_frames_for(1, 160) == 1


def test_export_carries_everything(exported):
    meta = json.loads((exported / "config.json").read_text())
    assert meta["training"]["steps"] == 20 and meta["training"]["loss_history"]
    assert meta["dataset_stats"]["pitch_midi_mean"] > 50
    assert meta["model"]["features"]["crepe_model"] == "tiny"


def test_eval_cli_on_dataset_and_audio(exported, tiny_dataset, tmp_path, capsys):
    assert main(["eval", str(exported), str(tiny_dataset), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics) >= {"spectral_loss", "loudness_l1_db", "f0_l1_cents", "f0_outlier_ratio",
                            "rtf"}
    assert metrics["examples"] == 2 and 0 < metrics["rtf"] < 1
    assert sorted(p.name for p in (tmp_path / "ev").glob("*.wav")) == ["val-0000.wav", "val-0001.wav"]
    sf.write(tmp_path / "tone.wav", synth_tone(2.5, 22050, 200.0), 22050)
    capsys.readouterr()
    assert main(["eval", str(exported), str(tmp_path / "tone.wav")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["examples"] == 1 and np.isfinite(printed["f0_l1_cents"])


def test_cli_errors_are_one_line(exported, tmp_path, capsys):
    bad = tmp_path / "bad_model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    assert main(["eval", str(bad), str(tmp_path)]) == 2
    assert main(["export", str(tmp_path / "norun"), "-o", str(tmp_path / "m")]) == 2
    assert main(["prepare", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "d")]) == 2
    assert main(["train", str(tmp_path), "-o", str(tmp_path / "r")]) == 2
    assert main(["export", str(exported.parent / "run"), "-o", str(exported)]) == 2  # exists
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("ddsp-synth ") for line in err), err


def test_transfer_cli_folder_with_corrupt_file(exported, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", synth_tone(2.0, 44100, 300.0), 44100)
    sf.write(src / "b.flac", synth_tone(2.5, 16000, 200.0), 16000)
    (src / "broken.wav").write_bytes(b"not audio at all")
    sf.write(src / "silent.wav", np.zeros(16000), 16000)
    out = tmp_path / "out"
    rc = main(["transfer", str(src), "--model", str(exported), "-o", str(out), "--quiet",
               "--format", "flac"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "broken.wav" in err[0] + err[1] and "silent" in err[0] + err[1]
    a, sr = sf.read(out / "a.flac")
    assert sr == 16000 and abs(len(a) - 2.0 * 16000) <= 1
    assert sf.info(out / "b.flac").frames == 2.5 * 16000
    # nothing is overwritten without --force
    before = (out / "b.flac").read_bytes()
    assert main(["transfer", str(src / "b.flac"), "--model", str(exported), "-o",
                 str(out / "b.flac"), "--quiet"]) == 2
    assert (out / "b.flac").read_bytes() == before
    assert main(["resynth", str(src / "b.flac"), "--model", str(exported), "-o",
                 str(tmp_path / "r.wav"), "--quiet", "--sample-rate", "48000"]) == 0
    assert sf.info(tmp_path / "r.wav").samplerate == 48000
    assert main(["transfer", str(src / "b.flac"), "--model", "no-such-instrument", "-o",
                 str(tmp_path / "x.wav")]) == 2


def test_stream_cli_follows_the_input_pitch(tmp_path):
    src = tmp_path / "in.wav"
    x = synth_tone(3.0, 16000, 440.0)
    sf.write(src, x, 16000)
    out, report = tmp_path / "out.wav", tmp_path / "report.json"
    assert main(["stream", str(src), "-o", str(out), "--model", "trumpet", "--quiet",
                 "--pitch-shift", "-12", "--report", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["blocks"] == 300 and rep["latency_ms"]["synthesis"] == 10.0
    assert rep["latency_ms"]["total"] == 32.0 + 10.0 + 10.0
    assert rep["compute_total"]["median_ms"] > 0
    y, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and len(y) == len(x)
    fc = FeatureConfig()
    lag = 512 + HOP  # features look-ahead + synthesis latency
    f0_in, conf = compute_f0(x, fc)
    f0_out, _ = compute_f0(np.concatenate([y[lag:], np.zeros(lag, np.float32)]), fc)
    voiced = (conf > 0.85) & (compute_loudness(x, fc) > -40)
    voiced[-10:] = False
    cents = 1200 * np.log2(f0_out[voiced] / (f0_in[voiced] / 2))
    assert np.median(np.abs(cents)) < 30, np.median(np.abs(cents))
    # no overwrite without --force; silent input is a one-line error
    assert main(["stream", str(src), "-o", str(out), "--model", "trumpet", "--quiet"]) == 2
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    assert main(["stream", str(tmp_path / "silent.wav"), "-o", str(tmp_path / "s.wav"),
                 "--model", "trumpet", "--quiet"]) == 2


def test_export_runtime_cli(tmp_path, capsys):
    out = tmp_path / "violin.onnx"
    assert main(["export-runtime", "trumpet", "-o", str(out)]) == 0
    assert out.stat().st_size > 1_000_000
    assert main(["export-runtime", "trumpet", "-o", str(out)]) == 2  # exists, no --force
    assert "exists" in capsys.readouterr().err
    assert main(["export-runtime", str(tmp_path / "nope"), "-o", str(tmp_path / "x.pt")]) == 2


def _lowshelf_pair(tmp_path, gain_db=-9.0, cutoff_hz=400.0):
    """A dry tone and the same through a low shelf (scipy RBJ design, the twin's algorithm)."""
    from scipy.signal import lfilter

    sr = 16000
    rng = np.random.default_rng(0)  # a tone with a breath of noise: every band has energy
    dry = (synth_tone(3.0, sr, 196.0) + 0.02 * rng.standard_normal(3 * sr)).astype(np.float32)
    a_lin = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * cutoff_hz / sr
    alpha = np.sin(w0) / 2 * np.sqrt(2.0)  # q = 1/sqrt(2)
    c, k = np.cos(w0), 2 * np.sqrt(a_lin) * alpha
    b = [a_lin * ((a_lin + 1) - (a_lin - 1) * c + k), 2 * a_lin * ((a_lin - 1) - (a_lin + 1) * c),
         a_lin * ((a_lin + 1) - (a_lin - 1) * c - k)]
    a = [(a_lin + 1) + (a_lin - 1) * c + k, -2 * ((a_lin - 1) + (a_lin + 1) * c),
         (a_lin + 1) + (a_lin - 1) * c - k]
    wet = lfilter(b, a, dry).astype(np.float32)
    sf.write(tmp_path / "dry.wav", dry, sr, subtype="FLOAT")
    sf.write(tmp_path / "wet.wav", wet, sr, subtype="FLOAT")
    return tmp_path / "dry.wav", tmp_path / "wet.wav"


def test_match_cli_recovers_a_shelf_and_refuses_to_overwrite(tmp_path, capsys):
    dry, wet = _lowshelf_pair(tmp_path)
    out = tmp_path / "m"
    argv = ["match", str(dry), str(wet), "--chain", "lowshelf", "--method", "autodiff",
            "-o", str(out), "--max-seconds", "40", "--quiet"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(out)) and "rel_spec" in line
    preset = json.loads((out / "preset.json").read_text())
    (entry,) = preset["chain"]
    assert entry["device"] == "lowshelf" and preset["method"] == "autodiff"
    assert abs(entry["params"]["gain_db"] - (-9.0)) < 1.0
    assert abs(np.log2(entry["params"]["cutoff_frequency_hz"] / 400.0)) < 0.25
    report = json.loads((out / "report.json").read_text())
    assert report["rel_spec"] < 0.1 and report["spectral_distance_after"] < \
        report["spectral_distance_before"]
    before = (out / "preset.json").read_bytes()
    assert main(argv) == 2  # outputs exist: nothing overwritten without --force
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--force" in err
    assert (out / "preset.json").read_bytes() == before


def test_match_and_proxy_cli_bad_input_is_one_line(tmp_path, capsys):
    dry, wet = _lowshelf_pair(tmp_path)
    cases = [
        (["match", str(dry), str(tmp_path / "missing.wav"), "--chain", "peak", "-o",
          str(tmp_path / "o1")], "missing.wav"),
        (["match", str(dry), str(wet), "--chain", "peak,wah", "-o", str(tmp_path / "o2")],
         "unknown device 'wah'"),
        (["match", str(dry), str(wet), "--chain", "peak:colour=3", "-o", str(tmp_path / "o3")],
         "colour"),
        (["proxy", "train", "wah", "-o", str(tmp_path / "p")], "unknown device 'wah'"),
        # an output that cannot be written is refused before the training, not after it
        (["proxy", "train", "distortion", "-o", str(dry / "p")], "not a folder"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err and "Traceback" not in err, err
        assert not (tmp_path / argv[-1]).exists()
    for argv in (["match", str(dry), str(wet), "--chain", "peak", "--method", "magic", "-o",
                  str(tmp_path / "o4")],
                 ["match", str(dry), str(wet), "--chain", "peak", "--steps", "0", "-o",
                  str(tmp_path / "o5")]):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().count("\n") == 0


def test_proxy_train_cli_writes_a_self_describing_proxy(tmp_path, capsys):
    out = tmp_path / "proxies" / "distortion"
    assert main(["proxy", "train", "distortion", "-o", str(out), "--steps", "20",
                 "--quiet"]) == 0
    assert "held-out rel_spec" in capsys.readouterr().out
    meta = json.loads((out / "proxy.json").read_text())
    assert meta["device"] == "distortion" and meta["sample_rate"] == 16000
    assert meta["training"]["steps"] == 20 and "rel_spec" in meta["accuracy"]
    assert (out / "proxy.safetensors").stat().st_size > 1000
    assert "distortion" in (out / "MODEL_CARD.md").read_text()
    assert main(["proxy", "train", "distortion", "-o", str(out), "--steps", "2"]) == 2
    assert "--force" in capsys.readouterr().err


def test_prepare_cli_names_each_skipped_file_once(tmp_path, capsys):
    src = tmp_path / "takes"
    src.mkdir()
    sf.write(src / "good.wav", synth_tone(6.0, 16000, 220.0), 16000)
    (src / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "data"
    assert main(["prepare", str(src), "-o", str(out), "--val-seconds", "1",
                 "--example-seconds", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("ddsp-synth prepare: skipped ") and line.count("broken.wav") == 1
    assert "prepared 1 file(s)" in captured.out


def test_control_train_resume_refuses_settings_other_than_the_run_s(tmp_path, capsys):
    """--resume takes a run's settings from its run.json: another chain or learning rate on
    the command line was ignored without a word; the same ones, or none, are fine."""
    import json as json_

    from ddsp_synth.cli import build_parser, control as control_cli, main

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json_.dumps({
        "chain": ["highshelf", "gain"], "method": "autodiff", "pairs": None, "style": ["x"],
        "controller": {"per_frame": False}, "train": {"learning_rate": 0.001},
        "data": {"segment_seconds": 2.0}, "loss": "mr"}))
    rc = main(["control", "train", "--chain", "highshelf,compressor,gain", "--learning-rate",
               "0.01", "-o", str(run), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--chain (the run's: highshelf,gain); --learning-rate (the run's: " \
                       "0.001)" in err and err.count("\n") == 1
    args = build_parser().parse_args(
        ["control", "train", "--chain", "highshelf,gain", "--method", "autodiff",
         "--learning-rate", "0.001", "-o", str(run), "--resume"])
    control_cli._check_resume(args)  # the run's own settings: no complaint


def test_a_stop_signal_during_an_import_stops_the_command_once_the_import_is_over(tmp_path,
                                                                                   monkeypatch):
    """Raised into an import (an extension module initialising: soxr's), the interrupt was
    seen to vanish, the signal with it, or to crash the interpreter; it now waits for the
    import to end, then stops the command as usual."""
    import signal
    import sys
    import time

    from ddsp_synth.signals import StopSignal, stop_signals_interrupt

    (tmp_path / "slow_to_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.3)\n"
        "DONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    with pytest.raises(StopSignal) as stop:
        with stop_signals_interrupt():
            import slow_to_import

            seen.append(slow_to_import.DONE)
            time.sleep(5)
            seen.append("not stopped")
    assert seen == [True] and stop.value.signum == signal.SIGTERM
    sys.modules.pop("slow_to_import", None)


def test_training_and_live_leave_an_ignored_hangup_ignored():
    """nohup leaves SIGHUP ignored, a background job SIGINT: neither training's stop flag
    nor the command's own handlers take them back (a hangup stopped a nohup'd training)."""
    import signal
    import threading

    from ddsp_synth.signals import stop_signals_interrupt
    from ddsp_synth.soundcard.session import _signals_to_flag
    from ddsp_synth.train.steps import StopFlag

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_interrupt(), StopFlag():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # still caught
        handlers = _signals_to_flag(threading.Event())
        assert signal.SIGHUP not in handlers and signal.SIGTERM in handlers
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    finally:
        signal.signal(signal.SIGHUP, old)
