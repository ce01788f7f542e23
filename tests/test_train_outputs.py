"""What a training run writes: checkpoints with the usual file permissions, an exported
model with its loss history whichever weights it takes, and a word at the start when the
dataset holds nothing to validate on."""

import json
import os
import stat
from pathlib import Path

import pytest
import soundfile as sf
from test_train import FAST, SMALL

from ddsp_synth.cli import main
from ddsp_synth.train import list_checkpoints, summarize_history


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def validated_run(tiny_dataset, tmp_path_factory):
    """4 steps validated every 2, then 2 more unvalidated: the best weights are an earlier
    step than the last."""
    root = tmp_path_factory.mktemp("validated")
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL.to_dict(),
                               "train": {**FAST, "val_every": 2, "val_examples": 2}}))
    argv = ["train", str(tiny_dataset), "-o", str(root / "run"), "--quiet"]
    assert main(argv + ["--config", str(cfg), "--steps", "4"]) == 0
    assert main(argv + ["--resume", "--steps", "6", "--val-every", "0"]) == 0
    return root / "run"


def _logged(run: Path, up_to: int) -> list:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [[r["step"], round(r["wall_s"], 2), r["loss"]] for r in rows
            if "loss" in r and r["step"] <= up_to]


def test_checkpoint_weights_get_the_usual_permissions(validated_run):
    """model.safetensors and optimizer.safetensors were 0600 (safetensors' own mode) where
    state.json and exported models are 0666 less the umask."""
    expected = 0o666 & ~_umask()
    files = [f for ck in [*list_checkpoints(validated_run), validated_run / "checkpoints" / "best"]
             for f in ck.iterdir()]
    assert {f.name for f in files} == {"model.safetensors", "optimizer.safetensors",
                                       "state.json"}
    modes = {str(f): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(expected)}, modes


@pytest.mark.parametrize("last", [False, True])
def test_export_carries_the_loss_history_up_to_its_step(validated_run, tmp_path, last):
    """The best weights' export wrote "loss_history": [] (their state kept no history)."""
    argv = ["export", str(validated_run), "-o", str(tmp_path / "model")]
    assert main(argv + ["--last"] * last) == 0
    training = json.loads((tmp_path / "model" / "config.json").read_text())["training"]
    step = training["steps"]
    best = json.loads((validated_run / "checkpoints" / "best" / "state.json").read_text())
    assert step == (6 if last else best["step"])
    history = training["loss_history"]
    assert history == summarize_history(_logged(validated_run, step))
    assert len(history) == min(12, step) and history[-1][0] == step
    # (the fixture's resume --val-every 0 keeps the best weights at step 4)
    assert 0 < best["step"] < 6, "the test needs best weights from the middle of the run"
    mode = stat.S_IMODE((tmp_path / "model" / "model.safetensors").stat().st_mode)
    assert mode == 0o666 & ~_umask()


def test_train_says_when_the_data_has_no_validation_examples(tmp_path, capsys):
    """Files under five examples long keep nothing for validation: train said nothing, and
    ran without validation, best weights or audio."""
    from conftest import synth_tone

    from ddsp_synth.data import PrepareConfig, prepare

    for i, f0 in enumerate((196.0, 262.0)):
        sf.write(tmp_path / f"tone{i}.wav", synth_tone(6.0, 16000, f0, seed=i), 16000)
    data = tmp_path / "data"
    prepare([tmp_path], data, PrepareConfig(example_seconds=1.5, example_hop_seconds=0.5),
            show_progress=False)
    assert not json.loads((data / "manifest.json").read_text())["examples"]["val"]
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL.to_dict(), "train": {**FAST, "val_every": 1}}))
    run = tmp_path / "run"
    assert main(["train", str(data), "-o", str(run), "--config", str(cfg), "--steps", "2",
                 "--quiet"]) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{data} has no validation examples")
    for words in ("--val-every is ignored", "no validation metrics or audio",
                  "export writes the last", "whole 1.5 s example", "files of 7.5 s or more",
                  "--example-seconds"):
        assert words in line, (words, line)
    assert not (run / "checkpoints" / "best").exists()
