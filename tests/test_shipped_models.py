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
        # the recipe's last stage is the run that was exported, and the card shows every stage
        recipe = train_config["recipe"]
        meta = json.loads((d / "config.json").read_text())
        assert recipe[-1]["steps"] == meta["training"]["steps"]
        for stage in recipe:
            assert stage["command"] in card
            if stage["command"].startswith("python scripts/train_model.py"):
                assert f"--steps {stage['steps']}" in stage["command"]


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
