"""prepare -> train -> export -> eval through the command line, and the eval metrics."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ddsp_synth.cli import main
from ddsp_synth.data import DDSPDataset
from ddsp_synth.evaluate import evaluate_batches
from ddsp_synth.model import load_model
from ddsp_synth.data import collate

from conftest import synth_tone


def test_export_carries_everything(exported):
    meta = json.loads((exported / "config.json").read_text())
    assert meta["training"]["steps"] == 20 and meta["training"]["loss_history"]
    assert meta["dataset_stats"]["pitch_midi_mean"] > 50
    assert meta["model"]["features"]["crepe_model"] == "tiny"


def test_eval_metrics_are_near_zero_on_the_models_own_output(exported, tiny_dataset):
    model, _ = load_model(exported)
    ds = DDSPDataset(tiny_dataset, "val")
    batch = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        own = model(batch["f0_hz"][..., None], batch["loudness_db"][..., None],
                    generator=torch.Generator().manual_seed(0))
    metrics = evaluate_batches(model, [{**batch, "audio": own}], seed=0)
    assert metrics["spectral_loss"] == 0.0
    assert metrics["loudness_l1_db"] < 1e-3
    assert metrics["f0_median_cents"] < 15 and metrics["voiced_frames"] > 50
    # ...and clearly not zero against a different signal
    other = evaluate_batches(model, [{**batch, "audio": torch.roll(own, 4000, 1)}], seed=0)
    assert other["spectral_loss"] > 1.0 and other["loudness_l1_db"] > 1.0


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
