"""Training: loss falls, exact resume (also after a kill), safe checkpoints, NaN guard, DDP."""

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ddsp_synth import losses as losses_mod
from ddsp_synth.decoder import DecoderConfig
from ddsp_synth.model import ModelConfig
from ddsp_synth.stages.synth import SynthConfig
from ddsp_synth.train import TrainConfig, TrainingError, list_checkpoints, train

# the module (``ddsp_synth.train`` as an attribute is the function)
train_mod = importlib.import_module("ddsp_synth.train.checkpoints")

SMALL = ModelConfig(synth=SynthConfig(reverb_s=0.25), decoder=DecoderConfig(hidden=48, mlp_layers=2))
FAST = dict(batch_size=4, val_every=0, audio_every=0, log_every=1, checkpoint_every=4,
            num_threads=1, learning_rate=3e-3, warmup_steps=5)


def _weights(run_dir):
    return load_file(str(list_checkpoints(Path(run_dir))[-1] / "model.safetensors"))


def _losses(run_dir):
    return [r["loss"] for r in map(json.loads, open(Path(run_dir) / "log.jsonl")) if "loss" in r]


def test_thirty_steps_loss_falls(tiny_dataset, tmp_path):
    summary = train(tiny_dataset, tmp_path / "run", SMALL, TrainConfig(steps=30, **FAST),
                    show_progress=False)
    losses = _losses(tmp_path / "run")
    assert summary["step"] == 30 and len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert (tmp_path / "run" / "tb").is_dir() and any((tmp_path / "run" / "tb").iterdir())
    assert len(list_checkpoints(tmp_path / "run")) == 3  # keep_checkpoints


def test_resume_equals_uninterrupted(tiny_dataset, tmp_path):
    train(tiny_dataset, tmp_path / "a", SMALL, TrainConfig(steps=10, **FAST), show_progress=False)
    train(tiny_dataset, tmp_path / "b", SMALL, TrainConfig(steps=6, **FAST), show_progress=False)
    train(tiny_dataset, tmp_path / "b", None, {"steps": 10}, resume=True, show_progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    np.testing.assert_array_equal(_losses(tmp_path / "a"), _losses(tmp_path / "b"))


def test_resume_after_sigterm_equals_uninterrupted(tiny_dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL.to_dict(), "train": {**FAST, "checkpoint_every": 1000}}))
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ddsp_synth", "train", str(tiny_dataset), "-o", str(run),
           "--config", str(cfg), "--quiet"]
    proc = subprocess.Popen(cmd + ["--steps", "1000"], stderr=subprocess.PIPE, text=True)
    log = run / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(_losses(run)) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "continue with --resume" in err
    stopped_at = int(list_checkpoints(run)[-1].name.split("-")[1])
    assert 3 <= stopped_at < 1000
    target = stopped_at + 4
    done = subprocess.run(cmd + ["--resume", "--steps", str(target)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    train(tiny_dataset, tmp_path / "ref", SMALL,
          TrainConfig(steps=target, **{**FAST, "checkpoint_every": 1000}), show_progress=False)
    wa, wb = _weights(tmp_path / "ref"), _weights(run)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_interrupted_mid_write_keeps_previous(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_dataset, run, SMALL, TrainConfig(steps=4, **FAST), show_progress=False)
    good = list_checkpoints(run)[-1]
    real_save = train_mod.save_checkpoint

    def crash_mid_write(run_dir, model, optimizer, step, extra, keep):
        tmp = Path(run_dir) / "checkpoints" / f"step-{step:07d}.tmp"
        tmp.mkdir(parents=True)
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(train_mod, "save_checkpoint", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_dataset, run, None, {"steps": 8}, resume=True, show_progress=False)
    assert list_checkpoints(run)[-1] == good
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    summary = train(tiny_dataset, run, None, {"steps": 8}, resume=True, show_progress=False)
    assert summary["step"] == 8


def test_nan_losses_are_skipped_then_stop_with_good_checkpoint(tiny_dataset, tmp_path,
                                                               monkeypatch):
    real_loss = losses_mod.multi_resolution_stft_loss
    calls = {"n": 0}

    def flaky_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] in (3, 4) or calls["n"] > 8 else loss

    monkeypatch.setattr(losses_mod, "multi_resolution_stft_loss", flaky_loss)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="NaN/inf for 20 steps in a row"):
        train(tiny_dataset, run, SMALL, TrainConfig(steps=50, **FAST), show_progress=False)
    events = [json.loads(line) for line in open(run / "log.jsonl")]
    assert sum("event" in e for e in events) == 22  # 2 isolated + 20 in a row
    steps_done = max(e["step"] for e in events if "loss" in e)
    assert steps_done == 6  # the two skipped steps did not count
    w = _weights(run)
    assert all(torch.isfinite(v).all() for v in w.values())


