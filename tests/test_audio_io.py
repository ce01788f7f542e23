"""Audio files: reading (any format, rate, channels; block by block), atomic writing, discovery."""

import numpy as np
import pytest
import soundfile as sf

from ddsp_synth import audio_io


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
    with pytest.raises(audio_io.AudioError, match="must end in .wav or .flac"):
        audio_io.write_audio(tmp_path / "n.mp3", np.zeros(10), 16000)


def test_load_audio_mixes_channels_and_resamples(tmp_path):
    sr_in, sr_out = 44100, 16000
    t = np.arange(int(1.5 * sr_in)) / sr_in
    left = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    stereo = np.stack([left, -0.2 * left], axis=1)  # the mono mix is (0.5 - 0.1) / 2 = 0.2 sin
    sf.write(tmp_path / "st.flac", stereo, sr_in)
    y = audio_io.load_audio(tmp_path / "st.flac", sr_out)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 1.5 * sr_out) <= 1
    mid = y[2000:-2000]
    assert abs(np.sqrt(2) * np.sqrt(np.mean(mid**2)) - 0.2) < 2e-3  # amplitude kept
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    assert abs(np.argmax(spec) * sr_out / len(mid) - 440.0) < 2.0  # pitch kept
    # block-wise reading gives the same samples as a whole-file read
    blocks = np.concatenate(list(audio_io.iter_audio_blocks(tmp_path / "st.flac", sr_out, 0.1)))
    np.testing.assert_allclose(blocks, y, atol=1e-6)
    np.testing.assert_allclose(audio_io.resample_audio(y, sr_out, sr_out), y)


def test_unreadable_and_empty_files_are_one_line_errors(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    (tmp_path / "zero.wav").write_bytes(b"")  # an interrupted upload or copy
    for name, message in (("text.wav", "unreadable audio"), ("empty.wav", "empty file"),
                          ("zero.wav", r"empty file \(0 bytes\)")):
        with pytest.raises(audio_io.AudioError, match=message) as err:
            audio_io.load_audio(tmp_path / name, 16000)
        assert "\n" not in str(err.value)


def test_find_audio_files_recurses_sorted_and_rejects_missing(tmp_path):
    (tmp_path / "b").mkdir()
    for rel in ("b/2.flac", "a.wav", "b/1.WAV", "notes.txt"):
        (tmp_path / rel).write_bytes(b"x")
    found = audio_io.find_audio_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.wav", "b/1.WAV", "b/2.flac"]
    with pytest.raises(audio_io.AudioError, match="no such file"):
        audio_io.find_audio_files([tmp_path / "missing.wav"])


def test_a_flac_written_to_a_pipe_is_read_to_its_end(tmp_path):
    """Its header states 2^63 - 1 frames; libsndfile fails on its last short block."""
    import shutil
    import subprocess

    if shutil.which("sox") is None:
        pytest.skip("sox not installed (make system)")
    path, ref = tmp_path / "streamed.flac", tmp_path / "ref.wav"
    with open(path, "wb") as f:
        sox = subprocess.Popen(["sox", "-n", "-r", "16000", "-c", "2", "-t", "flac", "-",
                                "synth", "3.7", "sine", "300", "sine", "500"],
                               stdout=subprocess.PIPE)
        shutil.copyfileobj(sox.stdout, f)
        assert sox.wait() == 0
    subprocess.run(["sox", str(path), "-e", "floating-point", str(ref)], check=True)
    assert sf.info(path).frames > 2**60
    expected = sf.read(ref, dtype="float32")[0].mean(axis=1)
    got = audio_io.load_audio(path, 16000)
    assert len(expected) - 1 <= len(got) <= len(expected)  # at most the final frame lost
    np.testing.assert_allclose(got, expected[: len(got)], atol=1e-6)


def test_channels_that_cancel_are_told_apart_from_a_quiet_file(tmp_path):
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(tmp_path / "anti.wav", np.stack([tone, -tone], 1), 16000)
    with pytest.raises(audio_io.AudioError, match="channels cancel each other"):
        audio_io.load_audio(tmp_path / "anti.wav", 16000)
    # one channel at -76 dBFS beside a silent one: quiet (its mix is under -80 dBFS), not
    # two channels cancelling
    quiet = 10 ** (-76 / 20) * np.sin(2 * np.pi * 220 * t)
    sf.write(tmp_path / "quiet.wav", np.stack([quiet, 0 * quiet], 1), 16000, subtype="FLOAT")
    y = audio_io.load_audio(tmp_path / "quiet.wav", 16000)
    assert abs(np.abs(y).max() - 10 ** (-76 / 20) / 2) < 1e-6
