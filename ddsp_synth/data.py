"""Preparing recordings into a dataset of examples, and the Dataset that reads it.

Layout of a prepared ``DATA_DIR``::

    manifest.json            settings, files, example windows (train/val), skipped inputs
    stats.json               dataset statistics (pitch, loudness, confidence) of the train part
    files/<key>/audio.pcm    int16 mono audio at the feature sample rate (read by memmap)
    files/<key>/f0_hz.npy, confidence.npy, loudness_db.npy   float32 [n_frames]
    files/<key>/done.json    written last: the file is complete (re-runs skip it)

Examples are windows of ``example_seconds`` over these arrays, so overlapping windows cost no
extra disk. The validation part of every file is its last ``val_seconds`` (by time); training
windows never reach into it. A file's key depends on the feature settings alone, so the split
is made when the manifest is written, from the settings of that run.

An interrupted ``prepare`` keeps the files it finished (each with its ``done.json``) and
removes the one it was working on; the manifest is written only when every file is done (a
first run's folder has none until then), and the same command again prepares only the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio_io import (PCM16_SCALE, AudioError, SkipFile, atomic_write_bytes, find_audio_files,
                       header_seconds, iter_audio_blocks)
from .config import check_fields, from_dict
from .dsp.units import hz_to_midi
from .features import FeatureConfig, features_in_blocks
from .pitch import VOICED_CONFIDENCE

DATASET_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of ``ddsp-synth prepare``.

    Attributes:
        features: feature extraction settings (sample rate, hop, CREPE model, ...).
        example_seconds: length of one training example.
        example_hop_seconds: step between training windows (overlap = length - hop).
        val_seconds: held-out tail of each file (capped at 20 % of a short file).
        block_seconds: audio processed per block, bounding memory for long files.
        context_seconds: extra audio either side of a block, so block joins change nothing.
        silence_db: a file whose loudest frame is below this is skipped as silent.
        voiced_confidence: CREPE confidence at or above which a frame counts as voiced.
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    example_seconds: float = 4.0
    example_hop_seconds: float = 1.0
    val_seconds: float = 20.0
    block_seconds: float = 60.0
    context_seconds: float = 2.0
    silence_db: float = -60.0
    voiced_confidence: float = VOICED_CONFIDENCE

    def __post_init__(self):
        check_fields(self, ranges={"example_seconds": (0.1, 60.0),
                                   "example_hop_seconds": (0.01, 60.0), "val_seconds": (0.0, 3600.0),
                                   "block_seconds": (1.0, 3600.0), "context_seconds": (0.0, 60.0),
                                   "silence_db": (-200.0, 0.0), "voiced_confidence": (0.0, 1.0)})

    @classmethod
    def for_sample_rate(cls, sample_rate: int = 16000, frame_rate_hz: float = 100.0,
                        hop: int | None = None, crepe_model: str = "tiny",
                        **kwargs) -> "PrepareConfig":
        """Feature settings scaled to a sample rate (see :meth:`FeatureConfig.for_sample_rate`),
        other settings from ``kwargs``."""
        return cls(features=FeatureConfig.for_sample_rate(sample_rate, frame_rate_hz,
                                                          crepe_model, hop), **kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PrepareConfig":
        return from_dict(cls, d, "prepare.")


# ----------------------------------------------------------------------------- prepare
def _file_key(path: Path, config: PrepareConfig) -> str:
    st = path.stat()
    h = hashlib.sha1()
    h.update(str(path.resolve()).encode())
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps(asdict(config.features), sort_keys=True).encode())
    return f"{path.stem[:40]}-{h.hexdigest()[:12]}"


def _write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    atomic_write_bytes(path, write)


def prepare_file(path: Path, out_dir: Path, config: PrepareConfig, progress=None) -> dict:
    """Decode, store and analyse one file; returns its manifest entry. Raises SkipFile."""
    key = _file_key(path, config)
    fdir = out_dir / "files" / key
    done = fdir / "done.json"
    if done.exists():
        entry = json.loads(done.read_text())
        if progress is not None:
            progress.update(entry["duration_s"])
        return entry
    fdir.mkdir(parents=True, exist_ok=True)
    try:
        return _prepare_new_file(path, fdir, key, config, progress)
    except BaseException:
        if not done.exists():  # no half-prepared file is left behind; a finished one stays
            shutil.rmtree(fdir, ignore_errors=True)
        raise


def _prepare_new_file(path: Path, fdir: Path, key: str, config: PrepareConfig, progress) -> dict:
    fc = config.features
    pcm_tmp = fdir / "audio.pcm.tmp"
    n = 0
    peak = 0.0
    with open(pcm_tmp, "wb") as fh:
        for block in iter_audio_blocks(path, fc.sample_rate, config.block_seconds):
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            fh.write((np.clip(block, -1, 1) * PCM16_SCALE).astype("<i2").tobytes())
            n += len(block)
    if n < int(config.example_seconds * fc.sample_rate):
        raise SkipFile(f"too short ({n / fc.sample_rate:.2f} s < one example of "
                       f"{config.example_seconds:g} s)")
    if peak < 1e-4:
        raise SkipFile("silent (peak below -80 dBFS)")
    feats = features_in_blocks(np.memmap(pcm_tmp, dtype="<i2", mode="r", shape=(n,)),
                               config.features, config.block_seconds, config.context_seconds,
                               progress)
    if float(feats["loudness_db"].max()) < config.silence_db:
        raise SkipFile(f"silent (loudest frame {feats['loudness_db'].max():.1f} dB < "
                       f"{config.silence_db:g} dB)")
    os.replace(pcm_tmp, fdir / "audio.pcm")
    for k, v in feats.items():
        _save_npy(fdir / f"{k}.npy", v)
    entry = {
        "source": str(path),
        "key": key,
        "n_samples": n,
        "n_frames": len(feats["f0_hz"]),
        "duration_s": n / fc.sample_rate,
    }
    _write_json(fdir / "done.json", entry)
    return entry


def _with_split(entry: dict, config: PrepareConfig) -> dict:
    """A file's manifest entry with its ``train_frames`` and ``val_frames`` ([start, end)
    frames) under ``config``: the held-out tail is ``val_seconds``, at most 20 % of the file,
    and none when that is shorter than one example."""
    fc = config.features
    n_frames = entry["n_frames"]
    example_frames = int(round(config.example_seconds * fc.frame_rate_hz))
    val_s = min(config.val_seconds, 0.2 * entry["n_samples"] / fc.sample_rate)
    val_frames = int(round(val_s * fc.frame_rate_hz))
    if val_frames < example_frames:  # too short to hold out a whole example: train only
        val_frames = 0
    return {**entry, "train_frames": [0, n_frames - val_frames],
            "val_frames": [n_frames - val_frames, n_frames]}


def _windows(lo: int, hi: int, length: int, step: int) -> list[int]:
    return list(range(lo, hi - length + 1, step))


def compute_stats(files: list[dict], data_dir: Path, config: PrepareConfig) -> dict:
    """Statistics of the training part: pitch (voiced frames), loudness, confidence."""
    f0s, louds, louds_voiced, confs = [], [], [], []
    for e in files:
        fdir = data_dir / "files" / e["key"]
        a, b = e["train_frames"]
        f0 = np.load(fdir / "f0_hz.npy")[a:b]
        conf = np.load(fdir / "confidence.npy")[a:b]
        loud = np.load(fdir / "loudness_db.npy")[a:b]
        voiced = conf >= config.voiced_confidence
        f0s.append(f0[voiced])
        louds.append(loud)
        louds_voiced.append(loud[voiced])
        confs.append(conf)
    f0 = np.concatenate(f0s)
    loud = np.concatenate(louds)
    loud_v = np.concatenate(louds_voiced)
    conf = np.concatenate(confs)
    midi = hz_to_midi(f0)
    q = np.linspace(0, 100, 101)
    hist, edges = np.histogram(conf, bins=20, range=(0, 1))
    return {
        "n_frames": int(len(loud)),
        "voiced_fraction": float(len(f0) / max(1, len(loud))),
        "voiced_confidence": config.voiced_confidence,
        "pitch_midi_mean": float(midi.mean()) if len(midi) else 60.0,
        "pitch_midi_std": float(midi.std()) if len(midi) else 12.0,
        "pitch_midi_quantiles": np.percentile(midi, q).tolist() if len(midi) else [],
        "loudness_db_mean": float(loud.mean()),
        "loudness_db_std": float(max(loud.std(), 1e-3)),
        "loudness_db_quantiles": np.percentile(loud, q).tolist(),
        "loudness_db_voiced_quantiles": np.percentile(loud_v, q).tolist() if len(loud_v) else [],
        "confidence_histogram": {"edges": edges.tolist(), "counts": hist.tolist()},
    }


class PrepareInterrupted(KeyboardInterrupt):
    """:func:`prepare` stopped by Ctrl-C or a stop signal; the files it finished are kept and
    the same call again prepares only the rest.

    Attributes:
        prepared: input files ready in the dataset folder (finished now or by an earlier run).
        skipped: input files found unusable before the stop.
        total: input files of the call.
        signum: the signal that stopped it (SIGINT for a plain KeyboardInterrupt; the
            interrupt's own ``signum`` where it carries one).
    """

    def __init__(self, prepared: int, skipped: int, total: int, signum: int):
        super().__init__(f"interrupted: {prepared} of {total} files prepared")
        self.prepared, self.skipped, self.total, self.signum = prepared, skipped, total, signum


def prepare(inputs: list, data_dir: str | os.PathLike, config: PrepareConfig = PrepareConfig(),
            show_progress: bool = True, force: bool = False, on_skip=None) -> dict:
    """Prepare recordings into ``data_dir``; returns the manifest.

    Unusable files (unreadable, empty, silent, too short) are skipped, reported to
    ``on_skip(path, reason)`` if given and listed in the manifest (``skipped``); if none is
    usable, AudioError is raised and nothing this call
    made is left behind. Files already prepared with the same feature settings are reused;
    a folder holding a dataset prepared with other settings is refused unless ``force``.

    Raises:
        PrepareInterrupted: on a KeyboardInterrupt (Ctrl-C, or a stop signal the caller
            turned into one): the files finished so far stay (a re-run skips them), the one
            being prepared is removed, and the folders this call made go when no finished
            file is left in them.
    """
    data_dir = Path(data_dir)
    files = find_audio_files(inputs)
    _check_settings(data_dir, config, force)
    created = [d for d in (data_dir, data_dir / "files") if not d.exists()]
    before = set((data_dir / "files").iterdir()) if (data_dir / "files").is_dir() else set()
    entries, skipped = [], []
    try:
        _prepare_files(files, data_dir, config, show_progress, entries, skipped, on_skip)
        return _write_dataset(entries, skipped, data_dir, config)
    except KeyboardInterrupt as err:
        _keep_finished(data_dir, created, before)
        raise PrepareInterrupted(len(entries), len(skipped), len(files),
                                 getattr(err, "signum", signal.SIGINT)) from None
    except BaseException:
        _remove_new(data_dir, created, before)  # nothing of this call is left behind
        raise


def _new_file_dirs(data_dir: Path, before: set) -> set:
    files_dir = data_dir / "files"
    return set(files_dir.iterdir()) - before if files_dir.is_dir() else set()


def _remove_new(data_dir: Path, created: list[Path], before: set) -> None:
    """Remove the file folders made since ``before`` and the folders in ``created``."""
    for d in _new_file_dirs(data_dir, before):
        shutil.rmtree(d, ignore_errors=True)
    for d in reversed(created):
        shutil.rmtree(d, ignore_errors=True)


def _keep_finished(data_dir: Path, created: list[Path], before: set) -> None:
    """After an interruption: remove the new file folders without a ``done.json`` (the one
    being prepared, should its own clean-up not have run), and the folders in ``created``
    when no finished file is left in the dataset folder (a later run would find a dataset
    folder with nothing in it)."""
    for d in _new_file_dirs(data_dir, before):
        if not (d / "done.json").exists():
            shutil.rmtree(d, ignore_errors=True)
    files_dir = data_dir / "files"
    if created and not any(files_dir.glob("*/done.json")):
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)


def _check_settings(data_dir: Path, config: PrepareConfig, force: bool) -> None:
    manifest = data_dir / "manifest.json"
    if not manifest.exists() or force:
        return
    try:
        same = json.loads(manifest.read_text()).get("config") == config.to_dict()
    except (OSError, ValueError, AttributeError):
        same = False
    if not same:
        raise AudioError(f"{data_dir}: already holds a dataset prepared with other settings; "
                         "choose another folder or pass --force to replace it")


def _prepare_files(files: list[Path], data_dir: Path, config: PrepareConfig,
                   show_progress: bool, entries: list, skipped: list, on_skip=None) -> None:
    """Prepare (or reuse) every file, appending its manifest entry to ``entries`` or its
    ``{"path", "reason"}`` to ``skipped`` as soon as it is done: what an interruption
    leaves in them is what was finished."""
    from tqdm import tqdm

    with tqdm(total=round(sum(map(header_seconds, files)), 1), unit="s audio",
              disable=not show_progress, desc="prepare") as bar:
        for p in files:
            try:
                entries.append(prepare_file(p, data_dir, config, bar))
            except SkipFile as err:
                skipped.append({"path": str(p), "reason": str(err)})
                if on_skip is not None:
                    on_skip(p, str(err))


def _write_dataset(entries: list[dict], skipped: list[dict], data_dir: Path,
                   config: PrepareConfig) -> dict:
    """The manifest and statistics of the prepared files (splits under ``config``), written
    into ``data_dir``; folders of files no longer used are removed. Returns the manifest."""
    fc = config.features
    if not entries:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped)
        raise AudioError(f"no usable audio in the inputs ({reasons})")
    entries = [_with_split(e, config) for e in entries]
    example_frames = int(round(config.example_seconds * fc.frame_rate_hz))
    step = max(1, int(round(config.example_hop_seconds * fc.frame_rate_hz)))
    train, val = [], []
    for i, e in enumerate(entries):
        train += [[i, s] for s in _windows(*e["train_frames"], example_frames, step)]
        val += [[i, s] for s in _windows(*e["val_frames"], example_frames, example_frames)]
    if not train:
        raise AudioError("no training window fits in the usable audio (shorter "
                         "--example-seconds or --val-seconds?)")
    manifest = {
        "format_version": DATASET_FORMAT_VERSION,
        "config": config.to_dict(),
        "example_frames": example_frames,
        "example_samples": example_frames * fc.hop,
        "files": entries,
        "examples": {"train": train, "val": val},
        "skipped": skipped,
    }
    stats = compute_stats(entries, data_dir, config)
    _write_json(data_dir / "stats.json", stats)
    _write_json(data_dir / "manifest.json", manifest)
    used = {e["key"] for e in entries}
    for d in (data_dir / "files").iterdir():  # entries of earlier settings (after --force)
        if d.is_dir() and d.name not in used:
            shutil.rmtree(d, ignore_errors=True)
    return manifest


# ----------------------------------------------------------------------------- dataset
def _read_dataset_json(path: Path, what: str):
    from .config import ConfigError, read_json_file

    try:
        return read_json_file(path, 256 << 20, what)
    except ConfigError as err:
        raise AudioError(f"{err}; prepare the dataset again") from None


def load_manifest(data_dir: str | os.PathLike) -> dict:
    """A prepared dataset's manifest, checked to hold what training and evaluation read."""
    path = Path(data_dir) / "manifest.json"
    if not path.exists() and any((Path(data_dir) / "files").glob("*/done.json")):
        raise AudioError(f"{data_dir}: an unfinished dataset (no manifest.json: 'ddsp-synth "
                         "prepare' was interrupted); run the same prepare command again to "
                         "finish it")
    if not path.exists():
        raise AudioError(f"{data_dir}: not a prepared dataset (no manifest.json); run "
                         "'ddsp-synth prepare' first")
    manifest = _read_dataset_json(path, "dataset manifest")
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != DATASET_FORMAT_VERSION:
        raise AudioError(f"{path}: dataset format {version} is not "
                         f"{DATASET_FORMAT_VERSION}; prepare it again")
    try:
        PrepareConfig.from_dict(manifest["config"])
        examples, files = manifest["examples"], manifest["files"]
        ok = (isinstance(examples.get("train"), list) and isinstance(examples.get("val"), list)
              and all(isinstance(e.get("key"), str) and isinstance(e.get("n_samples"), int)
                      for e in files) and isinstance(manifest["example_frames"], int))
    except (KeyError, AttributeError, TypeError, ValueError) as err:
        raise AudioError(f"{path}: damaged manifest ({type(err).__name__}: {err}); prepare "
                         "the dataset again") from None
    if not ok:
        raise AudioError(f"{path}: damaged manifest; prepare the dataset again")
    return manifest


def load_stats(data_dir: str | os.PathLike) -> dict:
    """A prepared dataset's statistics (a JSON object)."""
    path = Path(data_dir) / "stats.json"
    if not path.exists():
        raise AudioError(f"{path}: missing; prepare the dataset again")
    stats = _read_dataset_json(path, "dataset statistics")
    if not isinstance(stats, dict):
        raise AudioError(f"{path}: damaged statistics; prepare the dataset again")
    return stats


class DDSPDataset(torch.utils.data.Dataset):
    """Fixed windows of a prepared dataset.

    Items are dicts of float32 tensors: ``audio`` [example_samples], ``f0_hz``,
    ``confidence``, ``loudness_db`` [example_frames].
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = "train"):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.data_dir = Path(data_dir)
        self.manifest = load_manifest(data_dir)
        self.config = PrepareConfig.from_dict(self.manifest["config"])
        self.examples = self.manifest["examples"][split]
        self.n_frames = self.manifest["example_frames"]
        self.hop = self.config.features.hop
        self._arrays: dict[int, dict] = {}
        for e in self.manifest["files"]:  # every file of the dataset is there
            fdir = self.data_dir / "files" / e["key"]
            for name in ("audio.pcm", "f0_hz.npy", "confidence.npy", "loudness_db.npy"):
                if not (fdir / name).is_file():
                    raise AudioError(f"{fdir / name}: missing; prepare the dataset again")

    def __len__(self) -> int:
        return len(self.examples)

    def _file(self, i: int) -> dict:
        if i not in self._arrays:
            e = self.manifest["files"][i]
            fdir = self.data_dir / "files" / e["key"]
            self._arrays[i] = {
                "audio": np.memmap(fdir / "audio.pcm", dtype="<i2", mode="r",
                                   shape=(e["n_samples"],)),
                **{k: np.load(fdir / f"{k}.npy", mmap_mode="r")
                   for k in ("f0_hz", "confidence", "loudness_db")},
            }
        return self._arrays[i]

    def __getitem__(self, idx: int) -> dict:
        file_idx, start = self.examples[idx]
        arrays = self._file(file_idx)
        t0, t1 = start, start + self.n_frames
        audio = np.zeros(self.n_frames * self.hop, np.float32)
        seg = arrays["audio"][t0 * self.hop : t1 * self.hop]
        audio[: len(seg)] = seg / PCM16_SCALE
        return {
            "audio": torch.from_numpy(audio),
            **{k: torch.from_numpy(np.array(arrays[k][t0:t1], dtype=np.float32))
               for k in ("f0_hz", "confidence", "loudness_db")},
        }


def collate(items: list[dict]) -> dict:
    """Stack dataset items into a batch: dict of [batch, ...] tensors."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
