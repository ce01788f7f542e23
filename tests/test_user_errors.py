"""Every command tried as a hostile user would (issue 14, section 3).

The bad inputs are data: ``BAD`` lists (id, command line, setup, expected message) and each
case asserts the contract every bad input must meet:

- one line on stderr, ``ddsp-synth COMMAND: error: ...``, naming the offending path once;
- a non-zero exit code, and no Python traceback (``main`` raising is a failure);
- no partial output and nothing lost: every file and folder under the test's folder, the
  shared inputs, the model, the dataset and the shipped models is exactly as before (no new
  file or folder, no ``.tmp`` left, no file changed or removed).

``ODD`` lists inputs that are unusual but valid (8 channels, 8 and 96 kHz, unicode paths,
missing output folders, ``--force``...): they must succeed and leave a sound output.

The CLI is called in-process through ``ddsp_synth.cli.main(argv) -> int``. Subprocesses are
used only where the process matters: kill -9 and signals during training, peak memory on an
hour-long input, and the web demo's terminal and memory.

Set ``USER_ERRORS_REPORT=FILE.json`` to write every case's outcome (exit code, first stderr
line, files left behind) for the issue's before/after table, and ``USER_ERRORS_ALLOW_WORK=1``
to let the commands run their analysis/synthesis anyway (to see what a user gets after the
wait; cases failing only for doing work first then pass, so strict xfails report XPASS).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_tone

from ddsp_synth.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models"
PY = sys.executable
SR = 16000
# subprocesses: quiet OpenMP spinning and one thread (2 shared cores)
CHILD_ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
             "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

UNICODE_DIR = "ünï cödé 音 dir"
INSTRUMENTS = ("violin", "flute", "trumpet", "altosax", "cello")
OUTCOMES: list[dict] = []


# ----------------------------------------------------------------------------- inputs
def _wav_bytes(y, sr, fmt="WAV", subtype=None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _midi(path: Path, events: list, ticks_per_beat: int = 480) -> None:
    """A one-track MIDI file from mido messages."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    track.extend(events)
    mid.tracks.append(track)
    mid.save(str(path))


