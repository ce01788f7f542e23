"""The five instruments in models/: they load, transfer real examples, match their cards."""

import json

import numpy as np
import pytest
import soundfile as sf

from ddsp_synth.cli import main
from ddsp_synth.features import FeatureConfig, compute_f0, compute_loudness
from ddsp_synth.model import available_models, load_model, models_dir

from conftest import SHARED_DATA

INSTRUMENTS = ["violin", "flute", "trumpet", "altosax", "cello"]
EXAMPLES = models_dir().parent / "examples"
pytestmark = pytest.mark.skipif(not available_models(),
                                reason="no models in models/ yet (scripts/train_model.py makes them)")


def test_all_five_instruments_ship_with_cards():
    shipped = available_models()
    for name in INSTRUMENTS:
        assert name in shipped, f"models/{name} missing"
        d = shipped[name]
        assert (d / "model.safetensors").stat().st_size < 10 * 1024 * 1024
        card = (d / "MODEL_CARD.md").read_text()
        assert "## Reproduce" in card and "Held-out part of the training recording" in card
        # unseen performances: three, and the card's mean is eval.json's
        unseen = json.loads((d / "eval.json").read_text())["unseen"]
        assert len(unseen["tiny"]) == 3 and "## Unseen performances" in card
        assert f"**{unseen['mean']['f0_l1_cents']:.1f}**" in card
        assert f"**{unseen['mean']['loudness_l1_db']:.2f}**" in card
        train_config = json.loads((d / "train_config.json").read_text())
        assert train_config["train"]["batch_size"] > 0
        # the recipe's last training stage is the run that was exported, a stage without
        # training sets how the room is played, and the card shows every stage
        recipe = train_config["recipe"]
        meta = json.loads((d / "config.json").read_text())
        trained = [stage for stage in recipe if stage["steps"] > 0]
        assert trained[-1]["steps"] == meta["training"]["steps"]
        for stage in recipe:
            assert stage["command"] in card
            if stage in trained and stage["command"].startswith("python scripts/train_model.py"):
                assert f"--steps {stage['steps']}" in stage["command"]
            elif stage not in trained:
                assert stage["command"].endswith(
                    f"--room-phase {meta['model']['synth']['reverb_phase']}")


@pytest.mark.parametrize("name", INSTRUMENTS)
def test_transfer_example_follows_pitch_and_loudness(name, tmp_path):
    src = EXAMPLES / "singing_scale.flac"
    out = tmp_path / f"{name}.wav"
    assert main(["transfer", str(src), "--model", name, "-o", str(out), "--quiet",
                 "--pitch-shift", "0"]) == 0
    y, sr = sf.read(out, dtype="float32")
    model, meta = load_model(models_dir() / name)
    x, _ = sf.read(src, dtype="float32")
    assert sr == 16000 and len(y) == len(x)
    fc = FeatureConfig()
    f0_in, conf_in = compute_f0(x, fc)
    f0_out, _ = compute_f0(y, fc)
    voiced = conf_in >= 0.85
    # auto-adjust shifts by whole octaves: recover the shift it applied from the stats
    midi_in = 69 + 12 * np.log2(f0_in[voiced] / 440)
    octaves = int(np.round((meta["dataset_stats"]["pitch_midi_mean"] - midi_in.mean()) / 12))
    err = 1200 * np.log2(f0_out[voiced] / (f0_in[voiced] * 2.0 ** octaves))
    assert voiced.sum() > 200 and np.median(np.abs(err)) < 30, np.median(np.abs(err))
    # loudness follows on the notes: louder input frames give louder output frames
    ld_in, ld_out = compute_loudness(x, fc), compute_loudness(y, fc)
    assert np.corrcoef(ld_in[voiced], ld_out[voiced])[0, 1] > 0.6


@pytest.mark.skipif(not (SHARED_DATA / "train" / "violin.flac").exists(),
                    reason="../shared/data not present")
