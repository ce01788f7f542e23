"""Evaluation metrics: zero on a model's own output, large on another signal; sources."""

import numpy as np
import soundfile as sf
import torch

from ddsp_synth.data import DDSPDataset, collate
from ddsp_synth.evaluate import evaluate_batches, evaluate_source
from ddsp_synth.model import load_model

from conftest import synth_tone


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


def test_evaluate_source_dataset_and_audio_files(exported, tiny_dataset, tmp_path):
    model, _ = load_model(exported)
    metrics, outputs = evaluate_source(model, tiny_dataset, "val", keep_outputs=True)
    assert metrics["examples"] == len(outputs) == 2
    assert [name for name, _ in outputs] == ["val-0000", "val-0001"]
    one, _ = evaluate_source(model, tiny_dataset, "val", max_examples=1)
    assert one["examples"] == 1
    sf.write(tmp_path / "a.wav", synth_tone(1.5, 22050, 220.0), 22050)
    files, outs = evaluate_source(model, tmp_path / "a.wav", keep_outputs=True)
    assert files["examples"] == 1 and outs[0][0] == "a"
    assert abs(len(outs[0][1]) - 1.5 * 16000) <= 160  # whole file, at the model's rate
    assert np.isfinite(files["f0_l1_cents"]) and files["voiced_frames"] > 50
