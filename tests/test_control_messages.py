"""What ``control`` says when a training is interrupted, and when it is given an
instrument's training run instead of a controller."""

import importlib
import os
import signal

import numpy as np
import pytest
import soundfile as sf
from test_control import SR, _tone
from test_resume_options import _control, make_pairs

from ddsp_synth.cli import main
from ddsp_synth.train import list_checkpoints

control_train = importlib.import_module("ddsp_synth.control.train")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def test_control_train_interrupted_says_so_and_how_to_go_on(pairs, tmp_path, monkeypatch,
                                                            capsys):
    """Ctrl-C printed the normal summary, as if the run had ended; train says
    'interrupted ... continue with --resume' and exits 128 + the signal."""
    real = control_train.train_step

    def step_then_signal(run, stop):
        if run.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(run, stop)

    monkeypatch.setattr(control_train, "train_step", step_then_signal)
    run = tmp_path / "run"
    assert _control(pairs, run, "--steps", "100") == 128 + signal.SIGINT
    out, err = capsys.readouterr()
    checkpoint = list_checkpoints(run)[-1]
    assert checkpoint.name == "step-0000002"
    expected = f"interrupted at step 2; checkpoint {checkpoint}; continue with --resume"
    assert err.strip().splitlines() == [expected]
    assert "held-out rel_spec" not in out


def test_control_apply_names_an_instrument_run(exported, tmp_path, capsys):
    """An instrument's run (made by train) was called a controller's run with no controller
    yet, to be trained longer with --resume."""
    run = exported.parent / "run"
    wav = tmp_path / "in.wav"
    sf.write(wav, _tone(1.0, SR), SR)
    assert main(["control", "apply", str(run), str(wav), "-o", str(tmp_path / "q.wav")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "an instrument's training run (made by 'ddsp-synth train'), not a controller" in line
    assert f"ddsp-synth export {run} -o MODEL" in line and "transfer" in line and \
        "--resume" not in line
    assert not (tmp_path / "q.wav").exists()
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), ["in.wav"])