def test_train_refuses_existing_run_without_resume_or_force(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_dataset, run, SMALL, TrainConfig(steps=1, **FAST), show_progress=False)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(tiny_dataset, run, SMALL, TrainConfig(steps=1, **FAST), show_progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(tiny_dataset, tmp_path / "new", None, TrainConfig(steps=1), resume=True,
              show_progress=False)


def test_resume_refuses_another_dataset(tiny_dataset, tmp_path):
    """--resume takes its settings from the run; a dataset other than the run's was trained
    on as it came (a 22.05 kHz one crashed in the loss with a traceback)."""
    import soundfile as sf
    from conftest import synth_tone

    from ddsp_synth.data import PrepareConfig, prepare

    run = tmp_path / "run"
    train(tiny_dataset, run, SMALL, TrainConfig(steps=2, **FAST), show_progress=False)
    src = tmp_path / "other_audio"
    src.mkdir()
    sf.write(src / "tone.wav", synth_tone(8.0, 16000, 330.0, seed=7), 16000)
    prepare([src], tmp_path / "other", PrepareConfig(example_seconds=1.0, example_hop_seconds=0.5,
                                                     val_seconds=2.0), show_progress=False)
    with pytest.raises(TrainingError, match=f"{run} was trained on .* is another dataset"):
        train(tmp_path / "other", run, None, {"steps": 4}, resume=True, show_progress=False)
    moved = tmp_path / "moved"  # the same dataset somewhere else is the run's own
    shutil.copytree(tiny_dataset, moved)
    summary = train(moved, run, None, {"steps": 4}, resume=True, show_progress=False)
    assert summary["step"] == 4


def test_two_process_ddp_smoke(tiny_dataset, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun ships with torch"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL.to_dict(), "train": {**FAST, "batch_size": 2}}))
    run = tmp_path / "ddp"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "ddsp_synth", "train",
         str(tiny_dataset), "-o", str(run), "--config", str(cfg), "--steps", "4", "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(list_checkpoints(run)[-1].name.split("-")[1]) == 4
    assert len(_losses(run)) == 4  # only rank 0 logs


def test_init_from_exported_model(tiny_dataset, exported, tmp_path):
    from ddsp_synth.model import load_model

    model, _ = load_model(exported)
    train(tiny_dataset, tmp_path / "ft", None, TrainConfig(steps=1, **{**FAST, "learning_rate": 0.0}),
          show_progress=False, init_from=exported)
    w = _weights(tmp_path / "ft")
    ref = model.state_dict()
    assert all(torch.equal(w[k], ref[k]) for k in ref if not k.startswith("loudness_"))


def test_tensorboard_gets_validation_metrics_and_audio(tiny_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb_run"
    train(tiny_dataset, run, SMALL, TrainConfig(steps=4, **{**FAST, "val_every": 2,
                                                            "audio_every": 2, "val_examples": 2}),
          show_progress=False)
    acc = EventAccumulator(str(run / "tb"), size_guidance={"audio": 0, "scalars": 0})
    acc.Reload()
    scalars, audio = acc.Tags()["scalars"], acc.Tags()["audio"]
    for name in ("val/f0_l1_cents", "val/loudness_l1_db", "val/spectral_loss", "train/loss"):
        assert name in scalars, scalars
    # the starting point, then every validation
    assert [e.step for e in acc.Scalars("val/spectral_loss")] == [0, 2, 4]
    assert {"val/0/target", "val/0/resynthesis", "val/1/resynthesis"} <= set(audio), audio
    assert [e.step for e in acc.Audio("val/0/resynthesis")] == [0, 2, 4]  # the end once


def test_fine_tune_into_a_shorter_reverb_from_overrides(tiny_dataset, exported, tmp_path):
    from ddsp_synth.model import load_model
    from ddsp_synth.train import train_from_overrides

    source, _ = load_model(exported)
    summary = train_from_overrides(
        tiny_dataset, tmp_path / "short", {"model": {"synth": {"reverb_s": 0.1}},
                                           "train": {**FAST, "learning_rate": 0.0, "steps": 2}},
        init_from=exported, show_progress=False)
    assert summary["step"] == 2
    w = _weights(tmp_path / "short")
    assert w["synth.reverb.tail"].shape == (1, 1600)
    ref = source.state_dict()
    assert torch.equal(w["decoder.head.weight"], ref["decoder.head.weight"])  # lr 0: unchanged


def _val_steps(run_dir):
    return [r["step"] for r in map(json.loads, open(Path(run_dir) / "log.jsonl")) if "val" in r]


def test_a_time_budget_drives_warmup_validation_and_the_end(tiny_dataset, tmp_path):
    """train --max-minutes: it stops by the clock, its warm-up is at most 5 % of the steps
    the budget holds, it validates at the start, at least five times along the way and at
    the end, and it keeps the best validated weights, which export writes."""
    from ddsp_synth.train.checkpoints import export_run

    cfg = TrainConfig(**{**FAST, "steps": 100_000, "max_minutes": 0.25, "val_every": 10_000,
                         "warmup_steps": 1000, "val_examples": 2})
    summary = train(tiny_dataset, tmp_path / "run", SMALL, cfg, show_progress=False)
    assert summary["step"] < 100_000 and not summary["interrupted"]
    assert summary["warmup_steps"] <= max(1, 0.05 * summary["step"] * 1.5)
    val_steps = _val_steps(tmp_path / "run")
    assert val_steps[0] == 0 and val_steps[-1] == summary["step"] and len(val_steps) >= 6
    assert summary["val_first"] is not None and summary["best"] is not None
    best = summary["best"]
    assert best["val"]["spectral_loss"] == min(r["val"]["spectral_loss"] for r in map(
        json.loads, open(tmp_path / "run" / "log.jsonl")) if "val" in r)
    _, state = export_run(tmp_path / "run", tmp_path / "model")
    assert state["step"] == best["step"]
    exported = json.loads((tmp_path / "model" / "config.json").read_text())
    assert exported["training"]["validation"]["spectral_loss"] == pytest.approx(
        best["val"]["spectral_loss"])


def test_the_command_prints_before_and_after(tiny_dataset, tmp_path, capsys):
    from ddsp_synth.cli import main

    assert main(["train", str(tiny_dataset), "-o", str(tmp_path / "run"), "--steps", "6",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "before -> after:" in out and "best at step" in out
