"""Features: f0 and loudness on the frame grid, accuracy, block-wise analysis, the cache."""

import numpy as np
import pytest

from ddsp_synth.dsp.interpolation import n_frames_for
from ddsp_synth.data import PrepareConfig
from ddsp_synth.features import FeatureConfig, analyse, compute_features, features_in_blocks
from ddsp_synth.model import load_model
from ddsp_synth.transfer import transfer_audio

from conftest import synth_tone


def test_features_deterministic_smooth_and_accurate_on_a_tone():
    sr = 16000
    t = np.arange(2 * sr) / sr
    y = 0.4 * sum(np.sin(2 * np.pi * k * 330.0 * t) / k for k in range(1, 6))
    cfg = FeatureConfig()
    a = compute_features(y, cfg)
    b = compute_features(y, cfg)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    mid = slice(10, -10)
    err = 1200 * np.log2(a["f0_hz"][mid] / 330.0)
    assert np.max(np.abs(err)) < 10.0
    assert np.std(np.diff(err)) < 1.0  # no dither: frame-to-frame jitter well under a cent
    assert np.all(a["confidence"][mid] > 0.85)


@pytest.mark.parametrize("sr,hop", [(16000, 160), (22050, 220), (44100, 441), (48000, 480)])
def test_frame_grid_and_pitch_at_every_sample_rate(sr, hop):
    y = synth_tone(1.5, sr, 247.0, vibrato_cents=0.0)
    n_fft = 1024 * 2 ** round(np.log2(sr / 16000))
    cfg = FeatureConfig(sample_rate=sr, hop=hop, loudness_n_fft=n_fft)
    feats = compute_features(y[: len(y) - 7], cfg)
    n_frames = n_frames_for(len(y) - 7, hop)
    assert all(len(v) == n_frames for v in feats.values())
    voiced = feats["confidence"] > 0.5  # tiny is less sure of synthetic tones than of real ones
    assert voiced.mean() > 0.7
    err = 1200 * np.log2(feats["f0_hz"][voiced] / 247.0)
    assert np.median(np.abs(err)) < 10.0


def test_features_reject_bad_audio():
    with pytest.raises(ValueError, match="NaN"):
        compute_features(np.array([0.0, np.nan] * 800), FeatureConfig())
    with pytest.raises(ValueError, match="mono"):
        compute_features(np.zeros((2, 1600)), FeatureConfig())
    with pytest.raises(ValueError, match="crepe_model must be one of tiny, full"):
        compute_features(np.zeros(1600), FeatureConfig(crepe_model="huge"))


def test_blockwise_features_equal_whole_file():
    y = synth_tone(7.0, 16000, 180.0)
    cfg = PrepareConfig(block_seconds=2.0, context_seconds=1.0)
    blocks = features_in_blocks(y, cfg.features, cfg.block_seconds, cfg.context_seconds)
    whole = compute_features(y, cfg.features)
    np.testing.assert_allclose(blocks["loudness_db"], whole["loudness_db"], atol=1e-3)
    np.testing.assert_allclose(blocks["confidence"], whole["confidence"], atol=1e-4)
    np.testing.assert_allclose(blocks["f0_hz"], whole["f0_hz"], rtol=1e-5)


def test_features_are_cached_per_recording(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("DDSP_SYNTH_CACHE", str(tmp_path / "cache"))
    model, meta = load_model(exported)
    x = synth_tone(2.0, 16000, 262.0)
    first = analyse(x, model.config.features)
    entries = list((tmp_path / "cache" / "features").glob("*.npz"))
    assert len(entries) == 1
    calls = []
    import ddsp_synth.features as features

    real = features.features_in_blocks
    monkeypatch.setattr(features, "features_in_blocks",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = analyse(x, model.config.features)  # from the cache: no pitch tracking
    assert not calls and all(np.array_equal(first[k], again[k]) for k in first)
    other = analyse(x * 0.5, model.config.features)  # other samples, other entry
    assert calls and not np.array_equal(other["loudness_db"], first["loudness_db"])
    entries[0].write_bytes(b"damaged")  # a damaged entry is recomputed, not an error
    fixed = analyse(x, model.config.features)
    assert all(np.array_equal(first[k], fixed[k]) for k in first)
    out_a, _ = transfer_audio(model, meta, x)
    out_b, _ = transfer_audio(model, meta, x, cache=False)
    assert np.array_equal(out_a, out_b)


def test_block_progress_stops_at_the_bars_total():
    """prepare and eval count their bar in the files' seconds, rounded to 0.1 s; the blocks
    advance it by whole frames. The bar stops at its total instead of running past it (tqdm
    warned and showed a negative time left)."""
    import io
    import warnings

    from tqdm import tqdm

    audio = (0.3 * np.sin(2 * np.pi * 220.0 * np.arange(int(1.2345 * 16000)) / 16000)
             ).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tqdm(total=round(len(audio) / 16000, 1), file=io.StringIO()) as bar:
            features_in_blocks(audio, FeatureConfig(), progress=bar)
            assert bar.n == bar.total == 1.2
