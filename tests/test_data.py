"""prepare: round trip, splits, statistics, bad files, idempotency, block processing."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ddsp_synth.dsp.interpolation import n_frames_for
from ddsp_synth.audio_io import AudioError
from ddsp_synth.data import DDSPDataset, PrepareConfig, load_manifest, prepare
from ddsp_synth.features import compute_features

from conftest import SHARED_DATA, synth_tone

CFG = PrepareConfig(example_seconds=1.0, example_hop_seconds=0.5, val_seconds=2.0)


def test_prepare_round_trip_with_bad_files(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    good = synth_tone(10.0, 22050, 220.0)
    stereo = np.stack([good, good * 0.5], axis=1)
    sf.write(src / "sub" / "good.flac", stereo, 22050)  # other rate, stereo, subfolder
    sf.write(src / "silent.wav", np.zeros(16000 * 3, np.float32), 16000)
    sf.write(src / "short.wav", synth_tone(0.5, 16000), 16000)
    sf.write(src / "empty.wav", np.zeros(0, np.float32), 16000)
    (src / "corrupt.wav").write_bytes(b"RIFF\x00\x00junk" * 10)
    out = tmp_path / "data"
    seen = []
    manifest = prepare([src], out, CFG, show_progress=False,
                       on_skip=lambda path, reason: seen.append(path.name))
    assert sorted(seen) == ["corrupt.wav", "empty.wav", "short.wav", "silent.wav"]
    reasons = {p["path"].split("/")[-1]: p["reason"] for p in manifest["skipped"]}
    assert set(reasons) == {"silent.wav", "short.wav", "empty.wav", "corrupt.wav"}
    assert "silent" in reasons["silent.wav"] and "too short" in reasons["short.wav"]
    assert "empty" in reasons["empty.wav"] and "unreadable" in reasons["corrupt.wav"]

    (entry,) = manifest["files"]
    assert abs(entry["n_samples"] - 10 * 16000) <= 2  # resampled 22.05 -> 16 kHz
    assert entry["n_frames"] == n_frames_for(entry["n_samples"], 160)
    # validation = last 2 s; training windows never reach into it
    assert entry["val_frames"] == [entry["n_frames"] - 200, entry["n_frames"]]
    train, val = manifest["examples"]["train"], manifest["examples"]["val"]
    assert max(s for _, s in train) + 100 <= entry["train_frames"][1]
    assert [s for _, s in val] == [entry["n_frames"] - 200, entry["n_frames"] - 100]
    assert len(train) == (entry["n_frames"] - 200 - 100) // 50 + 1

    # features line up with the stored audio: recomputing on it gives the same arrays
    ds = DDSPDataset(out, "train")
    item = ds[3]
    assert item["audio"].shape == (16000,) and item["f0_hz"].shape == (100,)
    whole = np.memmap(next((out / "files").iterdir()) / "audio.pcm", dtype="<i2", mode="r")
    feats = compute_features(np.asarray(whole, np.float32) / 32767.0, CFG.features)
    s = train[3][1]
    np.testing.assert_allclose(item["loudness_db"].numpy(), feats["loudness_db"][s : s + 100],
                               atol=1e-3)
    np.testing.assert_allclose(item["f0_hz"].numpy(), feats["f0_hz"][s : s + 100], rtol=1e-4)

    stats = json.loads((out / "stats.json").read_text())
    assert abs(stats["pitch_midi_mean"] - 57.0) < 0.5  # 220 Hz = MIDI 57
    assert 0.6 < stats["voiced_fraction"] < 0.95  # breaths every 2 s are unvoiced
    q = stats["loudness_db_quantiles"]
    assert len(q) == 101 and q == sorted(q) and -60 < q[50] < -5
    assert sum(stats["confidence_histogram"]["counts"]) == stats["n_frames"]


def test_prepare_is_idempotent_and_errors_when_nothing_usable(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", synth_tone(4.0, 16000), 16000)
    out = tmp_path / "data"
    prepare([src], out, CFG, show_progress=False)
    done = next((out / "files").iterdir()) / "done.json"
    mtime = done.stat().st_mtime_ns
    audio_mtime = (done.parent / "audio.pcm").stat().st_mtime_ns
    m2 = prepare([src], out, CFG, show_progress=False)
    assert done.stat().st_mtime_ns == mtime
    assert (done.parent / "audio.pcm").stat().st_mtime_ns == audio_mtime
    assert len(m2["files"]) == 1

    bad = tmp_path / "bad"
    bad.mkdir()
    sf.write(bad / "silence.wav", np.zeros(16000 * 2, np.float32), 16000)
    with pytest.raises(AudioError, match="no usable audio .*silence.wav: .*silent"):
        prepare([bad], tmp_path / "nothing", CFG, show_progress=False)
    assert not (tmp_path / "nothing").exists()  # nothing of the failed call is left
    with pytest.raises(AudioError, match="no such file"):
        prepare([tmp_path / "missing"], tmp_path / "x", CFG, show_progress=False)
    with pytest.raises(AudioError, match="not a prepared dataset"):
        load_manifest(tmp_path)


def test_dataset_batches(tiny_dataset):
    ds = DDSPDataset(tiny_dataset, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["audio"].shape == (4, 16000) and batch["loudness_db"].shape == (4, 100)
    # held out: min(2 s, 20 % of 8 s) = 1.6 s per file -> one whole 1 s example each
    assert len(DDSPDataset(tiny_dataset, "val")) == 2
    with pytest.raises(ValueError, match="split"):
        DDSPDataset(tiny_dataset, "test")


@pytest.mark.skipif(not (SHARED_DATA / "train" / "flute.flac").exists(),
                    reason="../shared/data not present")
def test_prepare_real_recording_slice_matches_reference_pitch(tmp_path):
    y, sr = sf.read(SHARED_DATA / "train" / "flute.flac", dtype="float32", frames=16000 * 12)
    sf.write(tmp_path / "flute12.flac", y, sr)
    manifest = prepare([tmp_path / "flute12.flac"], tmp_path / "d", CFG, show_progress=False)
    entry = manifest["files"][0]
    fdir = tmp_path / "d" / "files" / entry["key"]
    f0 = np.load(fdir / "f0_hz.npy")
    conf = np.load(fdir / "confidence.npy")
    ref = np.loadtxt(SHARED_DATA / "train" / "flute.f0.csv", delimiter=",", skiprows=1)[: len(f0)]
    both = (ref[:, 2] > 0) & (conf >= 0.85)
    err = np.abs(1200 * np.log2(f0[both] / ref[both, 1]))
    assert both.mean() > 0.5
    assert np.median(err) < 20 and np.mean(err < 50) > 0.9
