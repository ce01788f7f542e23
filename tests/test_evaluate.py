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


def test_eval_with_the_runs_seed_repeats_trainings_validation(tiny_dataset, tmp_path):
    """config.json's validation is the run's seed on its first val_examples examples; eval
    --seed repeats it to the last digit (another seed is another noise draw)."""
    import json

    from ddsp_synth.cli import main
    from test_train import FAST, SMALL

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL.to_dict(),
                               "train": dict(FAST, val_every=3, seed=7)}))
    assert main(["train", str(tiny_dataset), "-o", str(tmp_path / "run"), "--config", str(cfg),
                 "--steps", "3", "--quiet"]) == 0
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "model")]) == 0
    training = json.loads((tmp_path / "model" / "config.json").read_text())["training"]
    n = training["train_config"]["val_examples"]
    model, _ = load_model(tmp_path / "model")
    again, _ = evaluate_source(model, tiny_dataset, "val", max_examples=n, seed=7)
    for key in ("spectral_loss", "loudness_l1_db", "f0_l1_cents"):
        assert again[key] == training["validation"][key], key
    other, _ = evaluate_source(model, tiny_dataset, "val", max_examples=n, seed=8)
    assert other["spectral_loss"] != training["validation"]["spectral_loss"]


def test_midi_truth_leaves_note_edges_out_and_truth_metrics_count_harmonic_errors(tmp_path):
    from ddsp_synth.evaluate import midi_truth, truth_metrics

    t = np.arange(300) / 100
    f0 = np.where((t >= 0.5) & (t < 2.5), 80.0, 0.0)
    np.savetxt(tmp_path / "x.f0.csv", np.c_[t, f0, f0 > 0], delimiter=",",
               header="time_s,f0_hz,voiced", comments="")
    (tmp_path / "x.notes.csv").write_text("start_s,end_s,midi_pitch,velocity,segment\n"
                                          "0.5,2.5,40,100,scale\n")
    assert midi_truth(tmp_path / "y.flac", 300) is None  # no sidecars
    f0_true, keep = midi_truth(tmp_path / "x.flac", 300)
    assert np.array_equal(np.nonzero(keep)[0], np.arange(55, 248))  # +50 ms, -30 ms
    est = np.full(300, 80.0)
    est[60:80] = 240.0  # 20 frames read at 3x
    est[100:110] = 160.0  # 10 frames at 2x
    est[120:125] = 81.0  # 22 cents: not off
    m = truth_metrics(est, f0_true, keep)
    n = keep.sum()
    assert set(m) == {"all", "below_100"} and m["all"]["frames"] == n
    assert m["all"]["x3"] == 20 / n and m["all"]["x2"] == 10 / n and m["all"]["off_50c"] == 30 / n
    assert m["all"]["half"] == 0.0 and m["all"]["median_cents"] == 0.0


def test_eval_progress_counts_every_analysis_pass(exported):
    """The bar's total is the seconds of audio each analysis pass reads; the passes must
    advance it by exactly that, so its ETA is the work left."""
    from ddsp_synth.evaluate import analysis_passes, evaluate_audio

    class Count:
        n = 0.0

        def update(self, seconds):
            self.n += seconds

    model, _ = load_model(exported)
    sr = model.config.synth.sample_rate
    audio = synth_tone(2.5, sr, 220.0)
    seconds = len(audio) / sr
    bar = Count()
    evaluate_audio(model, audio, progress=bar)
    assert analysis_passes(model, None) == analysis_passes(model, "tiny") == 2
    assert analysis_passes(model, "full") == 3  # the ruler reads the input again
    assert abs(bar.n - 2 * seconds) < 2 * model.config.synth.hop / sr