def _make_inputs(d: Path) -> None:
    """Every bad or odd input file, in ``d``."""
    import mido

    tone = synth_tone(2.0, SR, 220.0)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "header_only.wav", np.zeros(0, np.float32), SR)
    wav = _wav_bytes(tone, SR)
    (d / "truncated.wav").write_bytes(wav[: len(wav) // 2])
    flac = _wav_bytes(tone, SR, "FLAC")
    (d / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    (d / "text.wav").write_text("this is not audio\n")
    (d / "zeros.flac").write_bytes(bytes(4096))
    y = tone.copy()
    y[8000:8100] = np.nan
    sf.write(d / "nan.wav", y, SR, subtype="FLOAT")
    y = tone.copy()
    y[4000] = np.inf
    sf.write(d / "inf.wav", y, SR, subtype="FLOAT")
    sf.write(d / "huge.wav", tone * 1e20, SR, subtype="FLOAT")  # finite, absurd level
    sf.write(d / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    sf.write(d / "near_silence.wav", (1e-6 * np.random.default_rng(0).standard_normal(2 * SR)),
             SR, subtype="FLOAT")
    sf.write(d / "short.wav", tone[: int(0.05 * SR)], SR)
    sf.write(d / "one_sample.wav", tone[:1], SR)
    sf.write(d / "noise.wav", 0.3 * np.random.default_rng(1).standard_normal(2 * SR), SR)
    sf.write(d / "tone.wav", tone, SR)
    sf.write(d / "antiphase.wav", np.stack([tone, -tone], axis=1), SR)  # cancels in mono
    sf.write(d / "tone_gain.wav", 0.5 * tone, SR)
    sf.write(d / "ch8.wav", np.tile(synth_tone(1.5, 44100, 220.0)[:, None], (1, 8)), 44100)
    sf.write(d / "sr8k.wav", synth_tone(1.5, 8000, 220.0), 8000)
    sf.write(d / "sr96k.wav", synth_tone(1.5, 96000, 220.0), 96000)
    sf.write(d / "sr1hz.wav", tone[:20], 1)  # 20 s at 1 Hz
    uni = d / UNICODE_DIR
    uni.mkdir()
    sf.write(uni / "tone ♪ 1.wav", synth_tone(1.5, 22050, 250.0), 22050)
    (uni / "broken ♪.wav").write_text("not audio")
    os.mkfifo(d / "fifo.wav")
    (d / "devzero.wav").symlink_to("/dev/zero")
    (d / "folder.wav").mkdir()  # a folder named like a file, with no audio in it
    (d / "dangling.wav").symlink_to(d / "no_such_target.wav")
    # MIDI
    (d / "notmidi.mid").write_text("not a midi file")
    (d / "empty.mid").write_bytes(b"")
    (d / "wav_as.mid").write_bytes(wav)
    (d / "header_only.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0")
    (d / "damaged.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x05\x01\xe0MTrk\xff\xff"
                                    b"\xff\xff\x00\x90")
    shutil.copy(REPO / "examples" / "ode_to_joy.mid", d / "ode.mid")
    msg = mido.Message
    _midi(d / "drums_only.mid", [msg("note_on", channel=9, note=36, velocity=100, time=0),
                                 msg("note_off", channel=9, note=36, time=480),
                                 msg("note_on", channel=9, note=38, velocity=100, time=0),
                                 msg("note_off", channel=9, note=38, time=480)])
    _midi(d / "no_notes.mid", [mido.MetaMessage("set_tempo", tempo=500000, time=0),
                               msg("control_change", control=7, value=100, time=480)])
    # the slowest tempo a MIDI file can say (16.7 s per beat) and a note of 10^5 beats: 19 days
    _midi(d / "slow_tempo.mid", [mido.MetaMessage("set_tempo", tempo=0xFFFFFF, time=0),
                                 msg("note_on", note=60, velocity=100, time=0),
                                 msg("note_off", note=60, time=480 * 100_000)])
    # the fastest: 1 us per beat, so every note lasts nanoseconds
    _midi(d / "fast_tempo.mid", [mido.MetaMessage("set_tempo", tempo=1, time=0),
                                 msg("note_on", note=60, velocity=100, time=0),
                                 msg("note_off", note=60, time=480)])
    # MIDI's extremes: note 127 (12.5 kHz, above the model's Nyquist) and note 0 (8 Hz)
    _midi(d / "extreme_notes.mid", [msg("note_on", note=127, velocity=127, time=0),
                                    msg("note_off", note=127, time=480),
                                    msg("note_on", note=0, velocity=1, time=0),
                                    msg("note_off", note=0, time=480)])
    # 20 000 notes at once: the highest voice is taken
    _midi(d / "cluster.mid", [msg("note_on", note=20 + i % 100, velocity=64, time=0)
                              for i in range(20_000)]
          + [msg("note_off", note=20 + i % 100, time=480 if i == 0 else 0) for i in range(100)])
    os.mkfifo(d / "fifo.mid")


def _snapshot(roots) -> dict:
    """Every entry under ``roots``: type, size, mode, mtime and (small files) content."""
    import hashlib

    snap = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = os.lstat(p)
                entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
                if stat.S_ISREG(st.st_mode):
                    entry += (st.st_size, st.st_mtime_ns)
                    if st.st_size < (1 << 20):
                        entry += (hashlib.sha1(p.read_bytes()).hexdigest(),)
                snap[str(p)] = entry
    return snap


def _diff(before: dict, after: dict) -> list[str]:
    out = [f"new: {p}" for p in sorted(set(after) - set(before))]
    out += [f"removed: {p}" for p in sorted(set(before) - set(after))]
    out += [f"changed: {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return out


@dataclass
class Workspace:
    inputs: Path
    model: Path
    data: Path
    run: Path

    def watched(self) -> list[Path]:
        return [self.inputs, self.model, self.data] + [SHIPPED / n for n in INSTRUMENTS]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_dataset, exported) -> Workspace:
    root = tmp_path_factory.mktemp("hostile")
    inputs = root / "inputs"
    inputs.mkdir()
    _make_inputs(inputs)
    shutil.copytree(exported, root / "model")
    shutil.copytree(tiny_dataset, root / "data")
    shutil.copytree(exported.parent / "run", root / "run")
    return Workspace(inputs, root / "model", root / "data", root / "run")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("USER_ERRORS_REPORT")
    if path:
        Path(path).write_text(json.dumps(OUTCOMES, indent=1, ensure_ascii=False) + "\n")


_IMMUTABLE: list[Path] = []


def make_readonly(folder: Path) -> Path:
    """A folder nothing can be written into, even by root (chattr +i); skip if impossible."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() == 0 and shutil.which("chattr"):
        r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if r.returncode == 0:
            _IMMUTABLE.append(folder)
    try:
        (folder / ".probe").touch()
    except OSError:
        return folder
    (folder / ".probe").unlink()
    pytest.skip("cannot make a read-only folder here (root without chattr +i support)")


@pytest.fixture(autouse=True)
def _release_immutable():
    yield
    while _IMMUTABLE:
        folder = _IMMUTABLE.pop()
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
        folder.chmod(0o755)


# ----------------------------------------------------------------------------- setups
def copy_shipped(name="violin", edit: Callable[[dict], None] | None = None,
                 weights: Callable[[Path], None] | None = None):
    """Setup: ``{tmp}/m`` is a copy of a shipped model (or of the tiny test model, which has
    a weights checksum), its config.json edited."""

    def setup(t: Path, w: Workspace) -> None:
        shutil.copytree(w.model if name == "tiny" else SHIPPED / name, t / "m")
        if edit is not None:
            meta = json.loads((t / "m" / "config.json").read_text())
            edit(meta)
            (t / "m" / "config.json").write_text(json.dumps(meta))
        if weights is not None:
            weights(t / "m" / "model.safetensors")
    return setup


def _set(path: str, value):
    """An edit that sets ``meta[a][b]... = value`` (``"model.synth.reverb_s"``)."""
    keys = path.split(".")

    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


def _delete(path: str):
    keys = path.split(".")

    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return edit


def model_file(name: str, content: bytes | str | None = None, kind: str = "file"):
    """Setup: ``{tmp}/m`` is a shipped model copy whose ``name`` is replaced."""

    def setup(t, w):
        shutil.copytree(SHIPPED / "violin", t / "m")
        _replace(t / "m" / name, content, kind)
    return setup


def _replace(p: Path, content, kind: str) -> None:
    if p.exists() or p.is_symlink():
        p.unlink()
    if kind == "missing":
        return
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "devzero":
        p.symlink_to("/dev/zero")
    elif kind == "sparse":
        with open(p, "wb") as fh:
            fh.truncate(1 << 30)  # 1 GB of zeros, no disk used
    elif kind == "deep":
        p.write_text("[" * 200_000 + "]" * 200_000)
    else:
        p.write_bytes(content.encode() if isinstance(content, str) else content)


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 16] = bytes(b ^ 0xFF for b in data[mid: mid + 16])
    path.write_bytes(bytes(data))


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _huge_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 1 << 60) + data[8:])


def _nan_weights_no_checksum(t: Path, w) -> None:
    """A model whose weights hold a NaN, written consistently (no checksum to catch it)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(SHIPPED / "violin", t / "m")
    tensors = load_file(str(t / "m" / "model.safetensors"))
    k = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 10)
    tensors[k] = tensors[k].clone()
    tensors[k].view(-1)[3] = float("nan")
    save_file(tensors, str(t / "m" / "model.safetensors"))
    meta = json.loads((t / "m" / "config.json").read_text())
    meta.pop("weights_sha256", None)
    (t / "m" / "config.json").write_text(json.dumps(meta))


def train_config(obj=None, raw: str | None = None, kind: str = "file"):
    """Setup: ``{tmp}/cfg.json`` for ``train --config``: the tiny settings with ``obj``
    merged in (``raw`` text or a special ``kind`` instead)."""

    def setup(t, w):
        p = t / "cfg.json"
        if kind != "file":
            _replace(p, None, kind)
        elif raw is not None:
            p.write_text(raw)
        else:
            p.write_text(json.dumps(obj))
    return setup


def tiny_config(**train_overrides) -> dict:
    from test_train import FAST, SMALL

    return {"model": SMALL.to_dict(), "train": {**FAST, "steps": 2, **train_overrides}}


def copy_run(edit: Callable[[Path], None] | None = None):
    """Setup: ``{tmp}/run`` is a copy of the trained tiny run, edited."""

    def setup(t, w):
        shutil.copytree(w.run, t / "run")
        if edit is not None:
            edit(t / "run")
    return setup


def _last_ck(run: Path) -> Path:
    return max((run / "checkpoints").glob("step-*"))


def copy_data(edit: Callable[[Path], None]):
    def setup(t, w):
        shutil.copytree(w.data, t / "data")
        edit(t / "data")
    return setup


def readonly(sub="ro"):
    def setup(t, w):
        make_readonly(t / sub)
    return setup


def a_file(name="afile", content="I am a file, not a folder\n"):
    def setup(t, w):
        (t / name).write_text(content)
    return setup


def a_dir(name, files=()):
    def setup(t, w):
        (t / name).mkdir()
        for f in files:
            (t / name / f).write_text("keep me")
    return setup


def a_fifo(name):
    def setup(t, w):
        os.mkfifo(t / name)
    return setup


def input_copy(src: str, name: str):
    def setup(t, w):
        shutil.copy(w.inputs / src, t / name)
    return setup


def chain(*setups):
    def setup(t, w):
        for s in setups:
            s(t, w)
    return setup


# ----------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Bad:
    """A bad input: the command line (``{in}`` inputs, ``{model}`` the tiny model, ``{data}``
    the tiny dataset, ``{tmp}`` this case's folder, ``{udir}``/``{ubroken}``/``{utone}`` the
    unicode folder and files), what the one error line must match, the path it must name
    once, whether it must be refused before any work (CREPE, synthesis, a training step) and
    why the current code fails the contract (xfail) if it does."""

    id: str
    argv: str
    expect: str
    setup: Callable | None = None
    path: str | None = None
    xfail: str | None = None
    slow: bool = False
    no_work: bool = True  # refused before any analysis, synthesis or training


T = "transfer {in}/tone.wav --model {model} -o {tmp}/out.wav --quiet"
TM = "transfer {in}/tone.wav --model {tmp}/m -o {tmp}/out.wav --quiet"
TRAIN = "train {data} -o {tmp}/run --quiet --steps 2"
TRAINC = "train {data} -o {tmp}/run --quiet --config {tmp}/cfg.json"
RESUME = "train {data} -o {tmp}/run --quiet --resume --steps 30"
STREAM = "stream {in}/tone.wav --model {model} -o {tmp}/out.wav --quiet"
RENDER = "render {in}/ode.mid --model {model} -o {tmp}/out.wav --quiet"
EXPORT = "export {tmp}/run -o {tmp}/m2"
MATCH = "match {in}/tone.wav {in}/tone_gain.wav --chain gain -o {tmp}/res --quiet --steps 3"

BAD = [
    # ------------------------------------------------------------------ audio inputs
    *[Bad(f"transfer-{f}", f"transfer {{in}}/{f} --model {{model}} -o {{tmp}}/out.wav --quiet",
          expect, path=f"{{in}}/{f}", no_work=f not in ("one_sample.wav", "noise.wav"))
      for f, expect in [
          ("empty.wav", r"empty file \(0 bytes\)"), ("header_only.wav", "empty"),
          ("truncated.flac", "unreadable audio"), ("text.wav", "unreadable audio"),
          ("zeros.flac", "unreadable audio"), ("nan.wav", "NaN or infinite"),
          ("inf.wav", "NaN or infinite"), ("silence.wav", "silent"),
          ("near_silence.wav", "silent"), ("one_sample.wav", "no pitch"),
          ("noise.wav", "no pitch"), ("fifo.wav", "not a regular file"),
          ("devzero.wav", "not a regular file"), ("dangling.wav", "no such file"),
          ("no_such.wav", "no such file"), ("ode.mid", "is a MIDI file.*ddsp-synth render"),
          ("huge.wav", "above full scale"), ("sr1hz.wav", "sample rate"),
          ("antiphase.wav", "channels cancel each other when mixed to mono")]],
    Bad("transfer-folder-without-audio", "transfer {in}/folder.wav --model {model} -o {tmp}/o "
        "--quiet", "no audio files", path="{in}/folder.wav"),
    Bad("transfer-unicode-broken", "transfer {ubroken} --model {model} -o {tmp}/out.wav --quiet",
        "unreadable audio", path="{ubroken}"),
    *[Bad(f"{cmd}-{f}", f"{cmd} {{in}}/{f} --model {{model}} -o {{tmp}}/out.wav --quiet",
          expect, path=f"{{in}}/{f}")
      for cmd in ("resynth", "stream")
      for f, expect in [
          ("empty.wav", r"empty file \(0 bytes\)"), ("text.wav", "unreadable audio"),
          ("nan.wav", "NaN or infinite"), ("fifo.wav", "not a regular file"),
          ("folder.wav", "not a regular file" if cmd == "stream" else "no audio files"),
          ("silence.wav", "silent")]],
    *[Bad(f"eval-{f}", f"eval {{model}} {{in}}/{f} --quiet", expect, path=f"{{in}}/{f}",
          no_work=f != "noise.wav")
      for f, expect in [("empty.wav", r"empty file \(0 bytes\)"), ("text.wav", "unreadable audio"),
                        ("nan.wav", "NaN or infinite"), ("silence.wav", "silent|nothing to measure"),
                        ("noise.wav", "nothing to measure"), ("fifo.wav", "not a regular file"),
                        ("folder.wav", "no audio files")]],
    *[Bad(f"prepare-{f}", f"prepare {{in}}/{f} -o {{tmp}}/data --quiet", expect,
          path=f"{{in}}/{f}")
      for f, expect in [("empty.wav", r"empty file \(0 bytes\)"), ("text.wav", "unreadable audio"),
                        ("nan.wav", "NaN or infinite"), ("silence.wav", "silent|too short"),
                        ("short.wav", "too short"), ("fifo.wav", "not a regular file"),
                        ("truncated.flac", "unreadable audio")]],
    Bad("prepare-no-such-input", "prepare {tmp}/nothing.wav -o {tmp}/data --quiet",
        "no such file", path="{tmp}/nothing.wav"),
    Bad("prepare-folder-without-audio", "prepare {in}/folder.wav -o {tmp}/data --quiet",
        "no audio files", path="{in}/folder.wav"),
    Bad("prepare-existing-dataset-other-settings", "prepare {in}/sr8k.wav -o {tmp}/data --quiet "
        "--sample-rate 22050 --example-seconds 1", "already holds a dataset|--force",
        setup=lambda t, w: shutil.copytree(w.data, t / "data"), path="{tmp}/data"),
    # ------------------------------------------------------------------ outputs
    Bad("transfer-out-mp3", T.replace("out.wav", "out.mp3"), r"\.mp3.*\.wav or \.flac",
        path="{tmp}/out.mp3"),
    Bad("render-out-mp3", RENDER.replace("out.wav", "out.mp3"), r"\.wav or \.flac",
        path="{tmp}/out.mp3"),
    Bad("demo-out-mp3", "demo -o {tmp}/out.mp3", r"\.wav or \.flac", path="{tmp}/out.mp3"),
    Bad("stream-out-mp3", STREAM.replace("out.wav", "out.mp3"), r"\.wav or \.flac",
        path="{tmp}/out.mp3"),
    Bad("demo-out-no-extension", "demo -o {tmp}/out", r"\.wav or \.flac", path="{tmp}/out"),
    Bad("demo-out-empty-name", "demo --output=", "folder|name"),
    Bad("export-runtime-out-mp3", "export-runtime {model} -o {tmp}/out.mp3", r"\.onnx",
        path="{tmp}/out.mp3"),
    *[Bad(f"{cmd}-out-existing-file", argv, "exists; pass --force", setup=a_file("out.wav"),
          path="{tmp}/out.wav")
      for cmd, argv in [("demo", "demo -o {tmp}/out.wav"), ("transfer", T), ("render", RENDER),
                        ("stream", STREAM)]],
    *[Bad(f"{cmd}-out-is-folder{suffix}", argv + suffix.replace("-", " --"), "is a folder",
          setup=a_dir("out.wav", ["keep.txt"]), path="{tmp}/out.wav")
      for cmd, argv in [("demo", "demo -o {tmp}/out.wav"), ("render", RENDER), ("stream", STREAM)]
      for suffix in ("", "-force")],
    Bad("stream-report-is-folder", STREAM + " --report {tmp}", "is a folder", path="{tmp}"),
    # export-runtime writes .onnx (or .pt/.ts for TorchScript)
    Bad("export-runtime-out-existing-file", "export-runtime {model} -o {tmp}/out.onnx",
        "exists; pass --force", setup=a_file("out.onnx"), path="{tmp}/out.onnx"),
    *[Bad(f"export-runtime-out-is-folder{suffix}", "export-runtime {model} -o {tmp}/out.onnx"
          + suffix.replace("-", " --"), "is a folder", setup=a_dir("out.onnx", ["keep.txt"]),
          path="{tmp}/out.onnx") for suffix in ("", "-force")],
    Bad("export-runtime-out-under-a-file", "export-runtime {model} -o {tmp}/afile/x/out.onnx",
        "is a file, not a folder", setup=a_file(), path="{tmp}/afile/x/out.onnx"),
    Bad("export-runtime-out-readonly", "export-runtime {model} -o {tmp}/ro/out.onnx",
        "cannot write", setup=readonly(), path="{tmp}/ro/out.onnx"),
    *[Bad(f"{cmd}-out-under-a-file", argv.replace("{tmp}/out.wav", "{tmp}/afile/x/out.wav"),
          "is a file, not a folder", setup=a_file(), path="{tmp}/afile/x/out.wav")
      for cmd, argv in [("demo", "demo -o {tmp}/out.wav"), ("transfer", T), ("render", RENDER),
                        ("stream", STREAM)]],
    *[Bad(f"{cmd}-out-readonly", argv.replace("{tmp}/out.wav", "{tmp}/ro/out.wav"),
          "cannot write", setup=readonly(), path="{tmp}/ro/out.wav")
      for cmd, argv in [("demo", "demo -o {tmp}/out.wav"), ("transfer", T),
                        ("resynth", T.replace("transfer", "resynth")), ("render", RENDER),
                        ("stream", STREAM)]],
    Bad("stream-report-readonly", STREAM + " --report {tmp}/ro/r.json", "cannot write",
        setup=readonly(), path="{tmp}/ro/r.json"),
    Bad("transfer-folder-out-readonly", "transfer {udir} --model {model} -o {tmp}/ro/sub "
        "--quiet", "cannot write", setup=readonly()),
    Bad("prepare-out-readonly", "prepare {in}/tone.wav -o {tmp}/ro/data --quiet",
        "cannot write", setup=readonly(), path="{tmp}/ro/data"),
    Bad("prepare-out-is-a-file", "prepare {in}/tone.wav -o {tmp}/afile --quiet",
        "not a folder", setup=a_file(), path="{tmp}/afile"),
    Bad("prepare-out-under-a-file", "prepare {in}/tone.wav -o {tmp}/afile/data --quiet",
        "not a folder", setup=a_file(), path="{tmp}/afile/data"),
    Bad("prepare-out-is-the-input", "prepare {tmp}/in.wav -o {tmp}/in.wav --quiet",
        "not a folder|input", setup=input_copy("tone.wav", "in.wav"), path="{tmp}/in.wav"),
    Bad("train-out-readonly", TRAIN.replace("{tmp}/run", "{tmp}/ro/run"), "cannot write",
        setup=readonly(), path="{tmp}/ro/run"),
    Bad("train-out-is-a-file", TRAIN.replace("{tmp}/run", "{tmp}/afile"), "not a folder",
        setup=a_file(), path="{tmp}/afile"),
    Bad("export-out-readonly", EXPORT.replace("{tmp}/m2", "{tmp}/ro/m"), "cannot write",
        setup=chain(copy_run(), readonly()), path="{tmp}/ro/m"),
    Bad("export-out-is-a-file", EXPORT.replace("{tmp}/m2", "{tmp}/afile"), "not a folder",
        setup=chain(copy_run(), a_file()), path="{tmp}/afile"),
    Bad("export-out-existing-model", "export {tmp}/run -o {model}", "exists; pass --force",
        setup=copy_run()),
    Bad("eval-out-readonly", "eval {model} {in}/tone.wav --out {tmp}/ro/ev", "cannot write",
        setup=readonly(), path="{tmp}/ro/ev"),
    Bad("eval-out-is-a-file", "eval {model} {in}/tone.wav --out {tmp}/afile",
        "is a file, not a folder", setup=a_file(), path="{tmp}/afile"),
    Bad("eval-out-existing", "eval {model} {in}/tone.wav --out {tmp}/ev", "pass --force",
        setup=chain(a_dir("ev"), lambda t, w: (t / "ev" / "metrics.json").write_text("{}"))),
    Bad("transfer-out-equals-input", "transfer {tmp}/in.wav --model {model} -o {tmp}/in.wav "
        "--quiet", "input itself", setup=input_copy("tone.wav", "in.wav"), path="{tmp}/in.wav"),
    Bad("transfer-out-equals-input-force", "transfer {tmp}/in.wav --model {model} -o "
        "{tmp}/in.wav --quiet --force", "input itself", setup=input_copy("tone.wav", "in.wav"),
        path="{tmp}/in.wav"),
    Bad("transfer-out-symlink-to-input-force", "transfer {tmp}/in.wav --model {model} -o "
        "{tmp}/link.wav --quiet --force", "input itself",
        setup=chain(input_copy("tone.wav", "in.wav"),
                    lambda t, w: (t / "link.wav").symlink_to(t / "in.wav")),
        path="{tmp}/link.wav"),
    Bad("transfer-folder-into-itself-force", "transfer {tmp}/d --model {model} -o {tmp}/d "
        "--quiet --force", "input itself",
        setup=chain(a_dir("d"), lambda t, w: shutil.copy(w.inputs / "tone.wav", t / "d"))),
    Bad("stream-out-equals-input", "stream {tmp}/in.wav --model {model} -o {tmp}/in.wav "
        "--quiet", "input itself|exists", setup=input_copy("tone.wav", "in.wav"),
        path="{tmp}/in.wav"),
    Bad("stream-out-equals-input-force", "stream {tmp}/in.wav --model {model} -o {tmp}/in.wav "
        "--quiet --force", "input itself", setup=input_copy("tone.wav", "in.wav"),
        path="{tmp}/in.wav"),
    Bad("render-out-equals-input-force", "render {tmp}/song.wav --model {model} -o "
        "{tmp}/song.wav --quiet --force", "input itself", path="{tmp}/song.wav",
        setup=input_copy("ode.mid", "song.wav")),
    Bad("export-runtime-over-the-model-weights", "export-runtime {tmp}/m -o "
        "{tmp}/m/model.safetensors --force", "model|input itself",
        setup=copy_shipped("tiny"), path="{tmp}/m/model.safetensors"),
    Bad("stream-report-equals-output", STREAM + " --report {tmp}/out.wav", "same file|twice|both"),
    Bad("demo-out-fifo-force", "demo -o {tmp}/out.wav --force", "not a regular file",
        setup=a_fifo("out.wav"), path="{tmp}/out.wav"),
    # ------------------------------------------------------------------ numbers on the command line
    *[Bad(f"{argv.split()[0]}-{flag.strip('-')}-{value}", f"{argv} {flag}={value}", expect)
      for argv, flag, value, expect in [
          ("demo -o {tmp}/d.wav", "--seconds", "1e8", "from 0.1 to 600"),
          ("demo -o {tmp}/d.wav", "--seconds", "nan", "finite"),
          ("demo -o {tmp}/d.wav", "--seconds", "inf", "finite"),
          ("demo -o {tmp}/d.wav", "--seconds", "0", "from 0.1"),
          ("demo -o {tmp}/d.wav", "--seconds", "-1", "from 0.1"),
          ("demo -o {tmp}/d.wav", "--seconds", "four", "expected a number"),
          ("demo -o {tmp}/d.wav", "--sample-rate", "8000", "invalid choice"),
          ("demo -o {tmp}/d.wav", "--seed", "-1", "from 0"),
          (TRAIN, "--batch-size", "0", "from 1"), (TRAIN, "--batch-size", "-3", "from 1"),
          (TRAIN, "--batch-size", "1.5", "whole number"),
          (TRAIN, "--batch-size", "100000", "from 1 to 4096"),
          (TRAIN, "--checkpoint-every", "0", "at least 1"),
          (TRAIN, "--num-threads", "0", "from 1"), (TRAIN, "--num-threads", "-1", "from 1"),
          (TRAIN, "--steps", "-1", "from 0"), (TRAIN, "--learning-rate", "nan", "finite"),
          (TRAIN, "--learning-rate", "-1", "from 0"), (TRAIN, "--max-minutes", "inf", "finite"),
          (TRAIN, "--val-every", "-1", "at least 0"), (TRAIN, "--seed", "1e3", "whole number"),
          (TRAIN, "--precision", "fp16", "invalid choice"),
          (STREAM, "--block-ms", "inf", "finite"), (STREAM, "--block-ms", "0", "from 0.1"),
          (STREAM, "--block-ms", "nan", "finite"), (STREAM, "--block-ms", "1e9", "from 0.1"),
          (STREAM, "--threads", "0", "from 1"), (STREAM, "--gate-db", "nan", "finite"),
          (STREAM, "--engine", "tensorrt", "invalid choice"),
          (T, "--pitch-shift", "1e6", "from -48"), (T, "--pitch-shift", "nan", "finite"),
          (T, "--loudness-shift", "-inf", "finite"), (T, "--quiet-db", "-5", "from 0"),
          (T, "--amount", "harmonic=-1", "from 0"), (T, "--amount", "reverb=1e9", "from 0"),
          (T, "--amount", "reverb", "STAGE=AMOUNT"), (T, "--amount", "=0.5", "STAGE=AMOUNT"),
          (T, "--sample-rate", "0", "from 8000"), (T, "--sample-rate", "1e9", "whole number"),
          (T, "--format", "mp3", "invalid choice"), (T, "--pitch-model", "huge", "invalid choice"),
          (RENDER, "--transpose", "100", "from -48"), (RENDER, "--tempo-scale", "0", "from 0.1"),
          (RENDER, "--release", "-1", "from 0"), (RENDER, "--track", "-1", "from 0"),
          ("prepare {in}/tone.wav -o {tmp}/d --quiet", "--sample-rate", "0", "from 8000"),
          ("prepare {in}/tone.wav -o {tmp}/d --quiet", "--hop", "0", "from 8"),
          ("prepare {in}/tone.wav -o {tmp}/d --quiet", "--example-seconds", "0", "from 0.1"),
          ("prepare {in}/tone.wav -o {tmp}/d --quiet", "--val-seconds", "-1", "from 0"),
          ("prepare {in}/tone.wav -o {tmp}/d --quiet", "--frame-rate", "inf", "finite"),
          ("eval {model} {in}/tone.wav", "--max-examples", "0", "at least 1"),
          ("export-runtime {model} -o {tmp}/x.onnx", "--format", "tflite", "invalid choice"),
      ]],
    Bad("no-command", "", "required: COMMAND"),
    Bad("unknown-command", "play {in}/tone.wav", "invalid choice: 'play'"),
    Bad("transfer-missing-model-flag", "transfer {in}/tone.wav -o {tmp}/o.wav", "--model"),
    Bad("transfer-unknown-flag", T + " --gain 3", "unrecognized arguments: --gain"),
    # ------------------------------------------------------------------ model folders
    Bad("model-unknown-name", T.replace("{model}", "tuba"),
        "no model folder or shipped model named 'tuba'"),
    Bad("model-empty-name", T.replace("--model {model}", "--model="), "no model given"),
    Bad("model-path-missing", T.replace("{model}", "{tmp}/nomodel"), "no such model folder",
        path="{tmp}/nomodel"),
    Bad("model-is-a-file", T.replace("{model}", "{in}/tone.wav"), "no such model folder",
        path="{in}/tone.wav"),
    Bad("model-config-missing", TM, "missing config.json",
        setup=model_file("config.json", kind="missing"), path="{tmp}/m"),
    *[Bad(f"model-config-{name}", TM, expect, setup=model_file("config.json", content, kind),
          path="{tmp}/m/config.json")
      for name, content, kind, expect in [
          ("empty", "", "file", "damaged JSON"), ("truncated", '{"model": ', "file",
                                                  "damaged JSON"),
          ("list", "[]", "file", "not a ddsp_synth model"), ("binary", b"\xff\xfe\x00", "file",
                                                     "damaged JSON"),
          ("deeply-nested", None, "deep", "nested too deeply"),
          ("1gb-sparse", None, "sparse", "too large"),
          ("fifo", None, "fifo", "not a regular file"),
          ("devzero", None, "devzero", "not a regular file")]],
    *[Bad(f"model-{name}", TM, expect, setup=copy_shipped(edit=edit))
      for name, edit, expect in [
          ("format-version-99", _set("format_version", 99), "format version 99"),
          ("reverb-30000s", _set("model.synth.reverb_s", 30000), "reverb_s"),
          ("reverb-phase-linear", _set("model.synth.reverb_phase", "linear"), "reverb_phase"),
          ("hidden-1e6", _set("model.decoder.hidden", 1_000_000), "hidden"),
          ("harmonics-1e9", _set("model.synth.n_harmonics", 1e9), "n_harmonics"),
          ("hop-0", lambda m: (_set("model.synth.hop", 0)(m), _set("model.features.hop", 0)(m)),
           "hop"),
          ("sample-rate-string", _set("model.synth.sample_rate", "16000"),
           "sample_rate must be a whole number"),
          ("hidden-list", _set("model.decoder.hidden", [256]), "hidden must be a whole number"),
          ("hidden-float", _set("model.decoder.hidden", 256.5), "hidden must be a whole number"),
          ("hidden-bool", _set("model.decoder.hidden", True), "hidden must be a whole number"),
          ("hidden-negative", _set("model.decoder.hidden", -256), "hidden"),
          ("noise-bias-nan", _set("model.synth.noise_bias", float("nan")), "noise_bias"),
          ("unknown-key", _set("model.synth.bogus", 1), "unknown setting model.synth.bogus"),
          ("settings-null", _set("model", None), "no model settings"),
          ("crepe-huge", _set("model.features.crepe_model", "huge"), "crepe_model"),
          ("rates-disagree", _set("model.features.sample_rate", 44100), "sample rate"),
          ("z-encoder-not-in-weights", _set("model.decoder.z_dims", 16),
           "tensors do not match"),
          ("stats-not-object", _set("dataset_stats", "abc"), "dataset_stats"),
      ]],
    *[Bad(f"model-{name}", TM, expect, setup=copy_shipped(edit=edit))
      for name, edit, expect in [
          ("no-dataset-stats", _delete("dataset_stats"), "statistics lack 'pitch_midi_mean'"),
          ("stats-no-pitch-mean", _delete("dataset_stats.pitch_midi_mean"), "pitch_midi_mean")]],
    Bad("model-stats-quantiles-strings", TM, "statistics|quantiles",
        setup=copy_shipped(edit=_set("dataset_stats.loudness_db_voiced_quantiles", ["a"] * 101)),
        no_work=False),
    Bad("render-model-no-stats", "render {in}/ode.mid --model {tmp}/m -o {tmp}/o.wav --quiet",
        "no dataset statistics", setup=copy_shipped(edit=_delete("dataset_stats"))),
    Bad("weights-bytes-flipped", TM, "checksum", setup=copy_shipped("tiny", weights=_flip_bytes),
        path="{tmp}/m/model.safetensors"),
    Bad("weights-bytes-flipped-shipped", TM, "checksum", setup=copy_shipped(weights=_flip_bytes),
        path="{tmp}/m/model.safetensors"),
    *[Bad(f"weights-{name}", TM, expect, setup=setup, path=path)
      for name, setup, expect, path in [
          ("truncated", copy_shipped(weights=_truncate_half), "damaged or truncated",
           "{tmp}/m/model.safetensors"),
          ("header-2^60", copy_shipped(weights=_huge_header), "damaged or truncated",
           "{tmp}/m/model.safetensors"),
          ("empty", model_file("model.safetensors", b""), "damaged or truncated",
           "{tmp}/m/model.safetensors"),
          ("text", model_file("model.safetensors", "not tensors"), "damaged or truncated",
           "{tmp}/m/model.safetensors"),
          ("missing", model_file("model.safetensors", kind="missing"),
           "missing model.safetensors", "{tmp}/m"),
          ("fifo", model_file("model.safetensors", kind="fifo"), "model.safetensors", "{tmp}/m"),
          ("devzero", model_file("model.safetensors", kind="devzero"), "model.safetensors",
           "{tmp}/m"),
          ("nan-no-checksum", _nan_weights_no_checksum, "NaN or infinite",
           "{tmp}/m/model.safetensors")]],
    *[Bad(f"{cmd}-model-reverb-30000s", argv, "reverb_s must be between",
          setup=copy_shipped(edit=_set("model.synth.reverb_s", 30000)))
      for cmd, argv in [("render", "render {in}/ode.mid --model {tmp}/m -o {tmp}/o.wav --quiet"),
                        ("stream", "stream {in}/tone.wav --model {tmp}/m -o {tmp}/o.wav --quiet"),
                        ("eval", "eval {tmp}/m {in}/tone.wav"),
                        ("export-runtime", "export-runtime {tmp}/m -o {tmp}/o.onnx"),
                        ("train-init-from", TRAIN + " --init-from {tmp}/m")]],
    # ------------------------------------------------------------------ train settings files
    Bad("train-config-missing", TRAIN + " --config {tmp}/nope.json", "cannot read",
        path="{tmp}/nope.json"),
    *[Bad(f"train-config-{name}", TRAINC, expect, setup=setup, path="{tmp}/cfg.json")
      for name, setup, expect in [
          ("empty", train_config(raw=""), "damaged"),
          ("not-json", train_config(raw="{'train': 1}"), "damaged"),
          ("list", train_config([1, 2]), "expected a JSON object"),
          ("deeply-nested", train_config(kind="deep"), "nested too deeply"),
          ("1gb-sparse", train_config(kind="sparse"), "too large"),
          ("100k-keys", train_config({"train": {f"k{i}": i for i in range(100_000)}}),
           "too large"),
          ("fifo", train_config(kind="fifo"), "not a regular file"),
          ("devzero", train_config(kind="devzero"), "not a regular file")]],
    Bad("train-config-is-folder", TRAIN + " --config {in}/folder.wav", "not a regular file",
        path="{in}/folder.wav"),
    Bad("train-config-unknown-section", TRAINC, "unknown settings section",
        setup=train_config({"modle": {}})),
    Bad("train-config-10k-unknown-keys", TRAINC, "unknown setting train.k0",
        setup=train_config({"train": {f"k{i}": i for i in range(10_000)}})),
    *[Bad(f"train-config-{name}", TRAINC, expect, setup=train_config(obj))
      for name, obj, expect in [
          ("batch-size-0", tiny_config(batch_size=0), "batch_size must be between"),
          ("batch-size--3", tiny_config(batch_size=-3), "batch_size must be between"),
          ("batch-size-string", tiny_config(batch_size="8"), "batch_size must be a whole"),
          ("batch-size-list", tiny_config(batch_size=[8]), "batch_size must be a whole"),
          ("batch-size-null", tiny_config(batch_size=None), "batch_size must be a whole"),
          ("batch-size-1e30", tiny_config(batch_size=10**30), "batch_size must be between"),
          ("checkpoint-every-0", tiny_config(checkpoint_every=0), "checkpoint_every"),
          ("log-every-0", tiny_config(log_every=0), "log_every"),
          ("lr-decay-steps-0", tiny_config(lr_decay_steps=0), "lr_decay_steps"),
          ("num-threads--1", tiny_config(num_threads=-1), "num_threads"),
          ("steps--1", tiny_config(steps=-1), "steps must be between"),
          ("steps-true", tiny_config(steps=True), "steps must be a whole"),
          ("steps-10^4000", None, "steps"),
          ("seed-float", tiny_config(seed=1.5), "seed must be a whole"),
          ("seed-1e30", tiny_config(seed=1e30), "seed must be a whole"),
          ("seed-negative", tiny_config(seed=-1), "seed must be between"),
          ("precision-fp8", tiny_config(precision="fp8"), "precision must be one of"),
          ("max-minutes-negative", tiny_config(max_minutes=-5), "max_minutes"),
          ("keep-checkpoints-0", tiny_config(keep_checkpoints=0), "keep_checkpoints"),
          ("unknown-train-key", tiny_config(lr=0.1), "unknown setting train.lr"),
          ("train-section-list", {"train": [1]}, "train must be a JSON object"),
          ("model-section-string", {"model": "big"}, "model must be a JSON object"),
          ("model-hop-0", {"model": {"synth": {"hop": 0}}}, "hop must be between"),
          ("model-reverb-30000s", {"model": {"synth": {"reverb_s": 30000}}}, "reverb_s"),
          ("model-hidden-1e6", {"model": {"decoder": {"hidden": 1_000_000}}}, "hidden"),
          ("model-harmonics-1e9", {"model": {"synth": {"n_harmonics": 1e9}}}, "n_harmonics"),
          ("model-sample-rate-string", {"model": {"synth": {"sample_rate": "16000"}}},
           "sample_rate must be a whole"),
          ("model-fft-sizes-number", {"model": {"loss": {"fft_sizes": 1024}}}, "fft_sizes"),
          ("model-fft-sizes-empty", {"model": {"loss": {"fft_sizes": []}}}, "fft_sizes"),
          ("model-fft-sizes-2^40", {"model": {"loss": {"fft_sizes": [2**40]}}}, "fft_sizes"),
          ("model-features-differ", {"model": {"features": {"crepe_model": "full"}}},
           "feature settings differ"),
          ("model-unknown-key", {"model": {"decoder": {"width": 64}}},
           "unknown setting model.decoder.width"),
      ] if obj is not None],
    Bad("train-config-steps-10^4000", TRAINC, "steps",
        setup=train_config(raw='{"train": {"steps": ' + "9" * 4000 + "}}")),
    Bad("train-config-nan-literal", TRAINC, "learning_rate must be finite",
        setup=train_config(raw='{"train": {"steps": 2, "learning_rate": NaN}}')),
    Bad("train-config-train-list-and-flag", TRAINC + " --steps 2", 'train"? must be a JSON object',
        setup=train_config({"train": [1]})),
    # ------------------------------------------------------------------ train: data and runs
    Bad("train-data-missing", "train {tmp}/nodata -o {tmp}/run --quiet", "not a prepared dataset",
        path="{tmp}/nodata"),
    Bad("train-data-is-audio", "train {in}/tone.wav -o {tmp}/run --quiet",
        "not a prepared dataset", path="{in}/tone.wav"),
    Bad("train-data-manifest-damaged", "train {tmp}/data -o {tmp}/run --quiet", "damaged",
        setup=copy_data(lambda d: (d / "manifest.json").write_text("{")),
        path="{tmp}/data/manifest.json"),
    Bad("train-data-manifest-no-config", "train {tmp}/data -o {tmp}/run --quiet",
        "damaged|prepare", setup=copy_data(lambda d: (d / "manifest.json").write_text(
            json.dumps({"format_version": 1})))),
    Bad("train-data-stats-missing", "train {tmp}/data -o {tmp}/run --quiet --steps 2",
        "stats.json", setup=copy_data(lambda d: (d / "stats.json").unlink())),
    Bad("train-data-stats-damaged", "train {tmp}/data -o {tmp}/run --quiet --steps 2",
        "stats.json", setup=copy_data(lambda d: (d / "stats.json").write_text("[1, 2"))),
    Bad("train-data-audio-deleted", "train {tmp}/data -o {tmp}/run --quiet --steps 2 "
        "--batch-size 2", "audio.pcm|prepare",
        setup=copy_data(lambda d: [p.unlink() for p in d.glob("files/*/audio.pcm")])),
    Bad("train-batch-larger-than-data", TRAIN + " --batch-size 4096", "lower --batch-size"),
    Bad("train-existing-run", "train {data} -o {tmp}/run --quiet --steps 2",
        "already holds a run.*--resume", setup=copy_run()),
    Bad("train-resume-nothing", TRAIN + " --resume", "nothing to resume", path="{tmp}/run"),
    *[Bad(f"train-resume-{name}", RESUME, expect, setup=copy_run(edit))
      for name, edit, expect in [
          ("no-checkpoint", lambda r: shutil.rmtree(r / "checkpoints"), "no complete checkpoint"),
          ("run-json-damaged", lambda r: (r / "run.json").write_text("{"), "damaged run file"),
          ("run-json-no-train", lambda r: (r / "run.json").write_text('{"model": {}}'),
           "damaged run file"),
          ("state-no-optimizer", lambda r: _edit_json(_last_ck(r) / "state.json",
                                                      lambda s: s.pop("optimizer")),
           "damaged checkpoint"),
          ("state-no-step", lambda r: _edit_json(_last_ck(r) / "state.json",
                                                 lambda s: s.pop("step")), "damaged checkpoint"),
          ("state-not-json", lambda r: (_last_ck(r) / "state.json").write_text("\x00\x01"),
           "damaged checkpoint"),
          ("optimizer-truncated", lambda r: _truncate_half(_last_ck(r) / "optimizer.safetensors"),
           "damaged checkpoint"),
          ("optimizer-missing", lambda r: (_last_ck(r) / "optimizer.safetensors").unlink(),
           "damaged checkpoint"),
          ("optimizer-wrong-tensors", lambda r: shutil.copy(_last_ck(r) / "model.safetensors",
                                                            _last_ck(r) / "optimizer.safetensors"),
           "damaged checkpoint"),
          ("weights-header-flipped", lambda r: _flip_header(_last_ck(r) / "model.safetensors"),
           "damaged checkpoint")]],
    Bad("train-init-from-missing", TRAIN + " --init-from {tmp}/nomodel", "no such model folder",
        path="{tmp}/nomodel"),
    Bad("train-init-from-damaged", TRAIN + " --init-from {tmp}/m", "checksum",
        setup=copy_shipped("tiny", weights=_flip_bytes)),
    Bad("train-init-from-damaged-shipped", TRAIN + " --init-from {tmp}/m", "checksum",
        setup=copy_shipped(weights=_flip_bytes)),
    # ------------------------------------------------------------------ export
    Bad("export-run-missing", "export {tmp}/norun -o {tmp}/m2", "not a training run",
        path="{tmp}/norun"),
    Bad("export-run-is-dataset", "export {data} -o {tmp}/m2", "not a training run"),
    *[Bad(f"export-{name}", EXPORT, expect, setup=copy_run(edit))
      for name, edit, expect in [
          ("no-checkpoint", lambda r: shutil.rmtree(r / "checkpoints"), "no complete checkpoint"),
          ("state-no-step", lambda r: _edit_json(_last_ck(r) / "state.json",
                                                 lambda s: s.pop("step")), "damaged checkpoint"),
          ("state-no-wall", lambda r: _edit_json(_last_ck(r) / "state.json",
                                                 lambda s: s.pop("wall_s")), "damaged checkpoint"),
          ("weights-truncated", lambda r: _truncate_half(_last_ck(r) / "model.safetensors"),
           "damaged checkpoint"),
          ("run-json-list", lambda r: (r / "run.json").write_text("[]"), "damaged run file"),
          ("run-json-hidden-1e6", lambda r: _edit_json(r / "run.json", lambda m: m["model"][
              "decoder"].__setitem__("hidden", 10**6)), "hidden must be between"),
          ("run-json-no-stats", lambda r: _edit_json(r / "run.json", lambda m: m.__setitem__(
              "dataset_stats", {})), "statistics lack")]],
    # ------------------------------------------------------------------ eval
    Bad("eval-dataset-no-val", "eval {model} {tmp}/data", "no val examples",
        setup=copy_data(lambda d: _edit_json(d / "manifest.json",
                                             lambda m: m["examples"].__setitem__("val", [])))),
    Bad("eval-data-missing", "eval {model} {tmp}/nothing", "no such file",
        path="{tmp}/nothing"),
    # ------------------------------------------------------------------ render (MIDI)
    *[Bad(f"render-{f}", f"render {{in}}/{f} --model {{model}} -o {{tmp}}/o.wav --quiet", expect,
          path=f"{{in}}/{f}")
      for f, expect in [("notmidi.mid", "not a MIDI file"), ("empty.mid", "empty file"),
                        ("wav_as.mid", "not a MIDI file"), ("header_only.mid", "damaged"),
                        ("damaged.mid", "damaged"), ("drums_only.mid", "only drum notes"),
                        ("no_notes.mid", "no notes"), ("slow_tempo.mid", "the limit is 3600 s"),
                        ("fifo.mid", "not a regular file"), ("no_such.mid", "no such file"),
                        ("folder.wav", "is a folder")]],
    Bad("render-track-99", RENDER + " --track 99", "no track 99", path="{in}/ode.mid"),
    # ------------------------------------------------------------------ issue 22: hard edges
    *[Bad(f"match-{name}", argv, expect, setup=setup, path=path)
      for name, argv, expect, setup, path in [
          ("dry-fifo", MATCH.replace("{in}/tone.wav {in}/tone", "{tmp}/f.wav {in}/tone"),
           "not a regular file", a_fifo("f.wav"), "{tmp}/f.wav"),
          ("target-fifo", MATCH.replace("{in}/tone_gain.wav", "{tmp}/f.wav"),
           "not a regular file", a_fifo("f.wav"), "{tmp}/f.wav"),
          ("out-is-the-input", MATCH.replace("{tmp}/res", "{in}/tone.wav"), "not a folder",
           None, "{in}/tone.wav"),
          ("out-holds-other-files", MATCH, "holds other files", a_dir("res", ["keep.txt"]),
           "{tmp}/res"),
          ("out-holds-the-input", MATCH.replace("{in}/tone.wav {in}/tone",
                                                "{tmp}/res/in.wav {in}/tone"),
           "holds an input", chain(a_dir("res"), lambda t, w: shutil.copy(
               w.inputs / "tone.wav", t / "res" / "in.wav")), None),
          ("out-existing-result", MATCH, "exists; pass --force",
           a_dir("res", ["preset.json"]), "{tmp}/res/preset.json"),
          ("unknown-device", MATCH.replace("--chain gain", "--chain flanger"),
           "unknown device", None, None),
          ("unknown-parameter", MATCH.replace("--chain gain", "--chain gain:wet=1"),
           "no parameter", None, None),
          ("unknown-method", MATCH.replace("--chain gain", "--chain gain@magic"),
           "method", None, None),
          ("device-json-deep", MATCH.replace("--chain gain", "--chain {tmp}/dev.json"),
           "damaged JSON|too deep", a_file("dev.json", "[" * 100000), "{tmp}/dev.json"),
          ("device-json-no-kind", MATCH.replace("--chain gain", "--chain {tmp}/dev.json"),
           "dev.json", a_file("dev.json", "{}"), "{tmp}/dev.json"),
          ("dry-one-sample", MATCH.replace("{in}/tone.wav {in}/tone", "{in}/one_sample.wav "
                                           "{in}/tone"), "too short", None,
           "{in}/one_sample.wav"),
          ("dry-silent", MATCH.replace("{in}/tone.wav {in}/tone", "{in}/silence.wav "
                                       "{in}/tone"), "silent", None, "{in}/silence.wav"),
          ("target-nan", MATCH.replace("{in}/tone_gain.wav", "{in}/nan.wav"),
           "NaN or infinite", None, "{in}/nan.wav"),
          ("steps-zero", MATCH + " --steps 0", "steps", None, None)]],
    Bad("proxy-train-fixed-parameter", "proxy train compressor:ratio=4 -o {tmp}/p --steps 2 "
        "--quiet", "fixe"),
    Bad("proxy-train-existing-card", "proxy train gain -o {tmp}/p --steps 2 --quiet",
        "exists; pass --force", setup=a_dir("p", ["MODEL_CARD.md"])),
    Bad("proxy-train-unknown-device", "proxy train flanger -o {tmp}/p --steps 2 --quiet",
        "unknown device"),
    Bad("stream-report-into-model", STREAM.replace("{model}", "{tmp}/m")
        + " --report {tmp}/m/r.json", "model|input", setup=copy_shipped("tiny"),
        path="{tmp}/m/r.json"),
    Bad("transfer-folder-out-inside-it", "transfer {tmp}/ind --model {model} -o {tmp}/ind/out "
        "--quiet", "inside|input", setup=chain(a_dir("ind"), lambda t, w: shutil.copy(
            w.inputs / "tone.wav", t / "ind" / "a.wav"))),
    Bad("transfer-into-model-folder", TM.replace("{tmp}/out.wav", "{tmp}/m/out.wav"),
        "model|input", setup=copy_shipped("tiny"), path="{tmp}/m/out.wav"),
    Bad("eval-out-inside-model", "eval {tmp}/m {in}/tone.wav --out {tmp}/m/res", "model|input",
        setup=copy_shipped("tiny")),
    Bad("export-runtime-into-model", "export-runtime {tmp}/m -o {tmp}/m/x.onnx", "model|input",
        setup=copy_shipped("tiny"), path="{tmp}/m/x.onnx"),
    *[Bad(f"{cmd}-unknown-amount-stage", argv + " --amount flanger=0.5",
          "no stage 'flanger'") for cmd, argv in [("transfer", T), ("render", RENDER),
                                                   ("stream", STREAM)]],
    Bad("transfer-amount-not-a-number", T + " --amount reverb=loud", "number|float"),
    # ------------------------------------------------------------------ presets and fx
    *[Bad(f"{cmd}-effects-{name}", argv + " --effects {tmp}/p.json", expect,
          setup=a_file("p.json", content), path="{tmp}/p.json")
      for cmd, argv in [("transfer", T), ("render", RENDER)]
      for name, content, expect in [
          ("unknown-device", '{"chain": [{"device": "flanger"}]}', "unknown device 'flanger'"),
          ("out-of-range", '{"chain": [{"device": "peak", "params": {"gain_db": 99}}]}',
           r"outside \[-24, 24\]"),
          ("not-json", "{chain", "damaged"),
          ("device-file", '{"command": ["sox", "{input}", "{output}"]}', "a device file"),
          ("no-twin", '{"chain": [{"device": "x", "source": "%s"}]}'
           % (REPO / "examples" / "devices" / "sox_overdrive.json"), "no PyTorch twin")]],
    Bad("transfer-effects-missing", T + " --effects {tmp}/none.json", "cannot read",
        path="{tmp}/none.json"),
    Bad("fx-preset-missing", "fx {tmp}/none.json {in}/tone.wav -o {tmp}/o.wav --quiet",
        "cannot read", path="{tmp}/none.json"),
    Bad("fx-out-is-the-input", "fx {tmp}/p.json {tmp}/in.wav -o {tmp}/in.wav --quiet",
        "input itself", setup=chain(a_file("p.json", '{"chain": []}'),
                                    input_copy("tone.wav", "in.wav")), path="{tmp}/in.wav"),
    Bad("fx-out-is-the-preset", "fx {tmp}/p.wav {in}/tone.wav -o {tmp}/p.wav --quiet",
        "input itself|damaged", setup=a_file("p.wav", '{"chain": []}'), path="{tmp}/p.wav"),
    Bad("fx-input-fifo", "fx {tmp}/p.json {in}/fifo.wav -o {tmp}/o.wav --quiet",
        "not a regular file", setup=a_file("p.json", '{"chain": []}'), path="{in}/fifo.wav"),
    Bad("fx-input-text", "fx {tmp}/p.json {in}/text.wav -o {tmp}/o.wav --quiet",
        "unreadable audio", setup=a_file("p.json", '{"chain": []}'), path="{in}/text.wav"),
    Bad("render-midi-1gb", "render {tmp}/big.mid --model {model} -o {tmp}/o.wav --quiet",
        "too large", setup=lambda t, w: _replace(t / "big.mid", None, "sparse"),
        path="{tmp}/big.mid"),
]


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _flip_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10:40] = b"\xff" * 30
    path.write_bytes(bytes(data))


def _paths(ws: Workspace, tmp: Path) -> dict:
    udir = ws.inputs / UNICODE_DIR
    return {"in": ws.inputs, "model": ws.model, "data": ws.data, "tmp": tmp, "udir": udir,
            "ubroken": udir / "broken ♪.wav", "utone": udir / "tone ♪ 1.wav",
            "uout": tmp / "nëw földer ♪" / "sub" / "öut ♪.flac"}


def _fmt(template: str, paths: dict) -> list[str]:
    """Split a command template on spaces, then fill in the paths (which may hold spaces)."""
    return [word.format(**paths) for word in template.split()]


def _params(cases):
    params = []
    for c in cases:
        marks = []
        if c.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=c.xfail))
        if getattr(c, "slow", False):
            marks.append(pytest.mark.slow)
        params.append(pytest.param(c, id=c.id, marks=marks))
    return params


