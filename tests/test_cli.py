"""The ddsp-synth command line: demo rendering, overwrite protection, atomic writes."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ddsp_synth import audio_io, core
from ddsp_synth.cli import main


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


def test_write_audio_is_atomic_and_validates(tmp_path, monkeypatch):
    out = tmp_path / "x.wav"
    audio_io.write_audio(out, np.zeros(100), 16000)
    before = out.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio_io.sf, "write", boom)
    with pytest.raises(RuntimeError):
        audio_io.write_audio(out, np.ones(100) * 0.5, 16000, force=True)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temporary left behind
    monkeypatch.undo()
    with pytest.raises(audio_io.AudioError, match="NaN"):
        audio_io.write_audio(tmp_path / "n.wav", np.array([0.0, np.nan]), 16000)
    with pytest.raises(audio_io.AudioError, match="must be .wav or .flac"):
        audio_io.write_audio(tmp_path / "n.mp3", np.zeros(10), 16000)


def test_bad_numeric_input_is_one_line_error(capsys):
    assert main(["demo", "--seconds", "-1", "-o", "/tmp/never.wav"]) == 2
    assert "error" in capsys.readouterr().err
    assert core.n_frames_for(1, 160) == 1
