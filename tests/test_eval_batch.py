"""eval on a folder with bad files measures the good ones (as transfer does), and a reader of
its JSON that stops early (``| head``) is no error."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ddsp_synth.cli import main
from ddsp_synth.model import available_models

from conftest import synth_tone

REPO = Path(__file__).resolve().parents[1]
MODEL = available_models().get("violin")
needs_model = pytest.mark.skipif(MODEL is None, reason="models/violin not present")
SR = 16000
BAD = ("broken.wav", "silent.wav", "truncated.wav")
METRICS = ("spectral_loss", "loudness_l1_db", "f0_l1_cents", "f0_median_cents",
           "f0_outlier_ratio", "voiced_frames", "seconds")


def _good(folder: Path) -> Path:
    folder.mkdir()
    for i, f0 in enumerate((330.0, 440.0, 523.0)):
        sf.write(folder / f"good{i}.wav", synth_tone(1.5, SR, f0, seed=i), SR)
    return folder


def _bad(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "broken.wav").write_bytes(b"not audio at all")
    sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(folder / "whole.wav", synth_tone(1.0, SR, 300.0), SR)
    whole = (folder / "whole.wav").read_bytes()
    (folder / "whole.wav").unlink()
    (folder / "truncated.wav").write_bytes(whole[:30])  # cut inside its header


@needs_model
def test_eval_folder_with_bad_files_reports_each_and_measures_the_good_ones(tmp_path, capsys):
    only_good = _good(tmp_path / "good")
    assert main(["eval", str(MODEL), str(only_good), "--quiet"]) == 0
    alone = json.loads(capsys.readouterr().out)

    mixed = tmp_path / "mixed"
    shutil.copytree(only_good, mixed)
    _bad(mixed)
    out = tmp_path / "ev"
    assert main(["eval", str(MODEL), str(mixed), "--quiet", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("ddsp-synth eval: error: ") for line in lines)
    assert [sum(name in line for line in lines) for name in BAD] == [1, 1, 1], lines
    got = json.loads(captured.out)
    assert got["examples"] == 3
    assert [Path(f["path"]).name for f in got["failed"]] == list(BAD)
    assert all(f["reason"] and not f["reason"].startswith(f["path"]) for f in got["failed"])
    # the good files measure as they do alone (a bad file does not disturb the pool)
    for key in METRICS:
        assert got[key] == pytest.approx(alone[key], rel=1e-6, abs=1e-9), key
    assert json.loads((out / "metrics.json").read_text()) == got
    assert sorted(p.name for p in out.iterdir()) == [
        "good0.wav", "good1.wav", "good2.wav", "metrics.json"]


@needs_model
def test_eval_folder_of_bad_files_only_exits_2_with_one_line_each(tmp_path, capsys):
    folder = tmp_path / "bad"
    _bad(folder)
    assert main(["eval", str(MODEL), str(folder), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("ddsp-synth eval: error: ") for line in lines)
    assert [sum(name in line for line in lines) for name in BAD] == [1, 1, 1], lines
    assert main(["eval", str(MODEL), str(folder / "broken.wav"), "--quiet"]) == 2  # one file
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"ddsp-synth eval: error: {folder / 'broken.wav'}: unreadable")


@needs_model
def test_eval_into_a_closed_pipe_is_quiet(tmp_path):
    """``eval ... | head``: the reader is gone before the JSON is written (here it never
    reads): no BrokenPipeError traceback, and eval's own exit status."""
    folder = _good(tmp_path / "good")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "ddsp_synth", "eval", str(MODEL),
                             str(folder / "good0.wav"), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert err == ""
