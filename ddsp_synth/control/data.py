"""Training examples for controllers: ``--pairs`` (desired input -> output) and ``--style``
(self-supervised style transfer, DeepAFx-ST's protocol).

Every batch is drawn from a numpy generator the caller seeds (from the run's seed, the
step and the rank), so a resumed run sees the batches it would have seen. Validation
examples come only from held-out material: whole pairs (every fifth) or the tail of each
file, never from what a step trains on.

* :class:`PairsSource`: files with matching names in two folders (same relative path, any
  audio extension), at one sample rate per pair; aligned windows of both, and, for a
  controller that takes a reference, another window of the same target file.
* :class:`StyleSource`: any folder of recordings. A window of ``segment + reference``
  seconds is shifted to a random level and rendered by the real devices with random
  settings (the style; one pool call for the batch). The target is one part of that
  rendering and the reference the other part. The input is the target's part as another
  rendering with other random settings made it (processing of its own, which the controller
  has to undo too: the default, ``input_processed`` 1), or, for a fraction ``1 -
  input_processed`` of the examples, as it was recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio_io import AUDIO_EXTENSIONS, AudioError, find_audio_files, load_audio
from .config import ControlDataConfig, ControlError
from .style import sample_settings


@dataclass
class Examples:
    """A batch at the controller's rate.

    Attributes:
        input: [batch, n_samples] what the controller hears and the chain processes.
        target: [batch, n_samples] what the chain should turn it into.
        reference: [batch, m_samples] the style to match, or None.
        names: where each example comes from (``file@start_s``).
    """

    input: torch.Tensor
    target: torch.Tensor
    reference: torch.Tensor | None
    names: list[str]

    def __len__(self) -> int:
        return self.input.shape[0]


def _rms_db(x: np.ndarray) -> float:
    return 10.0 * np.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def _start(n_audio: int, n: int, rng, audio: np.ndarray, min_level_db: float,
           tries: int = 20) -> int:
    """A window start whose RMS is above ``min_level_db`` where one is found quickly."""
    start = 0
    for _ in range(tries):
        start = int(rng.integers(0, max(1, n_audio - n + 1)))
        if _rms_db(audio[start : start + n]) > min_level_db:
            break
    return start


def _window(audio: np.ndarray, start: int, n: int) -> np.ndarray:
    piece = audio[start : start + n]
    return np.pad(piece, (0, n - len(piece))) if len(piece) < n else piece


def _split(audio: np.ndarray, sample_rate: int, config: ControlDataConfig):
    """(training part, held-out tail) of one recording."""
    tail = min(int(config.held_out_fraction * len(audio)),
               int(config.held_out_max_seconds * sample_rate))
    return audio[: len(audio) - tail], audio[len(audio) - tail :]


def _name(name: str, start: int, offset: int, sample_rate: int) -> str:
    """``file@seconds`` of a window (``offset``: where its part begins in the file)."""
    return f"{name}@{(offset + start) / sample_rate:.2f}"


def _pick(lengths: list[int], rng) -> int:
    w = np.asarray(lengths, np.float64)
    if w.sum() <= 0:
        raise ControlError("no audio to draw examples from")
    return int(rng.choice(len(w), p=w / w.sum()))


# ------------------------------------------------------------------------------ pairs
def _partners(input_dir: Path, target_dir: Path) -> list[tuple[Path, Path]]:
    """(input, target) files with the same relative path and stem; ControlError for a file
    without its partner or a pair at two sample rates."""
    def index(root: Path) -> dict:
        try:
            files = find_audio_files([root])
        except AudioError:  # an empty folder: every partner is missing
            return {}
        return {str(f.relative_to(root).with_suffix("")): f for f in files}

    for d, what in ((input_dir, "input"), (target_dir, "target")):
        if not d.is_dir():
            raise ControlError(f"{d}: not a folder (the {what} folder of --pairs)")
    if input_dir.resolve() == target_dir.resolve():
        raise ControlError(f"{target_dir}: the target folder of --pairs is the input folder: "
                           "there would be nothing to learn")
    inputs, targets = index(input_dir), index(target_dir)
    if not inputs:
        raise ControlError(f"{input_dir}: no audio files (the input folder of --pairs)")
    for key, f in inputs.items():
        if key not in targets:
            raise ControlError(f"{f} has no partner in {target_dir} (looked for {key}.* with "
                               f"one of {', '.join(AUDIO_EXTENSIONS)})")
    for key, f in targets.items():
        if key not in inputs:
            raise ControlError(f"{f} has no partner in {input_dir}")
    pairs = []
    for key in sorted(inputs):
        a, b = inputs[key], targets[key]
        try:
            ra, rb = sf.info(str(a)).samplerate, sf.info(str(b)).samplerate
        except (RuntimeError, sf.LibsndfileError) as err:
            raise ControlError(f"{a} or {b}: unreadable audio ({err})") from None
        if ra != rb:
            raise ControlError(f"{a} is at {ra} Hz but its target {b} at {rb} Hz: a pair "
                               "must share one sample rate")
        pairs.append((a, b))
    return pairs


class PairsSource:
    """Aligned windows of (input, target) pairs, and target windows as references.

    Args:
        input_dir, target_dir: the two folders.
        sample_rate: the controller's rate (both files are resampled to it).
        config: window lengths and the held-out share.
        reference: draw a reference (another window of the same target) for each example.
    """

    def __init__(self, input_dir, target_dir, sample_rate: int, config: ControlDataConfig,
                 reference: bool = False):
        self.sample_rate, self.config, self.reference = sample_rate, config, reference
        pairs = _partners(Path(input_dir), Path(target_dir))
        self.names = [str(a.name) for a, _ in pairs]
        loaded = []
        for a, b in pairs:
            x, y = load_audio(a, sample_rate), load_audio(b, sample_rate)
            n = min(len(x), len(y))
            loaded.append((x[:n], y[:n]))
        # (file index, offset of the part in the file, (input, target))
        self.train, self.held = [], []
        if len(loaded) >= 5:  # whole pairs held out: every fifth
            for i, pair in enumerate(loaded):
                (self.held if i % 5 == 4 else self.train).append((i, 0, pair))
        else:
            for i, (x, y) in enumerate(loaded):
                (xt, xh), (yt, yh) = _split(x, sample_rate, config), _split(y, sample_rate, config)
                self.train.append((i, 0, (xt, yt)))
                self.held.append((i, len(xt), (xh, yh)))
        if not any(len(p[2][0]) for p in self.held):
            raise ControlError("the pairs are too short to hold any part out for validation")

    def describe(self) -> dict:
        sr = self.sample_rate
        return {"mode": "pairs", "files": self.names,
                "train_seconds": round(sum(len(p[2][0]) for p in self.train) / sr, 1),
                "held_out": [self.names[i] for i, _, _ in self.held]
                if len(self.names) >= 5 else "the last part of each pair",
                "held_out_whole_files": len(self.names) >= 5}

    def batch(self, rng: np.random.Generator, size: int, held_out: bool = False) -> Examples:
        pool = self.held if held_out else self.train
        n = int(self.config.segment_seconds * self.sample_rate)
        m = int(self.config.reference_seconds * self.sample_rate)
        xs, ys, refs, names = [], [], [], []
        for _ in range(size):
            i, offset, (x, y) = pool[_pick([len(p[2][0]) for p in pool], rng)]
            start = _start(len(x), n, rng, x, self.config.min_level_db)
            xs.append(_window(x, start, n))
            ys.append(_window(y, start, n))
            names.append(_name(self.names[i], start, offset, self.sample_rate))
            if self.reference:
                refs.append(_window(y, _start(len(y), m, rng, y, self.config.min_level_db), m))
        return Examples(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
                        torch.from_numpy(np.stack(refs)) if refs else None, names)


# ------------------------------------------------------------------------------ style
class StyleSource:
    """Self-supervised style examples from any recordings, rendered by the real devices.

    Args:
        paths: folders and files of recordings.
        sample_rate: the controller's rate.
        renderer: a stage (the chain's real devices, or its twins) called as
            ``renderer(audio [N, n], params [N, P])``.
        declared, devices: the chain's parameters and the device of each (for the random
            settings, :mod:`.style`).
        config: window lengths, levels and the held-out tail.
    """

    def __init__(self, paths, sample_rate: int, renderer, declared, devices,
                 config: ControlDataConfig, fixed: dict | None = None):
        self.sample_rate, self.config, self.renderer = sample_rate, config, renderer
        self.declared, self.devices, self.fixed = declared, devices, fixed or {}
        files = find_audio_files([str(p) for p in paths])
        self.names = [f.name for f in files]
        self.train, self.held = [], []
        for f in files:
            try:
                a, b = _split(load_audio(f, sample_rate), sample_rate, config)
            except AudioError as err:
                raise ControlError(str(err)) from None
            self.train.append(a)
            self.held.append(b)
        self.paths = [os.fspath(p) for p in paths]
        # [2 * size, P] natural settings of the last batch: the inputs' rows, then the
        # targets' (for benchmarks that need the truth, e.g. an oracle that knows it)
        self.last_settings = None

    def describe(self) -> dict:
        seconds = sum(len(a) for a in self.train) / self.sample_rate
        return {"mode": "style", "paths": self.paths, "files": self.names,
                "train_seconds": round(seconds, 1),
                "input_processed": self.config.input_processed,
                "held_out": f"the last {self.config.held_out_fraction:.0%} of each file (at "
                            f"most {self.config.held_out_max_seconds:g} s)"}

    def batch(self, rng: np.random.Generator, size: int, held_out: bool = False) -> Examples:
        pool = self.held if held_out else self.train
        n = int(self.config.segment_seconds * self.sample_rate)
        m = int(self.config.reference_seconds * self.sample_rate)
        segments, names = [], []
        for _ in range(size):
            i = _pick([len(a) for a in pool], rng)
            start = _start(len(pool[i]), n + m, rng, pool[i], self.config.min_level_db)
            gain = 10.0 ** (rng.uniform(*self.config.level_db_range) / 20.0)
            segments.append(_window(pool[i], start, n + m) * gain)
            offset = len(self.train[i]) if held_out else 0
            names.append(_name(self.names[i], start, offset, self.sample_rate))
        x = np.stack(segments).astype(np.float32)
        settings = sample_settings(self.declared, self.devices, 2 * size, rng, self.fixed)
        self.last_settings = settings
        processed, style = self._render(x, settings)
        first = torch.from_numpy(rng.integers(0, 2, size=size).astype(bool))
        fraction = self.config.input_processed
        if 0.0 < fraction < 1.0:  # (1 and 0 draw nothing: older runs' streams unchanged)
            keep = torch.from_numpy(rng.uniform(size=size) >= fraction)
            processed = torch.where(keep[:, None], torch.from_numpy(x), processed)
        # the input's part first or second, at random; the reference is the other part
        inp = torch.where(first[:, None], processed[:, :n], processed[:, m:])
        tgt = torch.where(first[:, None], style[:, :n], style[:, m:])
        ref = torch.where(first[:, None], style[:, n:], style[:, :m])
        return Examples(inp.contiguous(), tgt.contiguous(), ref.contiguous(), names)

    def _render(self, x: np.ndarray, settings: np.ndarray):
        """([N, n] the inputs' processing, [N, n] the style) of windows x [N, n] under the
        settings [2 N, P] (the inputs' rows, then the style's); with ``input_processed`` 0
        the inputs are the windows themselves and only the style is rendered."""
        size = len(x)
        with torch.no_grad():
            if self.config.input_processed == 0.0:
                style, _ = self.renderer(torch.from_numpy(x),
                                         torch.from_numpy(settings[size:]).float())
                return torch.from_numpy(x), style
            y, _ = self.renderer(torch.from_numpy(np.concatenate([x, x])),
                                 torch.from_numpy(settings).float())
        return y[:size], y[size:]