@pytest.mark.parametrize("name", INSTRUMENTS)
def test_card_figures_match_eval_on_held_out_part(name, tmp_path, capsys):
    """The card's figures are what `ddsp-synth prepare` + `ddsp-synth eval` give today."""
    card = json.loads((models_dir() / name / "eval.json").read_text())["tiny"]
    data = tmp_path / "data"
    assert main(["prepare", str(SHARED_DATA / "train" / f"{name}.flac"), "-o", str(data),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(models_dir() / name), str(data)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["examples"] == card["examples"] == 5
    assert abs(got["loudness_l1_db"] - card["loudness_l1_db"]) < 0.15
    assert abs(got["f0_l1_cents"] - card["f0_l1_cents"]) < 3.0
    assert abs(got["spectral_loss"] - card["spectral_loss"]) < 0.2


# ----------------------------------------------------------------------------- the sixth
FX_MODEL = "tenorsax_amp"
needs_fx_model = pytest.mark.skipif(FX_MODEL not in available_models(),
                                    reason=f"models/{FX_MODEL} not present")


@needs_fx_model
def test_the_instrument_with_effect_stages_ships_with_card_chain_and_recipe():
    from ddsp_synth.model import shipped_models
    from ddsp_synth.rack import read_preset

    d = models_dir() / FX_MODEL
    assert FX_MODEL in shipped_models()
    assert (d / "model.safetensors").stat().st_size < 10 * 1024 * 1024
    recipe = json.loads((d / "data_recipe.json").read_text())
    g = recipe["generator"]
    assert 0 <= g["program"] < 128 and g["lo"] < g["hi"]
    assert recipe["train"]["seeds"] and recipe["heldout"]["seeds"]
    assert not set(recipe["train"]["seeds"]) & set(recipe["heldout"]["seeds"])
    # the chain is a preset in match's format, which the rack reads
    preset = read_preset(d / "data_recipe.json", sample_rate=16000)
    assert preset is not None
    # the model holds that chain, rendered by the twins (no pedalboard needed, exportable)
    model, meta = load_model(d)
    devices = [e for e in meta["chain"] if "device" in e]
    assert [e["device"] for e in devices] == [c["device"] for c in recipe["chain"]]
    assert all(e["method"] == "autodiff" for e in devices)
    assert model.effects is not None
    card = (d / "MODEL_CARD.md").read_text()
    assert "## Chain" in card and "## Reproduce" in card
    for e in devices:
        assert f"| {e['device']} | autodiff |" in card
    ev = json.loads((d / "eval.json").read_text())
    unseen = ev["unseen"]
    assert len(unseen["tiny"]) == len(recipe["heldout"]["seeds"]) == 3
    assert f"**{unseen['mean']['f0_l1_cents']:.1f}**" in card
    assert f"**{unseen['mean']['loudness_l1_db']:.2f}**" in card
    train_config = json.loads((d / "train_config.json").read_text())
    for stage in train_config["recipe"]:
        assert stage["command"] in card


@needs_fx_model
def test_the_instrument_with_effect_stages_transfers_and_streams_as_offline(tmp_path):
    import torch

    from ddsp_synth.streaming.step import StreamingSynth

    src = EXAMPLES / "singing_scale.flac"
    out = tmp_path / "sax.wav"
    assert main(["transfer", str(src), "--model", FX_MODEL, "-o", str(out), "--quiet"]) == 0
    y, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and np.isfinite(y).all() and np.abs(y).max() > 1e-3
    # the streaming step carries the effect stages' state: a stream equals offline
    model, _ = load_model(models_dir() / FX_MODEL)
    n = 150
    t = np.arange(n) / 100.0
    f0 = (180.0 * 2 ** (0.2 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    loud = (-30.0 + 12.0 * np.sin(2 * np.pi * 0.4 * t)).astype(np.float32)
    noise = np.random.default_rng(0).uniform(-1, 1, n * 160).astype(np.float32)
    with torch.no_grad():
        params, _ = model.controls(torch.from_numpy(f0)[None, :, None],
                                   torch.from_numpy(loud)[None, :, None])
        want, _ = model.synth(None, params, noise=torch.from_numpy(noise)[None])
    s = StreamingSynth(model, engine="torch")
    got = np.concatenate([s.process_frames(f0, loud, noise), s.flush(noise[-160:])])[160:]
    np.testing.assert_allclose(got, want[0].numpy(), atol=5e-5, rtol=0)