class _FifoWatch:
    """Notices when the command opens one of ``fifos`` (it would hang for ever): a writer is
    attached at once, which unblocks the reader with an empty read, and the case fails."""

    def __init__(self, fifos):
        self.fifos = list(fifos)
        self.opened: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            for f in self.fifos:
                try:
                    fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # ENXIO: nobody is reading it
                    continue
                os.close(fd)
                self.opened.append(str(f))

    def __enter__(self):
        if self.fifos:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.fifos:
            self._thread.join()


# a fresh process shows each UserWarning/RuntimeWarning on stderr with its source line
_QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                     ResourceWarning, FutureWarning)


def _call(argv: list[str], capsys, fifos=()) -> dict:
    """main(argv) in-process, as a terminal would see it: exit code, stdout, stderr (with the
    warnings a fresh process prints), the traceback's last line if it raised, and the FIFOs
    it opened."""
    capsys.readouterr()
    with _FifoWatch(fifos) as watch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in _QUIET_CATEGORIES:
            warnings.simplefilter("ignore", category)
        try:
            rc, tb = main(argv), None
        except BaseException as err:  # noqa: BLE001 - any exception is a traceback for the user
            rc = None
            tb = "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()[-1]
    out, err = capsys.readouterr()
    err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                   for w in caught)
    return {"rc": rc, "out": out, "err": err, "tb": tb, "fifos_opened": watch.opened}


