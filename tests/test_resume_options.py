"""--resume keeps a run's own settings: its limits (step count, time budget) unless new ones
are given, which are said and kept; any other setting given with another value is refused in
one line (the same value is fine). Both trainings: ``train`` and ``control train``."""

import importlib
import json
import os
import signal

import numpy as np
import pytest
import soundfile as sf
from test_control import SR, _tone
from test_train import FAST, SMALL

from ddsp_synth.cli import main
from ddsp_synth.train import list_checkpoints

loop = importlib.import_module("ddsp_synth.train.loop")
control_train = importlib.import_module("ddsp_synth.control.train")


def _last_step(run):
    return int(list_checkpoints(run)[-1].name.split("-")[1])


def _interrupt_at(monkeypatch, step: int, limit: int):
    """train_step sends SIGINT to this process during step ``step`` (as Ctrl-C does; 0:
    never), and fails past ``limit`` (a resume that forgot its run's step count would go on
    to the default 20000)."""
    real = loop.train_step

    def step_then_signal(run, batch, stop):
        assert run.step < limit, f"ran past the run's {limit} steps"
        if run.step + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real(run, batch, stop)

    monkeypatch.setattr(loop, "train_step", step_then_signal)


@pytest.fixture()
def cfg(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model": SMALL.to_dict(), "train": FAST}))
    return path


def _train(data, run, cfg, *extra):
    return main(["train", str(data), "-o", str(run), "--config", str(cfg), "--quiet", *extra])


def test_train_resumed_without_steps_keeps_the_run_s_step_count(tiny_dataset, tmp_path, cfg,
                                                                monkeypatch, capsys):
    """--steps 6, Ctrl-C at step 3, then --resume alone: it trains to 6 (it went on to the
    default 20000 steps)."""
    run = tmp_path / "run"
    _interrupt_at(monkeypatch, 3, limit=6)
    assert _train(tiny_dataset, run, cfg, "--steps", "6") == 128 + signal.SIGINT
    assert "interrupted at step 3" in capsys.readouterr().err
    assert _last_step(run) == 3
    _interrupt_at(monkeypatch, 0, limit=6)
    assert main(["train", str(tiny_dataset), "-o", str(run), "--resume", "--quiet"]) == 0
    assert _last_step(run) == 6
    assert "resuming with" not in capsys.readouterr().err  # nothing changed


def test_train_resumed_with_new_steps_says_so_and_keeps_them(tiny_dataset, tmp_path, cfg,
                                                             monkeypatch, capsys):
    run = tmp_path / "run"
    _interrupt_at(monkeypatch, 0, limit=4)
    assert _train(tiny_dataset, run, cfg, "--steps", "2", "--max-minutes", "5") == 0
    capsys.readouterr()
    assert main(["train", str(tiny_dataset), "-o", str(run), "--resume", "--quiet",
                 "--steps", "4", "--checkpoint-every", "1"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{run}: resuming with steps 4 (the run's: 2); checkpoint_every 1 "
                             "(the run's: 4)")
    assert "its limits now: 4 steps, 5 min" in err[0]
    assert _last_step(run) == 4
    assert [c.name for c in list_checkpoints(run)] == ["step-0000002", "step-0000003",
                                                       "step-0000004"]
    kept = json.loads((run / "run.json").read_text())["train"]
    assert kept["steps"] == 4 and kept["max_minutes"] == 5 and kept["checkpoint_every"] == 1
    # the new limit is the run's own now: a plain --resume has nothing left to do
    assert main(["train", str(tiny_dataset), "-o", str(run), "--resume", "--quiet"]) == 0
    assert _last_step(run) == 4


@pytest.mark.parametrize("extra, named", [
    (["--batch-size", "2"], "batch_size 2 (the run's: 4)"),
    (["--learning-rate", "0.01"], "learning_rate 0.01 (the run's: 0.003)"),
    (["--seed", "5"], "seed 5 (the run's: 0)"),
    (["--precision", "bf16"], "precision bf16 (the run's: fp32)"),
    (["--init-from", "MODEL"], "init_from MODEL (the run's: none, it started from scratch)"),
    (["--config", "OTHER"], "model.decoder.hidden 32 (the run's: 48)"),
])
def test_train_resume_refuses_another_setting_in_one_line(tiny_dataset, exported, tmp_path,
                                                          cfg, capsys, extra, named):
    run = tmp_path / "run"
    assert _train(tiny_dataset, run, cfg, "--steps", "2") == 0
    before = (run / "run.json").read_text()
    other = tmp_path / "other.json"
    model = SMALL.to_dict()
    model["decoder"]["hidden"] = 32
    other.write_text(json.dumps({"model": model, "train": FAST}))
    extra = [str(exported) if a == "MODEL" else str(other) if a == "OTHER" else a
             for a in extra]
    named = named.replace("MODEL", str(exported))
    capsys.readouterr()
    assert main(["train", str(tiny_dataset), "-o", str(run), "--resume", "--quiet", "--steps",
                 "3", *extra]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ddsp-synth train: error: ") and "--resume continues the run" in line
    assert named in line, line
    assert _last_step(run) == 2 and (run / "run.json").read_text() == before


def test_train_resume_accepts_the_run_s_own_settings(tiny_dataset, tmp_path, cfg, capsys):
    run = tmp_path / "run"
    assert _train(tiny_dataset, run, cfg, "--steps", "2", "--seed", "3") == 0
    capsys.readouterr()
    assert _train(tiny_dataset, run, cfg, "--resume", "--steps", "3", "--batch-size", "4",
                  "--learning-rate", "0.003", "--seed", "3") == 0
    assert _last_step(run) == 3


# ----------------------------------------------------------------------------- control train
def make_pairs(root):
    """Three 1 s pairs in ``root``/in and ``root``/out, the target 6 dB louder."""
    for d in ("in", "out"):
        (root / d).mkdir()
    for i in range(3):
        x = _tone(1.0, f0=150.0 + 60 * i, seed=i, level=0.2)
        sf.write(root / "in" / f"take{i}.wav", x, SR, subtype="FLOAT")
        sf.write(root / "out" / f"take{i}.wav", 2 * x, SR, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def _control(pairs, run, *extra):
    return main(["control", "train", "--chain", "gain", "--pairs", str(pairs / "in"),
                 str(pairs / "out"), "-o", str(run), "--quiet", "--segment-seconds", "0.25",
                 "--workers", "1", "--batch-size", "2", *extra])


def _record_limits(monkeypatch) -> list:
    """The (steps, max_minutes) each control training starts its schedule with."""
    seen = []

    class Recorded(control_train.Schedule):
        def __init__(self, run, show):
            seen.append((run.config.steps, run.config.max_minutes))
            assert run.config.steps < 10**6, "the run's step count was forgotten"
            super().__init__(run, show)

    monkeypatch.setattr(control_train, "Schedule", Recorded)
    return seen


def test_control_train_resume_keeps_the_run_s_time_budget(pairs, tmp_path, monkeypatch,
                                                          capsys):
    """A run started with --max-minutes 1 and resumed without it got 30 minutes (and with
    --steps alone, no time limit)."""
    run = tmp_path / "run"
    seen = _record_limits(monkeypatch)
    assert _control(pairs, run, "--steps", "2", "--max-minutes", "1") == 0
    capsys.readouterr()
    assert main(["control", "train", "-o", str(run), "--resume", "--quiet"]) == 0
    assert "resuming with" not in capsys.readouterr().err
    assert main(["control", "train", "-o", str(run), "--resume", "--quiet", "--steps",
                 "3"]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "resuming" in x]
    assert line.startswith(f"{run}: resuming with steps 3 (the run's: 2)") and \
        "its limits now: 3 steps, 1 min" in line, line
    assert seen == [(2, 1.0), (2, 1.0), (3, 1.0)]
    assert _last_step(run) == 3
    assert json.loads((run / "run.json").read_text())["train"]["steps"] == 3


def test_control_train_resume_refuses_another_seed(pairs, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _record_limits(monkeypatch)
    assert _control(pairs, run, "--steps", "1") == 0
    capsys.readouterr()
    assert main(["control", "train", "-o", str(run), "--resume", "--quiet", "--seed",
                 "4"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--seed (the run's: 0)" in line
    assert main(["control", "train", "-o", str(run), "--resume", "--quiet", "--seed", "0",
                 "--steps", "2"]) == 0
    assert _last_step(run) == 2
    np.testing.assert_equal(json.loads((run / "run.json").read_text())["train"]["seed"], 0)
