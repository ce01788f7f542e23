"""prepare stopped by a signal keeps the files it finished, and the same command continues.

The command runs in a subprocess; the signal is sent once the first file's done.json exists
(or, for a first run, once the first file's folder does) and the second file is being
prepared.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

from ddsp_synth.cli import main
from ddsp_synth.data import PrepareConfig, prepare

from conftest import synth_tone

REPO = Path(__file__).resolve().parents[1]
SR = 16000
STOPPED = ("ddsp-synth prepare: interrupted: {} of {} files prepared; run the same command "
           "again to continue")
ARGS = ("--example-seconds", "1", "--val-seconds", "1", "--quiet")
# one thread (2 shared cores); the caches of conftest's DDSP_SYNTH_CACHE
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
       "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _takes(folder: Path, seconds: dict[str, float]) -> Path:
    folder.mkdir()
    for i, (name, s) in enumerate(seconds.items()):
        sf.write(folder / f"{name}.wav", synth_tone(s, SR, 200.0 + 50 * i, seed=i), SR)
    return folder


def _default_signals():
    """As from a terminal: a background job's shell may have set SIGINT to ignored, and a
    child inherits that (prepare leaves an ignored signal ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _interrupt(src: Path, out: Path, sig: int, ready) -> tuple[int, str]:
    """Run prepare, send ``sig`` once ``ready()``; returns (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "ddsp_synth", "prepare", str(src), "-o",
                             str(out), *ARGS], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    deadline = time.time() + 180
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"prepare ended before the signal: {proc.communicate()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("prepare made no progress")
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _folders(out: Path, stem: str) -> list[Path]:
    return sorted((out / "files").glob(f"{stem}-*"))


def test_sigint_keeps_finished_files_and_the_rerun_skips_them(tmp_path):
    src = _takes(tmp_path / "takes", {"a": 3.0, "b": 20.0, "c": 3.0})
    out = tmp_path / "data"

    def second_file_started():
        return any(_folders(out, "b")) and any((out / "files").glob("a-*/done.json"))

    status, err = _interrupt(src, out, signal.SIGINT, second_file_started)
    assert status == 130, err
    assert err.strip().splitlines() == [STOPPED.format(1, 3)], err
    (kept,) = (out / "files").iterdir()  # the finished file stays, the partial one is gone
    assert kept.name.startswith("a-")
    assert sorted(p.name for p in kept.iterdir()) == [
        "audio.pcm", "confidence.npy", "done.json", "f0_hz.npy", "loudness_db.npy"]
    assert not list(out.rglob("*.tmp")) and not (out / "manifest.json").exists()
    with_mtimes = {p: p.stat().st_mtime_ns for p in kept.iterdir()}

    assert main(["train", str(out), "-o", str(tmp_path / "run"), "--quiet"]) == 2  # no manifest

    assert main(["prepare", str(src), "-o", str(out), *ARGS]) == 0  # the same command
    assert {p: p.stat().st_mtime_ns for p in kept.iterdir()} == with_mtimes  # not redone
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(e["source"]).name for e in manifest["files"]] == ["a.wav", "b.wav", "c.wav"]
    assert len(list((out / "files").glob("*/done.json"))) == 3


def test_sigterm_before_any_file_finished_leaves_no_dataset_folder(tmp_path):
    src = _takes(tmp_path / "takes", {"b": 20.0})
    out = tmp_path / "data"
    status, err = _interrupt(src, out, signal.SIGTERM, lambda: any(_folders(out, "b")))
    assert status == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == [STOPPED.format(0, 1)], err
    assert not out.exists()


def test_a_rerun_splits_reused_files_by_its_own_settings(tmp_path):
    """A file's folder is keyed by the feature settings alone: a run with another
    --val-seconds reuses it (a finished file of an interrupted run, or --force) and must
    split it by its own settings, not by those of the run that prepared it."""
    src = _takes(tmp_path / "takes", {"a": 10.0})
    out = tmp_path / "data"
    held_out = prepare([src], out, PrepareConfig(example_seconds=1.0, val_seconds=2.0),
                       show_progress=False)
    assert held_out["files"][0]["val_frames"][1] - held_out["files"][0]["val_frames"][0] == 200
    done = next((out / "files").glob("*/done.json"))
    mtime = done.stat().st_mtime_ns
    none = prepare([src], out, PrepareConfig(example_seconds=1.0, val_seconds=0.0),
                   show_progress=False, force=True)
    assert done.stat().st_mtime_ns == mtime  # reused
    (entry,) = none["files"]
    assert entry["val_frames"] == [entry["n_frames"], entry["n_frames"]]
    assert entry["train_frames"] == [0, entry["n_frames"]]
    assert none["examples"]["val"] == []