def _fifos(*roots) -> list[Path]:
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found += [Path(dirpath) / n for n in filenames
                      if stat.S_ISFIFO(os.lstat(Path(dirpath) / n).st_mode)]
    return found


def _record(case_id, argv, res, left, ws, tmp) -> None:
    lines = [line for line in res["err"].splitlines() if line.strip()]

    def short(text):
        return text.replace(str(tmp), "TMP").replace(str(ws.inputs), "IN").replace(
            str(ws.model), "MODEL").replace(str(ws.data), "DATA")

    OUTCOMES.append({"id": case_id, "argv": short(" ".join(argv)), "rc": res["rc"],
                     "stderr": short(lines[0]) if lines else "", "stderr_lines": len(lines),
                     "traceback": res["tb"] and short(res["tb"]),
                     "fifos_opened": [short(f) for f in res["fifos_opened"]],
                     "left": [short(d) for d in left]})


@pytest.mark.parametrize("case", _params(BAD))
def test_bad_input(case: Bad, ws: Workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case.setup is not None:
        case.setup(tmp_path, ws)
    if case.no_work and not os.environ.get("USER_ERRORS_ALLOW_WORK"):
        _forbid_work(monkeypatch)
    paths = _paths(ws, tmp_path)
    argv = _fmt(case.argv, paths)
    roots = [tmp_path] + ws.watched()
    before = _snapshot(roots)
    res = _call(argv, capsys, _fifos(tmp_path, ws.inputs))
    left = _diff(before, _snapshot(roots))
    _record(case.id, argv, res, left, ws, tmp_path)
    err = res["err"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert res["tb"] is None, f"traceback: {res['tb']}"
    assert not res["fifos_opened"], f"opened a FIFO and would hang: {res['fifos_opened']}"
    assert res["rc"] not in (0, None), f"exit code {res['rc']}; stderr: {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    command = argv[0] if argv and argv[0] in _COMMANDS else ""
    if command in ("control", "proxy") and len(argv) > 1:  # the action is named too
        command = f"{command} {argv[1]}"
    prefix = f"ddsp-synth {command}: error: " if command else "ddsp-synth: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert re.search(case.expect, lines[0]), f"{case.expect!r} not in {lines[0]!r}"
    if case.path is not None:
        p = case.path.format(**paths)
        assert lines[0].count(p) == 1, f"{p!r} should appear once in {lines[0]!r}"
    assert not left, f"partial output or changed files: {left}"


class WorkBeforeCheck(Exception):
    """Analysis, synthesis, export or training started before a bad input was refused."""


# The expensive steps; a bad input or output must be refused before any of them runs.
_WORK = ("ddsp_synth.features.crepe_activations", "ddsp_synth.pitch.crepe_activations",
         "ddsp_synth.pitch.crepe_runner", "ddsp_synth.streaming.features.crepe_runner",
         "ddsp_synth.transfer.ChunkedRenderer", "ddsp_synth.demo.render_demo",
         "ddsp_synth.streaming.export_runtime", "ddsp_synth.train.loop.train_step",
         "ddsp_synth.match.run._optimise", "ddsp_synth.gradients.proxy.train._fit",
         "ddsp_synth.fx.fx_file")


def _forbid_work(monkeypatch) -> None:
    import importlib

    # import every module first: one imported while another is patched would keep the patch
    modules = [importlib.import_module(t.rsplit(".", 1)[0]) for t in _WORK]
    for target, module in zip(_WORK, modules):

        def refuse(*args, _what=target, **kwargs):
            raise WorkBeforeCheck(f"{_what} ran before the bad input was refused")
        monkeypatch.setattr(module, target.rsplit(".", 1)[1], refuse)


_COMMANDS = {"demo", "prepare", "train", "export", "eval", "transfer", "resynth", "render",
             "stream", "export-runtime", "match", "proxy", "fx"}


# ----------------------------------------------------------------------------- odd but valid
@dataclass(frozen=True)
class Odd:
    """An unusual input that must work: exit code 0, nothing on stderr but warnings, the
    output where it belongs (``seconds`` long if audio, within one hop), inputs unchanged."""

    id: str
    argv: str
    output: str
    seconds: float | None = None
    setup: Callable | None = None
    xfail: str | None = None


ODD = [
    *[Odd(f"transfer-{f}", f"transfer {{in}}/{f}.wav --model {{model}} -o {{tmp}}/o.wav --quiet",
          "{tmp}/o.wav", s)
      for f, s in [("ch8", 1.5), ("sr8k", 1.5), ("sr96k", 1.5), ("short", 0.05),
                   ("truncated", 15989 / SR)]],
    Odd("resynth-sr96k", "resynth {in}/sr96k.wav --model {model} -o {tmp}/o.flac --quiet",
        "{tmp}/o.flac", 1.5),
    Odd("transfer-unicode-into-missing-folders", "transfer {utone} --model {model} -o {uout} "
        "--quiet", "{uout}", 1.5),
    Odd("transfer-out-existing-folder", T.replace("out.wav", "outdir"), "{tmp}/outdir/tone.wav",
        2.0, setup=a_dir("outdir", ["keep.txt"])),
    Odd("transfer-force-overwrites", T + " --force", "{tmp}/out.wav", 2.0,
        setup=a_file("out.wav", "old")),
    Odd("stream-ch8", "stream {in}/ch8.wav --model {model} -o {tmp}/o.wav --quiet "
        "--engine torch", "{tmp}/o.wav", 1.5),
    Odd("stream-short", "stream {in}/short.wav --model {model} -o {tmp}/o.wav --quiet "
        "--engine torch", "{tmp}/o.wav", 0.05),
    Odd("demo-unicode-into-missing-folders", "demo -o {uout} --seconds 0.5", "{uout}",
        1.5 - 1 / SR),
    Odd("render-fast-tempo", "render {in}/fast_tempo.mid --model {model} -o {tmp}/o.wav --quiet",
        "{tmp}/o.wav", 0.21),
    Odd("render-extreme-notes", "render {in}/extreme_notes.mid --model {model} -o {tmp}/o.wav "
        "--quiet", "{tmp}/o.wav", 1.2),
    Odd("render-20000-notes-at-once", "render {in}/cluster.mid --model {model} -o {tmp}/o.wav "
        "--quiet", "{tmp}/o.wav", 0.7),
    Odd("eval-0.05s", "eval {model} {in}/short.wav", "stdout.json"),
    Odd("prepare-odd-files-unicode-output", "prepare {in}/ch8.wav {in}/sr8k.wav {in}/sr96k.wav "
        "{udir} -o {uout}.data --quiet --example-seconds 0.5 --val-seconds 0",
        "{uout}.data/manifest.json"),
    Odd("train-readme-partial-override", TRAINC + " --steps 1",
        "{tmp}/run/checkpoints/step-0000001/state.json",
        setup=train_config({"model": {"decoder": {"hidden": 64}},
                            "train": {"batch_size": 2, "val_every": 0, "audio_every": 0,
                                      "num_threads": 1}})),
    Odd("export-with-damaged-optimizer-state", EXPORT, "{tmp}/m2/config.json",
        setup=copy_run(lambda r: _truncate_half(_last_ck(r) / "optimizer.safetensors"))),
    Odd("export-force-over-existing-model", EXPORT + " --force", "{tmp}/m2/config.json",
        setup=chain(copy_run(), lambda t, w: shutil.copytree(w.model, t / "m2"))),
]


@pytest.mark.parametrize("case", _params(ODD))
def test_odd_input_works(case: Odd, ws: Workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case.setup is not None:
        case.setup(tmp_path, ws)
    paths = _paths(ws, tmp_path)
    argv = _fmt(case.argv, paths)
    before = _snapshot(ws.watched())
    res = _call(argv, capsys, _fifos(tmp_path, ws.inputs))
    left = _diff(before, _snapshot(ws.watched()))
    _record(case.id, argv, res, left, ws, tmp_path)
    assert res["tb"] is None, f"traceback: {res['tb']}"
    assert res["rc"] == 0, res["err"]
    # warnings are fine, as one line each; errors and Python's warning format are not
    for line in res["err"].splitlines():
        assert "error" not in line.lower() and not re.search(r"\.py:\d+: \w+Warning", line), line
    assert not left, f"inputs changed: {left}"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    if case.output == "stdout.json":
        metrics = json.loads(res["out"], parse_constant=_not_json)
        assert metrics["examples"] == 1
        assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))
        return
    out = Path(case.output.format(**paths))
    assert out.is_file(), f"no {out}"
    assert stat.S_IMODE(out.stat().st_mode) & 0o044, "outputs get normal permissions"
    if out.suffix == ".json":
        json.loads(out.read_text())
        return
    y, sr = sf.read(out, dtype="float32")
    assert y.ndim == 1 and np.isfinite(y).all() and np.abs(y).max() > 1e-4
    assert abs(len(y) / sr - case.seconds) <= 0.01 + 1.5 / sr, (len(y) / sr, case.seconds)


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


def test_batch_with_bad_files_finishes_the_good_ones(ws, tmp_path, capsys):
    """A folder holding one good and one broken file (unicode names with spaces): the good one
    is written, the broken one is one line naming it, exit code 1."""
    out = tmp_path / "out ♪"
    res = _call(["transfer", str(ws.inputs / UNICODE_DIR), "--model", str(ws.model), "-o",
                 str(out), "--quiet", "--format", "flac"], capsys)
    assert res["tb"] is None and res["rc"] == 1, res
    lines = res["err"].strip().splitlines()
    broken = ws.inputs / UNICODE_DIR / "broken ♪.wav"
    assert len(lines) == 1 and lines[0].count(str(broken)) == 1, lines
    assert lines[0].startswith("ddsp-synth transfer: error: ")
    assert sorted(p.name for p in out.iterdir()) == ["tone ♪ 1.flac"]
    assert abs(sf.info(out / "tone ♪ 1.flac").duration - 1.5) < 0.011


def test_interrupt_during_transfer_leaves_no_partial_output(ws, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the output is being written: exit 130, one line, no file, no .tmp."""
    import soundfile

    real_write = soundfile.write

    def interrupted(file, *args, **kwargs):
        real_write(file, *args, **kwargs)  # the temporary file is complete...
        raise KeyboardInterrupt  # ...and Ctrl-C arrives before the rename

    monkeypatch.setattr(soundfile, "write", interrupted)
    res = _call(["transfer", str(ws.inputs / "tone.wav"), "--model", str(ws.model), "-o",
                 str(tmp_path / "o.wav"), "--quiet"], capsys)
    assert res["tb"] is None and res["rc"] == 130, res
    assert res["err"].strip() == "ddsp-synth transfer: interrupted"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_kill_or_a_closed_terminal_stop_any_command_as_ctrl_c_does(ws, tmp_path, sig):
    """SIGTERM and SIGHUP (kill, a closed terminal) used to end a command on the spot (exit
    143 or 129, no word, a temporary file left if it came during a write). Now they stop it
    as Ctrl-C does: one line, 128 + the signal, nothing written. (A transfer that has read
    its input and is analysing it.)"""
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(synth_tone(2.0, SR, 220.0), 60), SR)  # 2 min: time to stop it
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "ddsp_synth", "transfer", str(long),
                             "--model", str(ws.model), "-o", str(out / "o.wav"), "--no-cache"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            # as from a terminal, even when the suite runs under nohup
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    seen = ""
    while "s audio" not in seen:  # the progress bar: the work has begun
        seen += proc.stderr.read(1)
        assert seen or proc.poll() is None
    time.sleep(0.5)
    proc.send_signal(getattr(signal, sig))
    err = seen + proc.stderr.read()
    assert proc.wait(60) == 128 + getattr(signal, sig)
    assert err.rstrip().endswith("ddsp-synth transfer: interrupted"), err
    assert "Traceback" not in err and list(out.iterdir()) == []


# ----------------------------------------------------------------------------- signals, kill -9
KILL_TARGET_STEPS = 30


@dataclass
class Frozen:
    """The package as it was when the module started, for training subprocesses: a resumed
    run is compared with an uninterrupted one bit for bit, so every process of a test must
    run the same code even while the checkout is being edited."""

    root: Path
    env: dict
    cfg: Path  # tiny settings, a checkpoint every 2 steps
    ref: dict  # weights after KILL_TARGET_STEPS uninterrupted steps

    def run(self, argv, **kwargs):
        return subprocess.run([PY, "-m", "ddsp_synth", *argv], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=600, check=False, **kwargs)

    def popen(self, argv, prefix=("-m", "ddsp_synth")):
        return subprocess.Popen([PY, *prefix, *argv], env=self.env, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def frozen(ws, tmp_path_factory) -> Frozen:
    from safetensors.torch import load_file

    from ddsp_synth.train import list_checkpoints

    root = tmp_path_factory.mktemp("frozen")
    shutil.copytree(REPO / "ddsp_synth", root / "src" / "ddsp_synth",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cfg = root / "cfg.json"
    settings = tiny_config(checkpoint_every=2)
    del settings["train"]["steps"]
    cfg.write_text(json.dumps(settings))
    frozen = Frozen(root, {**CHILD_ENV, "PYTHONPATH": str(root / "src")}, cfg, {})
    done = frozen.run(_train_argv(ws, root / "ref", cfg, "--steps", str(KILL_TARGET_STEPS)))
    assert done.returncode == 0, done.stderr
    frozen.ref = load_file(str(list_checkpoints(root / "ref")[-1] / "model.safetensors"))
    return frozen


def _train_argv(ws, run, cfg, *extra):
    return ["train", str(ws.data), "-o", str(run), "--config", str(cfg), "--quiet", *extra]


def _logged_steps(run: Path) -> int:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line).get("step", 0))
        except json.JSONDecodeError:  # a line cut by kill -9
            pass
    return max(steps, default=0)


def _wait_for(predicate, proc, timeout=180.0):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.communicate()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("training made no progress")
        time.sleep(0.05)


def _last_step(run: Path) -> int:
    from ddsp_synth.train import list_checkpoints

    return int(list_checkpoints(run)[-1].name.split("-")[1])


def _assert_resumes_exactly(ws, run, frozen: Frozen):
    import torch
    from safetensors.torch import load_file

    from ddsp_synth.train import list_checkpoints

    done = frozen.run(_train_argv(ws, run, frozen.cfg, "--resume", "--steps",
                                  str(KILL_TARGET_STEPS)))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    last = list_checkpoints(run)[-1]
    assert last.name == f"step-{KILL_TARGET_STEPS:07d}"
    assert not list((run / "checkpoints").glob("*.tmp")), "a stale temporary checkpoint"
    got = load_file(str(last / "model.safetensors"))
    assert got.keys() == frozen.ref.keys()
    assert all(torch.equal(got[k], frozen.ref[k]) for k in frozen.ref), "resumed run differs"


def _interrupt(ws, run, frozen: Frozen, sig, after_step: int, resume: bool) -> int:
    """Train in a subprocess, send ``sig`` once ``after_step`` is logged: exit 128 + sig, one
    line on stderr, a checkpoint at the step it stopped. Returns that step."""
    extra = ("--resume",) if resume else ()
    proc = frozen.popen(_train_argv(ws, run, frozen.cfg, *extra, "--steps", "100000"))
    _wait_for(lambda: _logged_steps(run) >= after_step, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--resume" in lines[0], err
    step = _last_step(run)
    assert lines[0].startswith(f"interrupted at step {step};"), (lines[0], step)
    return step


@pytest.mark.slow
def test_sigint_sigterm_kill9_then_resume_continues_exactly(ws, frozen, tmp_path):
    """Ctrl-C during training exits 130 with a checkpoint and one line; so does SIGTERM on
    the resumed run; resumed again and killed with -9 mid-training, it resumes once more and
    its final weights equal an uninterrupted run's, bit for bit."""
    run = tmp_path / "run"
    on_sigint = _interrupt(ws, run, frozen, signal.SIGINT, 3, resume=False)
    assert 3 <= on_sigint < KILL_TARGET_STEPS - 12
    on_sigterm = _interrupt(ws, run, frozen, signal.SIGTERM, on_sigint + 3, resume=True)
    assert on_sigint < on_sigterm < KILL_TARGET_STEPS - 8
    proc = frozen.popen(_train_argv(ws, run, frozen.cfg, "--resume", "--steps", "100000"))
    _wait_for(lambda: _logged_steps(run) >= on_sigterm + 5, proc)
    proc.kill()  # SIGKILL: no handler, no checkpoint
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert on_sigterm < _last_step(run) < KILL_TARGET_STEPS
    _assert_resumes_exactly(ws, run, frozen)


KILL_MID_CHECKPOINT = r"""
import os, signal, sys
import safetensors.torch as st
real = st.save_file
calls = {"n": 0}
def save_file(tensors, path, *args, **kwargs):
    real(tensors, path, *args, **kwargs)
    if str(path).endswith("optimizer.safetensors"):
        calls["n"] += 1
        if calls["n"] == 3:  # the third checkpoint: half written, then kill -9
            os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
st.save_file = save_file
from ddsp_synth.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill9_during_checkpoint_write_then_resume_continues_exactly(ws, frozen, tmp_path):
    from ddsp_synth.train import list_checkpoints

    run = tmp_path / "run"
    proc = frozen.popen(_train_argv(ws, run, frozen.cfg, "--steps", "100000"),
                        prefix=("-c", KILL_MID_CHECKPOINT))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    partial = run / "checkpoints" / "step-0000006.tmp"
    assert (partial / "optimizer.safetensors").is_file(), "not killed mid-write"
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002", "step-0000004"]
    _assert_resumes_exactly(ws, run, frozen)


# ----------------------------------------------------------------------------- hour-long input
# Peak memory from VmHWM: getrusage's ru_maxrss of a child started by a big process (pytest,
# vfork + exec) starts at the parent's resident size, so it would measure pytest.
HOUR_CHILD = r"""
import json, re, sys
from ddsp_synth.cli import main
peaks = []
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    status = open("/proc/self/status").read()
    peaks.append([argv[0], rc, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024])
print(json.dumps(peaks))
"""


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16_table():
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        table.append(c)
    return table


_CRC16 = _crc16_table()


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    if n < 0x10000:
        return bytes([0xE0 | n >> 12, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])
    return bytes([0xF0 | n >> 18, 0x80 | n >> 12 & 0x3F, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])


def silent_flac(path: Path, seconds: float, sr: int = 48000, channels: int = 2,
                block: int = 16384) -> None:
    """A real, decodable FLAC of digital silence (16-bit), written directly (CONSTANT
    subframes): 3 hours of 48 kHz stereo in 0.6 MB and half a second, where encoding them
    would take a quarter of a minute. Decoded, it is 518 million frames."""
    total = int(seconds * sr)
    sr_code = {44100: 0x9, 48000: 0xA, 96000: 0xB}[sr]
    info = struct.pack(">HH", block, block) + bytes(6)
    info += ((sr << 44) | ((channels - 1) << 41) | (15 << 36) | total).to_bytes(8, "big")
    parts = [b"fLaC", bytes([0x80, 0, 0, 34]), info, bytes(16)]
    for i in range(-(-total // block)):
        size = min(block, total - i * block)
        head = (bytes([0xFF, 0xF8, 0x70 | sr_code, (channels - 1) << 4 | 0b1000])
                + _utf8_number(i) + struct.pack(">H", size - 1))
        frame = head + bytes([_crc8(head)]) + b"\0\0\0" * channels
        parts.append(frame + struct.pack(">H", _crc16(frame)))
    path.write_bytes(b"".join(parts))


@pytest.fixture(scope="module")
def hour_flac(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "hour of silence.flac"
    silent_flac(path, 3600.0)
    assert sf.info(str(path)).frames == 3600 * 48000
    return path


# peak memory allowed: prepare reads block by block; transfer holds the input whole at the
# model's rate (an hour at 16 kHz is 230 MB of float32; decoding it whole at 48 kHz stereo
# in float64, as soundfile does by default, would take 1.4 GB)
HOUR_LIMITS_MB = {"prepare": 700, "transfer": 1200}


@pytest.mark.slow
def test_hour_long_input_in_bounded_memory(hour_flac, ws, tmp_path):
    """An hour of 48 kHz stereo (691 MB as 16-bit PCM) is read without holding it whole at
    its own rate, and the silent hour is refused in one line. One process runs prepare,
    then transfer, and reports its peak memory after each (peaks only grow)."""
    commands = [["prepare", str(hour_flac), "-o", str(tmp_path / "data"), "--quiet"],
                ["transfer", str(hour_flac), "--model", str(ws.model), "-o",
                 str(tmp_path / "o.wav"), "--quiet"]]
    proc = subprocess.run([PY, "-c", HOUR_CHILD, json.dumps(commands)], env=CHILD_ENV,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    peaks = json.loads(proc.stdout.strip().splitlines()[-1])
    for command, rc, peak_mb in peaks:
        OUTCOMES.append({"id": f"hour-long-{command}", "rc": rc, "peak_rss_mb": round(peak_mb)})
        assert rc in (1, 2), (command, rc)
        assert peak_mb < HOUR_LIMITS_MB[command], f"{command}: peak RSS {peak_mb:.0f} MB"
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert [e.split(":")[0] for e in errors] == ["ddsp-synth prepare", "ddsp-synth transfer"]
    assert all(e.count(str(hour_flac)) == 1 and "silent" in e for e in errors), errors
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "partial output"


# ----------------------------------------------------------------------------- the web demo
APP_MAX_SECONDS = 5


@dataclass
class AppServer:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


@pytest.fixture(scope="module")
def app_server(ws, tmp_path_factory):
    """``python app.py`` in its own process (its terminal is its stderr, its memory its
    own), offering the tiny model as 'tiny', inputs up to 5 s and uploads up to 2 MB."""
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    root = tmp_path_factory.mktemp("app")
    shutil.copytree(ws.model, root / "models" / "tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = root / "terminal.log"
    tmp = root / "tmp"  # the app's temporary folders: checked empty after it stops
    tmp.mkdir()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [PY, str(REPO / "app.py"), "--port", str(port), "--models-dir", str(root / "models"),
             "--max-seconds", str(APP_MAX_SECONDS), "--max-upload-mb", "2"],
            stdout=fh, stderr=subprocess.STDOUT, cwd=root,
            env={**CHILD_ENV, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp)})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the app exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                pytest.fail("the app did not start")
            time.sleep(0.5)
    yield AppServer(url, proc, log)
    proc.terminate()  # as a service manager stops it: its outputs' folder goes with it
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return
    assert not list(tmp.glob("ddsp_synth_app_*")), "the app left its outputs' folder behind"


def _app_predict(server, audio=None, midi=None, instrument="tiny", pitch=0.0, quiet_db=40.0):
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    return client.predict(handle_file(str(audio)) if audio else None,
                          handle_file(str(midi)) if midi else None, instrument, True, pitch, 0.0,
                          quiet_db, 1.0, 1.0, 1.0, api_name="/transfer")


def _app_error(server, **kwargs) -> str:
    with pytest.raises(Exception) as err:  # gradio_client raises its AppError
        _app_predict(server, **kwargs)
    return str(err.value)


@pytest.mark.slow
def test_app_refuses_a_three_hour_upload_from_its_header(app_server, ws, tmp_path):
    """A 0.6 MB FLAC that decodes to 3 h of 48 kHz stereo (518 M frames, 2 GB as int16) is
    refused from its header: the app's peak memory does not move."""
    out, *_ = _app_predict(app_server, audio=ws.inputs / "tone.wav")  # warm: model, CREPE
    assert abs(sf.info(out).duration - 2.0) < 0.011
    flac = tmp_path / "three hours.flac"
    silent_flac(flac, 3 * 3600.0)
    before = app_server.peak_rss_mb()
    message = _app_error(app_server, audio=flac)
    grown = app_server.peak_rss_mb() - before
    OUTCOMES.append({"id": "app-3h-flac", "message": message, "peak_rss_growth_mb": grown})
    assert "three hours.flac is 10800 s long; this demo takes at most 5 s" in message
    assert grown < 150, f"peak memory grew by {grown:.0f} MB: the upload was decoded"


APP_BAD = [
    ("text.wav", {"audio": "text.wav"}, "Could not read text.wav: unreadable audio"),
    ("empty.wav", {"audio": "empty.wav"}, "Could not read empty.wav: empty file (0 bytes)"),
    ("nan.wav", {"audio": "nan.wav"}, "Could not read nan.wav: audio contains NaN"),
    ("silence.wav", {"audio": "silence.wav"}, "Cannot transfer silence.wav: the input is silent"),
    ("noise.wav", {"audio": "noise.wav"}, "No pitch found in noise.wav"),
    ("sr1hz.wav", {"audio": "sr1hz.wav"}, "sr1hz.wav is 20 s long"),
    ("png-as-audio", {"audio": "pic.png"}, "Could not read pic.png: unreadable audio"),
    ("midi-as-audio", {"audio": "ode.mid"}, "Could not read ode.mid: unreadable audio"),
    ("notmidi.mid", {"midi": "notmidi.mid"}, "Cannot play notmidi.mid: not a MIDI file"),
    ("wav_as.mid", {"midi": "wav_as.mid"}, "Cannot play wav_as.mid: not a MIDI file"),
    ("drums_only.mid", {"midi": "drums_only.mid"}, "Cannot play drums_only.mid: only drum notes"),
    ("no_notes.mid", {"midi": "no_notes.mid"}, "Cannot play no_notes.mid: no notes"),
    ("slow_tempo.mid", {"midi": "slow_tempo.mid"}, "the limit is 5 s"),
]


@pytest.mark.slow
def test_app_bad_uploads_get_one_friendly_message(app_server, ws, tmp_path):
    """Every bad upload gets a message naming the file (never its temporary path), uploads
    over the limit are refused by the server without being held, the app serves the next
    request, and its terminal shows no traceback or Python warning."""
    import httpx

    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    start = len(app_server.log_text())
    for name, kwargs, expect in APP_BAD:
        files = {k: (tmp_path / v if v == "pic.png" else ws.inputs / v) for k, v in kwargs.items()}
        message = _app_error(app_server, **files)
        OUTCOMES.append({"id": f"app-{name}", "message": message})
        assert expect in message, (name, message)
        assert "/tmp" not in message and "gradio" not in message.lower(), message
    big = tmp_path / "big.wav"  # 3.2 MB, over the 2 MB upload limit
    sf.write(big, np.zeros((800_000, 2), np.int16), 48000)
    message = _app_error(app_server, audio=big)
    OUTCOMES.append({"id": "app-upload-over-limit", "message": message})
    assert "exceeds the maximum file size" in message
    # the server itself refuses (not only gradio_client), without holding the upload
    huge = tmp_path / "huge upload.wav"
    with open(huge, "wb") as fh:
        fh.truncate(300 << 20)  # 300 MB, sparse
    before = app_server.peak_rss_mb()
    with open(huge, "rb") as fh:
        reply = httpx.post(app_server.url + "gradio_api/upload", files={"files": fh}, timeout=120)
    grown = app_server.peak_rss_mb() - before
    OUTCOMES.append({"id": "app-raw-upload-300mb", "status": reply.status_code,
                     "message": reply.text[:200], "peak_rss_growth_mb": grown})
    assert reply.status_code == 413 and "maximum allowed size" in reply.text
    assert grown < 50, f"peak memory grew by {grown:.0f} MB"
    out, *_ = _app_predict(app_server, audio=ws.inputs / "ch8.wav")
    assert abs(sf.info(out).duration - 1.5) < 0.011
    *_, summary = _app_predict(app_server)  # nothing chosen: a note, not an error
    assert "Upload or record some audio" in summary
    terminal = app_server.log_text()[start:]
    assert "Traceback" not in terminal and "Warning" not in terminal, terminal[-3000:]


@pytest.mark.slow
def test_app_eight_concurrent_users_good_and_bad(app_server, ws):
    """Eight users at once, half of them with bad files: every good request gets its own
    output, every bad one its message, and nothing reaches the terminal."""
    from concurrent.futures import ThreadPoolExecutor

    start = len(app_server.log_text())
    bad = ["text.wav", "silence.wav", "nan.wav", "empty.wav"]

    def user(i):
        if i % 2:
            return ("bad", _app_error(app_server, audio=ws.inputs / bad[i // 2]))
        out, *_ = _app_predict(app_server, audio=ws.inputs / "tone.wav", pitch=float(i))
        return ("good", out, sf.info(out).duration)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(user, range(8)))
    good = [r for r in results if r[0] == "good"]
    assert len(good) == 4 and len({r[1] for r in good}) == 4, results
    assert all(abs(r[2] - 2.0) < 0.011 for r in good), results
    assert [r[1].split(":")[0] for r in results if r[0] == "bad"] == [
        "Could not read text.wav", "Cannot transfer silence.wav", "Could not read nan.wav",
        "Could not read empty.wav"], results
    terminal = app_server.log_text()[start:]
    assert "Traceback" not in terminal and "Warning" not in terminal, terminal[-3000:]


@pytest.mark.slow
def test_app_out_of_range_api_values_leave_no_traceback(app_server, ws):
    start = len(app_server.log_text())
    assert "not in the list of choices" in _app_error(app_server, audio=ws.inputs / "tone.wav",
                                                      instrument="tuba")
    assert "greater than maximum" in _app_error(app_server, audio=ws.inputs / "tone.wav",
                                                pitch=1e9)
    terminal = app_server.log_text()[start:]
    assert "Traceback" not in terminal, terminal[-2000:]


@pytest.mark.slow
def test_app_absurd_level_upload(app_server, ws):
    start = len(app_server.log_text())
    message = _app_error(app_server, audio=ws.inputs / "huge.wav")
    assert re.search("above full scale", message), message
    terminal = app_server.log_text()[start:]
    assert "Warning" not in terminal and "Traceback" not in terminal, terminal[-2000:]
