"""The model and its file: sizes, sample rates, bit-identical round trip, damaged files."""

import json

import pytest
import torch

from ddsp_synth.model import (DDSPModel, ModelConfig, ModelFileError, load_model,
                              read_model_config, save_model)

STATS = {"loudness_db_mean": -35.0, "loudness_db_std": 12.0}


def _inputs(n_frames=50, batch=2):
    g = torch.Generator().manual_seed(0)
    f0 = 200 + 100 * torch.rand(batch, n_frames, 1, generator=g)
    loud = -40 + 10 * torch.rand(batch, n_frames, 1, generator=g)
    return f0, loud


def _render(model, f0, loud):
    with torch.no_grad():
        return model(f0, loud, generator=torch.Generator().manual_seed(7))


def test_default_model_size_and_output():
    model = DDSPModel(ModelConfig())
    assert 1_000_000 < model.n_parameters() < 2_000_000  # reported in the README
    f0, loud = _inputs()
    y = _render(model, f0, loud)
    assert y.shape == (2, 50 * 160) and torch.isfinite(y).all()


@pytest.mark.parametrize("sr", [16000, 22050, 44100, 48000])
def test_sample_rates_scale_the_config(sr):
    cfg = ModelConfig.for_sample_rate(sr)
    assert cfg.synth.sample_rate == cfg.features.sample_rate == sr
    assert abs(sr / cfg.synth.hop - 100) < 0.5
    assert cfg.synth.n_noise_bands == round(64 * sr / 16000) + 1
    assert max(cfg.loss.fft_sizes) >= 2048 * (sr // 16000)
    model = DDSPModel(cfg)
    f0, loud = _inputs(10, 1)
    assert _render(model, f0, loud).shape == (1, 10 * cfg.synth.hop)


def test_export_load_render_is_bit_identical(tmp_path):
    model = DDSPModel(ModelConfig(), **{"loudness_mean_db": -35.0, "loudness_std_db": 12.0})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(model, tmp_path / "m", STATS, {"steps": 3})
    loaded, meta = load_model(tmp_path / "m")
    f0, loud = _inputs()
    assert torch.equal(_render(model, f0, loud), _render(loaded, f0, loud))
    assert meta["sample_rate"] == 16000 and meta["pitch_model"] == "crepe-tiny"
    assert meta["dataset_stats"] == STATS and meta["training"] == {"steps": 3}
    assert meta["n_parameters"] == model.n_parameters()
    with pytest.raises(ModelFileError, match="exists; pass --force"):
        save_model(model, tmp_path / "m", STATS)


def test_damaged_model_files_give_clear_errors(tmp_path):
    model = DDSPModel(ModelConfig())
    good = tmp_path / "good"
    save_model(model, good, STATS)
    weights = (good / "model.safetensors").read_bytes()
    config = json.loads((good / "config.json").read_text())

    def variant(name, weights_bytes=weights, config_obj=config, drop=None):
        d = tmp_path / name
        d.mkdir()
        if drop != "model.safetensors":
            (d / "model.safetensors").write_bytes(weights_bytes)
        if drop != "config.json":
            (d / "config.json").write_text(config_obj if isinstance(config_obj, str)
                                           else json.dumps(config_obj))
        return d

    cases = [
        (variant("truncated", weights[: len(weights) // 2]), "damaged or truncated"),
        (variant("noweights", drop="model.safetensors"), "missing model.safetensors"),
        (variant("noconfig", drop="config.json"), "missing config.json"),
        (variant("badjson", config_obj="{not json"), "damaged JSON"),
        (variant("version", config_obj={**config, "format_version": 99}), "format version 99"),
        (variant("shape", config_obj={**config, "model": {**config["model"], "synth": {
            **config["model"]["synth"], "n_harmonics": 60}}}), "has shape"),
        (tmp_path / "absent", "no such model folder"),
        (variant("rate_text", config_obj={**config, "sample_rate": "abc"}),
         "its description says sample_rate 'abc', its model settings 16000"),
        (variant("rate_other", config_obj={**config, "sample_rate": 48000, "hop": 480}),
         "its description says sample_rate 48000"),
    ]
    for path, message in cases:
        with pytest.raises(ModelFileError, match=message):
            load_model(path)
    assert read_model_config(good)["format_version"] == 1


def test_z_encoder_variant_trains_end_to_end():
    cfg = ModelConfig.for_sample_rate(16000, z_dims=8, hidden=32)
    model = DDSPModel(cfg)
    f0, loud = _inputs(20, 2)
    audio = torch.randn(2, 20 * 160) * 0.1
    y = model(f0, loud, audio=audio)
    y.square().mean().backward()
    assert model.encoder.gru.weight_ih_l0.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs the input audio"):
        model(f0, loud)


def test_copy_weights_cuts_or_pads_the_reverb_and_refuses_other_shapes():
    from ddsp_synth.model import copy_weights
    from ddsp_synth.stages.synth import SynthConfig

    src = DDSPModel(ModelConfig(synth=SynthConfig(reverb_s=0.5)), -30.0, 10.0)
    short = DDSPModel(ModelConfig(synth=SynthConfig(reverb_s=0.2)), -20.0, 5.0)
    copy_weights(src, short)
    a, b = src.state_dict(), short.state_dict()
    assert torch.equal(a["decoder.head.weight"], b["decoder.head.weight"])
    assert float(b["loudness_mean_db"]) == -20.0  # normalisation stays the target's
    cut = b["synth.reverb.tail"]
    n, fade = cut.shape[1], 160  # 10 ms at 16 kHz
    assert torch.equal(cut[:, : n - fade], a["synth.reverb.tail"][:, : n - fade])
    assert float(cut[0, -1]) == 0.0 and abs(float(cut[0, n - fade])) <= abs(float(a["synth.reverb.tail"][0, n - fade]))
    long = DDSPModel(ModelConfig(synth=SynthConfig(reverb_s=0.8)))
    copy_weights(src, long)
    padded = long.state_dict()["synth.reverb.tail"]
    assert torch.equal(padded[:, :8000], a["synth.reverb.tail"]) and not padded[:, 8000:].any()
    wide = DDSPModel(ModelConfig(decoder=ModelConfig().decoder.__class__(hidden=64)))
    with pytest.raises(ModelFileError, match="decoder"):
        copy_weights(src, wide)
