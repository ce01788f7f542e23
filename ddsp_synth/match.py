"""Reverse-engineer an effect chain: the device parameters that turn DRY into TARGET.

``match_files(dry, target, "peak,compressor,distortion", method, out_dir)`` loads both files
at the dry file's sample rate (resampling the target if needed, and saying so), aligns them
by cross-correlation (offsets up to +-50 ms), picks the loudest few seconds of the dry file
as the analysis window (with a pre-roll so the devices' envelopes and filter states settle
as they did in the target), and estimates the chain's parameters with one of five methods:

* ``autodiff`` - Adam through the PyTorch twins, from several starts at once (a batch);
* ``proxy`` - the same through the neural proxies (twins for devices without one);
* ``hybrid`` - the real devices forward, the proxies (or twins) backward; starts from the
  best of a small random search on the real devices;
* ``spsa`` - Adam on SPSA estimates of the gradient from the real devices, from the best
  points of the same search;
* ``cma`` - CMA-ES on the real devices from the best of the same random search (restarted
  with a doubled population from random points when it converges: IPOP), then the frequency
  sweep below and CMA-ES again, locally, from its result.

The four gradient methods also grid-search each filter's frequency (and gain) twice, at 20 %
and 50 % of their steps, through the same model they take gradients from (twin, proxy or
real device), and continue from the best point at a lower rate: a gradient cannot move a
peak whose frequency is far off, because its effect does not overlap the target's. They stop
early once the loss stops improving.

The loss is a multi-resolution STFT distance (log and linear magnitudes) plus a distance of
smoothed long-term average spectra, on the analysis window.

It writes ``preset.json`` (chain order, natural units), ``matched.wav`` (the dry file
through the *real* chain with the estimated parameters), ``report.json`` and ``match.png``
(loss curve and before/after spectra). Every bad input is a one-line :class:`MatchError` or
:class:`~ddsp_synth.audio_io.AudioError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio_io import (AudioError, atomic_write_bytes, check_output_folder, load_audio,
                       write_audio)
from .core import magnitude_spectrogram
from .effects.blackbox import import_pedalboard, needs_pedalboard
from .effects.devices import Device, make_chain
from .effects.params import DeviceError, denormalise, normalise
from .gradients.cma_search import CMAConfig, cma_minimize
from .gradients.methods import METHODS, DeviceFunction
from .gradients.metrics import mr_log_distance
from .gradients.proxy import ProxyFileError
from .gradients.spsa import SPSAConfig, perturbations

OUTPUT_FILES = ("preset.json", "matched.wav", "report.json", "match.png")
SILENCE_PEAK = 1e-4  # -80 dBFS


class MatchError(Exception):
    """A bad input or setting of ``match``, with a one-line message for the user."""


@dataclass(frozen=True)
class MatchConfig:
    """Settings of :func:`match_files` (defaults tuned on ``bench/bench_match.py``).

    Attributes:
        analysis_seconds: length of the analysis window (the loudest stretch of the dry file).
        preroll_seconds: audio processed before the window and left out of the loss, so that
            envelopes and filter states are as they were in the target.
        max_offset_ms: largest offset between dry and target that is aligned automatically.
        min_seconds: shortest usable overlap of dry and target.
        report_max_seconds: the before/after distances use at most this much audio.
        fft_sizes: FFT sizes of the matching loss.
        log_weight, linear_weight: weights of its log and linear magnitude terms.
        steps: default iterations per method (optimiser steps; CMA-ES generations); most runs
            end earlier, converged or at ``max_seconds``.
        max_seconds: default optimisation time budget per method.
        learning_rate: Adam's peak rate on normalised parameters (cosine-decayed to
            ``final_lr_fraction`` of it), per method; after the first frequency sweep it is
            scaled by ``refine_lr_factor``.
        patience, tolerance: a gradient method stops ("converged") once its best loss has
            improved by less than ``tolerance`` (relative) in ``patience`` iterations after
            the last sweep.
        good_enough: every method stops ("matched") once its loss is below this fraction of
            the dry file's loss (an exact match; recordings of real devices rarely get there).
        n_starts: parallel starts of the gradient methods (autodiff, proxy: defaults + random
            draws; spsa: the best of the random search); the first frequency sweep (or, with
            no frequency to sweep, the first ``sweep_at`` fraction) continues from the best of
            them alone.
        sweep_at: fractions of the steps at which each device's frequency (and gain) is
            grid-searched, every other parameter kept (gradients cannot find a filter
            frequency that is far off).
        sweep_points: frequency grid points (log-spaced over the range), per method (fewer
            through the proxies, whose forward pass is the costly one).
        sweep_gains_db: gains tried at each frequency, for devices with a gain.
        search_points: random candidates (and the defaults) evaluated on the real devices to
            pick the start of ``spsa``, ``hybrid`` and ``cma``.
        spsa: SPSA settings (epsilon decays from ``spsa_epsilon_start`` to ``spsa.epsilon``).
        spsa_epsilon_start: initial SPSA perturbation.
        cma: CMA-ES settings.
        cma_sweep_at: fraction of the time after which CMA-ES stops for the frequency sweep
            and starts again from its result with ``cma_refine_sigma``.
        n_workers: worker processes running the real devices.
    """

    analysis_seconds: float = 1.5
    preroll_seconds: float = 0.5
    max_offset_ms: float = 50.0
    min_seconds: float = 0.5
    report_max_seconds: float = 30.0
    fft_sizes: tuple[int, ...] = (2048, 512, 128)
    log_weight: float = 1.0
    linear_weight: float = 1.0
    ltas_weight: float = 1.0
    ltas_fft: int = 2048
    ltas_smoothing_octaves: tuple[float, ...] = (0.1, 0.33, 1.0, 2.0)
    steps: dict = field(default_factory=lambda: {
        "autodiff": 400, "proxy": 300, "hybrid": 300, "spsa": 600, "cma": 3000})
    max_seconds: dict = field(default_factory=lambda: {
        "autodiff": 45.0, "proxy": 45.0, "hybrid": 45.0, "spsa": 45.0, "cma": 45.0})
    learning_rate: dict = field(default_factory=lambda: {
        "autodiff": 0.05, "proxy": 0.05, "hybrid": 0.05, "spsa": 0.03})
    final_lr_fraction: float = 0.05
    refine_lr_factor: float = 0.2
    patience: dict = field(default_factory=lambda: {
        "autodiff": 40, "proxy": 40, "hybrid": 40, "spsa": 150})
    tolerance: float = 1e-3
    good_enough: float = 1e-3
    n_starts: dict = field(default_factory=lambda: {"autodiff": 4, "proxy": 2, "hybrid": 1,
                                                    "spsa": 2})
    sweep_at: tuple[float, ...] = (0.2, 0.5)
    sweep_points: dict = field(default_factory=lambda: {
        "autodiff": 33, "proxy": 17, "hybrid": 33, "spsa": 33})
    sweep_gains_db: tuple[float, ...] = (-12.0, -6.0, 6.0, 12.0)
    search_points: int = 32
    spsa: SPSAConfig = SPSAConfig(epsilon=0.01, n_pairs=4)
    spsa_epsilon_start: float = 0.05
    cma: CMAConfig = CMAConfig()
    cma_sweep_at: float = 0.4
    cma_refine_sigma: float = 0.1
    n_workers: int = 2


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------
def _native_rate(path: Path) -> int:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        return int(sf.info(str(path)).samplerate)
    except Exception as err:
        text = str(err).strip().splitlines()
        reason = text[0] if text else type(err).__name__
        # libsndfile repeats the path in its message; say it once.
        reason = reason.replace(f"Error opening {str(path)!r}: ", "")
        raise AudioError(f"{path}: unreadable audio ({reason})") from None


def _check_signal(audio: np.ndarray, path: Path) -> None:
    if len(audio) == 0:
        raise AudioError(f"{path}: empty audio")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        raise AudioError(f"{path}: audio is silent (peak below -80 dBFS)")


def align(dry: np.ndarray, target: np.ndarray, sample_rate: int, max_offset_ms: float,
          search_ms: float = 1000.0) -> int:
    """Lag (samples) such that ``target[n + lag]`` lines up with ``dry[n]``.

    The magnitude of the cross-correlation (first minute of the dry file against the target)
    is searched over +-``search_ms``; its peak must lie within +-``max_offset_ms``, else
    MatchError (a larger offset needs trimming by hand).
    """
    n = min(len(dry), len(target), 60 * sample_rate)
    max_lag = int(search_ms * sample_rate / 1000)
    a = dry[:n].astype(np.float64)
    b = target[: n + max_lag].astype(np.float64)
    # long enough that no lag in +-max_lag wraps around, even for a dry file under max_lag
    size = 1 << (len(a) + len(b) + max_lag).bit_length()
    xc = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    lags = np.arange(-max_lag, max_lag + 1)
    vals = np.abs(xc[lags % size])
    best = int(lags[np.argmax(vals)])
    limit = int(round(max_offset_ms * sample_rate / 1000))
    if abs(best) > limit:
        inside = vals[np.abs(lags) <= limit].max()
        if vals.max() > 1.2 * inside:
            raise MatchError(f"target is offset from dry by {1000 * best / sample_rate:+.0f} ms "
                             f"(more than +-{max_offset_ms:g} ms): trim one of the files")
        best = int(lags[np.abs(lags) <= limit][np.argmax(vals[np.abs(lags) <= limit])])
    return best


@dataclass
class MatchInputs:
    """Aligned dry and target at one sample rate, and notes on what was done to them."""

    dry: np.ndarray          # the whole dry file (what matched.wav is rendered from)
    dry_common: np.ndarray   # dry over the part it shares with the target
    target_common: np.ndarray
    start: int               # where dry_common starts in dry
    sample_rate: int
    notes: list[str]
    target: np.ndarray = None  # the whole target, at the dry file's rate
    lag: int = 0             # target[n + lag] lines up with dry[n]


def _overlap(dry: np.ndarray, target: np.ndarray, lag: int) -> tuple[int, int, int]:
    """(start in dry, start in target, length) of the part the two share at ``lag``."""
    d0, t0 = (0, lag) if lag >= 0 else (-lag, 0)
    return d0, t0, min(len(dry) - d0, len(target) - t0)


def _offset_note(lag: int, sample_rate: int) -> str:
    return (f"target aligned to dry: offset {1000 * lag / sample_rate:+.1f} ms ({lag:+d} "
            "samples)")


def load_inputs(dry_path, target_path, config: MatchConfig = MatchConfig()) -> MatchInputs:
    """Read, resample, check and align DRY and TARGET (see :func:`match_files`)."""
    dry_path, target_path = Path(dry_path), Path(target_path)
    sr = _native_rate(dry_path)
    sr_target = _native_rate(target_path)
    notes = []
    dry = load_audio(dry_path, sr)
    target = load_audio(target_path, sr)
    _check_signal(dry, dry_path)
    _check_signal(target, target_path)
    if sr_target != sr:
        notes.append(f"target resampled from {sr_target} Hz to the dry file's {sr} Hz")
    lag = align(dry, target, sr, config.max_offset_ms)
    if lag:
        notes.append(_offset_note(lag, sr))
    d0, t0, n = _overlap(dry, target, lag)
    if n < config.min_seconds * sr:
        raise MatchError(f"dry and target overlap by {max(n, 0) / sr:.2f} s after alignment; "
                         f"need at least {config.min_seconds:g} s")
    if len(dry) != len(target):
        notes.append(f"lengths differ (dry {len(dry) / sr:.2f} s, target {len(target) / sr:.2f} "
                     f"s): compared on the common {n / sr:.2f} s")
    dry_common, target_common = dry[d0 : d0 + n], target[t0 : t0 + n]
    if float(np.abs(target_common).max()) < SILENCE_PEAK:
        raise AudioError(f"{target_path}: silent where it overlaps the dry file")
    return MatchInputs(dry, dry_common, target_common, d0, sr, notes, target, lag)


def analysis_window(dry: np.ndarray, sample_rate: int, seconds: float,
                    preroll_seconds: float) -> tuple[int, int, int]:
    """(preroll start, window start, window end) of the loudest ``seconds`` of ``dry``."""
    n = min(len(dry), int(round(seconds * sample_rate)))
    energy = np.concatenate([[0.0], np.cumsum(dry.astype(np.float64) ** 2)])
    sums = energy[n:] - energy[:-n] if len(dry) > n else np.array([energy[-1]])
    start = int(np.argmax(sums)) if len(dry) > n else 0
    pre = max(0, start - int(round(preroll_seconds * sample_rate)))
    return pre, start, start + n


# --------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------
class WindowLoss:
    """Per-candidate matching loss against the target's analysis window.

    Multi-resolution STFT distance (log and linear magnitudes, as
    :func:`ddsp_synth.losses.multi_resolution_stft_loss` but per candidate) plus the distance
    of long-term average spectra smoothed over several widths in log frequency (so that a
    filter whose frequency is far off still sees where the target's energy is). The target's
    spectra are computed once. Candidate outputs cover pre-roll + window; the pre-roll is cut
    off before the comparison.
    """

    def __init__(self, target_window: np.ndarray, preroll: int, config: MatchConfig):
        self.preroll = preroll
        self.config = config
        sizes = tuple(config.fft_sizes)
        self.sizes = sizes if config.ltas_fft in sizes else sizes + (config.ltas_fft,)
        n_bins = config.ltas_fft // 2 + 1
        self.smoothers = _log_frequency_smoothers(n_bins, config.ltas_smoothing_octaves)
        t = torch.from_numpy(np.asarray(target_window, np.float32))[None]
        self.targets = {}
        for n_fft in self.sizes:
            mag = magnitude_spectrogram(t, n_fft, n_fft // 4)
            self.targets[n_fft] = (mag, torch.log(mag + 1e-5))
        self.ltas_target = self._ltas(self.targets[config.ltas_fft][0])

    def _ltas(self, mag: torch.Tensor) -> torch.Tensor:
        """Long-term average spectra (log amplitude) of [N, bins, frames] magnitudes,
        smoothed at each width: [n_widths, N, bins]."""
        ltas = 0.5 * torch.log(mag.square().mean(2) + 1e-10)
        return torch.stack([ltas @ s for s in self.smoothers])

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        """[N, preroll + window] -> [N] losses (differentiable)."""
        cfg = self.config
        y = outputs[:, self.preroll :]
        total = y.new_zeros(y.shape[0])
        for n_fft in self.sizes:
            mag = magnitude_spectrogram(y, n_fft, n_fft // 4)
            mag_t, log_t = self.targets[n_fft]
            if n_fft in cfg.fft_sizes:
                if cfg.linear_weight:
                    total = total + cfg.linear_weight * (mag - mag_t).abs().mean((1, 2))
                if cfg.log_weight:
                    total = total + cfg.log_weight * (
                        torch.log(mag + 1e-5) - log_t).abs().mean((1, 2))
            if n_fft == cfg.ltas_fft and cfg.ltas_weight:
                diff = (self._ltas(mag) - self.ltas_target).abs().mean(2).sum(0)
                total = total + cfg.ltas_weight * diff
        return total


def _log_frequency_smoothers(n_bins: int, widths_octaves) -> list[torch.Tensor]:
    """[n_bins, n_bins] column-normalised Gaussian kernels in log frequency, one per width.

    Wide kernels make a spectral mismatch visible to a filter whose frequency is far off (a
    peak at the wrong frequency has no overlap with the right one at full resolution, and so
    no gradient towards it)."""
    bins = torch.arange(n_bins, dtype=torch.float64)
    octave = torch.log2(bins.clamp_min(0.5))
    out = []
    for w in widths_octaves:
        k = torch.exp(-0.5 * ((octave[:, None] - octave[None, :]) / w) ** 2)
        out.append((k / k.sum(0, keepdim=True)).float())
    return out


# --------------------------------------------------------------------------------------
# Optimisers
# --------------------------------------------------------------------------------------
class _Problem:
    """The free parameters of a chain and how to evaluate candidates."""

    def __init__(self, device: Device, x: np.ndarray, loss: WindowLoss, pool, seed: int,
                 config: "MatchConfig", method: str):
        self.device = device
        self.config = config
        self.parts = device.parts if device.is_chain else (device,)
        self.x = torch.from_numpy(np.asarray(x, np.float32))[None]
        self.loss = loss
        self.pool = pool
        self.rng = np.random.default_rng(seed)
        p = len(device.params)
        self.free = [i for i in range(p) if i not in device.fixed]
        self.base = normalise(device.params, np.array([pp.default for pp in device.params]))
        for i, v in device.fixed.items():
            self.base[i] = device.params[i].to_normalised(v)
        self.history: list[float] = []
        self.good_enough = 0.0  # set once the dry loss is known
        self.sweep_points = config.sweep_points.get(method, 33)
        self.best_u = self.base.copy()
        self.best = math.inf
        self.device_calls = 0

    def full(self, u_free):
        """[N, F] free (normalised) -> [N, P] full parameter vectors (numpy or torch)."""
        if isinstance(u_free, torch.Tensor):
            out = torch.from_numpy(np.repeat(self.base[None], u_free.shape[0], 0)).to(u_free)
            out = out.index_copy(1, torch.tensor(self.free), u_free) if self.free else out
            return out
        out = np.repeat(self.base[None], u_free.shape[0], 0)
        out[:, self.free] = u_free
        return out

    @property
    def matched(self) -> bool:
        return self.best <= self.good_enough

    def record(self, losses: np.ndarray, u_free: np.ndarray) -> None:
        i = int(np.argmin(losses))
        if losses[i] < self.best:
            self.best = float(losses[i])
            self.best_u = self.full(u_free[i : i + 1])[0]
        self.history.append(float(losses[i]))

    def real_losses(self, u_free: np.ndarray) -> np.ndarray:
        """Losses of candidates [N, F] run through the real devices."""
        u = self.full(np.clip(u_free, 0.0, 1.0))
        y = self.pool.process(np.repeat(self.x.numpy(), len(u), 0),
                              denormalise(self.device.params, u))
        self.device_calls += len(u)
        with torch.no_grad():
            return self.loss(torch.from_numpy(y)).numpy().astype(np.float64)

    def starts(self, n: int) -> np.ndarray:
        """Defaults first, then uniform random draws: [n, F]."""
        u = self.rng.uniform(size=(n, len(self.free)))
        u[0] = self.base[self.free]
        return u

    def sweep_candidates(self, u_free: np.ndarray, part_index: int) -> np.ndarray | None:
        """Grid over one device's frequency (x its gain, if it has one) around ``u_free``.

        Returns [N, F] candidates, or None if that device has no free frequency.
        """
        cfg = self.config
        offset = sum(len(d.params) for d in self.parts[:part_index])
        names = [p.name for p in self.parts[part_index].params]
        free_pos = {i: k for k, i in enumerate(self.free)}
        freq = [offset + i for i, p in enumerate(self.parts[part_index].params)
                if p.unit == "Hz" and offset + i in free_pos]
        if not freq:
            return None
        grid = [{free_pos[freq[0]]: v} for v in np.linspace(0.0, 1.0, self.sweep_points)]
        if "gain_db" in names and offset + names.index("gain_db") in free_pos:
            g = self.device.params[offset + names.index("gain_db")]
            gains = [g.to_normalised(min(max(v, g.min), g.max)) for v in cfg.sweep_gains_db]
            k = free_pos[offset + names.index("gain_db")]
            grid = [{**cell, k: gv} for cell in grid for gv in gains]
        cands = np.repeat(u_free[None], len(grid), 0)
        for row, cell in zip(cands, grid):
            for k, v in cell.items():
                row[k] = v
        return cands

    def has_sweep(self) -> bool:
        """Whether any device has a free frequency to grid-search."""
        probe = self.base[self.free]
        return any(self.sweep_candidates(probe, i) is not None for i in range(len(self.parts)))

    def sweep(self, u_free: np.ndarray, losses_fn) -> np.ndarray:
        """Coordinate grid search over each device's frequency (and gain): [F] -> [F].

        Gradients cannot move a filter whose frequency is far off (its effect does not
        overlap the target's), so the frequencies are searched on a grid, device by device,
        with every other parameter kept; the best point so far is kept.
        """
        best_u = u_free.copy()
        best = float(losses_fn(best_u[None])[0])
        for i in range(len(self.parts)):
            cands = self.sweep_candidates(best_u, i)
            if cands is None:
                continue
            losses = losses_fn(cands)
            self.record(losses, cands)
            j = int(np.argmin(losses))
            if losses[j] < best:
                best, best_u = float(losses[j]), cands[j].copy()
        return best_u

    def search(self, n_points: int, keep: int = 1) -> np.ndarray:
        """Best ``keep`` of defaults + random candidates on the real devices: [keep, F]."""
        cands = self.starts(n_points)
        losses = self.real_losses(cands)
        self.record(losses, cands)
        return cands[np.argsort(losses)[:keep]]


def _lr(config: MatchConfig, method: str, frac: float, refining: bool = False) -> float:
    """Cosine schedule; after a sweep the rate drops by ``refine_lr_factor``: Adam's first
    steps move every parameter by about the rate, enough to leave a narrow valley."""
    lo = config.final_lr_fraction
    peak = config.learning_rate[method] * (config.refine_lr_factor if refining else 1.0)
    return peak * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * frac)))


def _model_losses(problem: _Problem, fn: DeviceFunction, chunk: int = 32):
    """``[N, F] -> [N]`` losses through ``fn`` without gradients (twins, proxies)."""
    def losses(cands: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(cands), chunk):
                c = torch.tensor(cands[i : i + chunk], dtype=torch.float32)
                y = fn(problem.x.expand(len(c), -1), problem.full(c))
                out.append(problem.loss(y).numpy())
        return np.concatenate(out).astype(np.float64)
    return losses


def _sweep_steps(config: MatchConfig, steps: int, problem: _Problem) -> set[int]:
    """Steps at which to sweep (none when no device has a frequency: then Adam runs on at
    its full rate)."""
    return {int(f * steps) for f in config.sweep_at} if problem.has_sweep() else set()


class _Adam:
    """Adam on a small parameter array, clipped to [0, 1] after every step.

    Written out (a dozen lines) rather than ``torch.optim.Adam``, whose first use imports
    torch's compiler stack: seconds of start-up for every ``match`` on a busy machine.
    """

    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __init__(self, u: np.ndarray):
        self.u = np.clip(np.asarray(u, np.float64), 0.0, 1.0)
        self.m = np.zeros_like(self.u)
        self.v = np.zeros_like(self.u)
        self.t = 0

    def step(self, grad: np.ndarray, lr: float) -> np.ndarray:
        b1, b2 = self.BETAS
        grad = np.nan_to_num(np.asarray(grad, np.float64))
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat = self.m / (1 - b1 ** self.t)
        v_hat = self.v / (1 - b2 ** self.t)
        self.u = np.clip(self.u - lr * m_hat / (np.sqrt(v_hat) + self.EPS), 0.0, 1.0)
        return self.u


class _Stopper:
    """Converged when the best loss improved by less than ``tol`` (relative) over the last
    ``patience`` iterations, counted from the last frequency sweep."""

    def __init__(self, patience: int, tol: float):
        self.patience, self.tol = patience, tol
        self.reset()

    def reset(self) -> None:
        self.marks: list[float] = []

    def converged(self, best: float) -> bool:
        self.marks.append(best)
        if len(self.marks) <= self.patience:
            return False
        old = self.marks[-1 - self.patience]
        return best > old * (1.0 - self.tol)


def _run_gradient(problem: _Problem, fn: DeviceFunction, method: str, config: MatchConfig,
                  steps: int, deadline: float, bar) -> str:
    """Adam on the free parameters through ``fn`` (autodiff, proxy, hybrid), from several
    starts; at each of ``sweep_at`` the best point so far has its frequencies grid-searched
    (:meth:`_Problem.sweep`) and Adam continues from there alone."""
    if method == "hybrid":
        init = problem.search(config.search_points)
        sweep_losses = problem.real_losses
    else:
        init = problem.starts(config.n_starts[method])
        sweep_losses = _model_losses(problem, fn)
    opt = _Adam(init)
    sweeps = _sweep_steps(config, steps, problem)
    last_sweep = max(sweeps) if sweeps else 0
    stopper = _Stopper(config.patience[method], config.tolerance)
    refining = False
    for step in range(steps):
        if time.monotonic() > deadline:
            return "max_seconds"
        if step in sweeps:
            opt = _Adam(problem.sweep(problem.best_u[problem.free], sweep_losses)[None])
            refining = True
            stopper.reset()
        u = torch.tensor(opt.u, dtype=torch.float32, requires_grad=True)
        y = fn(problem.x.expand(u.shape[0], -1), problem.full(u))
        losses = problem.loss(y)
        losses.sum().backward()
        problem.record(losses.detach().numpy(), opt.u)
        opt.step(u.grad.numpy(), _lr(config, method, step / max(1, steps), refining))
        bar.update(1)
        bar.set_postfix(loss=f"{problem.best:.4f}")
        if problem.matched:
            return "matched"
        if step >= last_sweep and stopper.converged(problem.best):
            return "converged"
    if method != "hybrid":
        # The last step's parameters were never evaluated: do so, as the result may be there.
        problem.record(sweep_losses(opt.u), opt.u)
    return "steps"


def _run_spsa(problem: _Problem, config: MatchConfig, steps: int, deadline: float, bar,
              seed: int) -> str:
    """Adam on SPSA gradient estimates from the real devices (loss-level SPSA, as
    :func:`ddsp_synth.gradients.spsa_gradient`) from the best points of a random search (all
    starts' perturbations in one pool call), with the frequency sweeps of the gradient
    methods; epsilon shrinks from ``spsa_epsilon_start``."""
    rng = np.random.default_rng(seed + 7)
    opt = _Adam(problem.search(config.search_points, config.n_starts["spsa"]))
    sweeps = _sweep_steps(config, steps, problem)
    last_sweep = max(sweeps) if sweeps else 0
    # Without sweeps, the starts are narrowed down to the best at the first sweep fraction.
    narrow_at = min(sweeps) if sweeps else int(config.sweep_at[0] * steps)
    stopper = _Stopper(config.patience["spsa"], config.tolerance)
    refining = False
    current = np.full(len(opt.u), np.inf)
    for step in range(steps):
        if time.monotonic() > deadline:
            return "max_seconds"
        if step in sweeps:
            opt = _Adam(problem.sweep(problem.best_u[problem.free], problem.real_losses)[None])
            refining = True
            stopper.reset()
        elif step == narrow_at and len(opt.u) > 1:
            opt = _Adam(opt.u[[int(np.argmin(current))]])
        frac = step / max(1, steps)
        eps = config.spsa.epsilon + (config.spsa_epsilon_start - config.spsa.epsilon) * (1 - frac)
        cfg = SPSAConfig(epsilon=eps, n_pairs=config.spsa.n_pairs)
        # All starts' perturbations in one batch, so the pool runs them in parallel.
        k, n = cfg.n_pairs, len(opt.u)
        points, plans = [], []
        for u in opt.u:
            plus, minus, delta = perturbations(u, cfg.epsilon, k, rng)
            points += [plus, minus]
            plans.append(delta)
        losses = problem.real_losses(np.concatenate(points)).reshape(n, 2, k)
        grad = np.stack([((lo[0] - lo[1])[:, None] / d).mean(0) for lo, d in zip(losses, plans)])
        u = opt.step(grad, _lr(config, "spsa", frac, refining))
        # One real evaluation of the current points keeps the loss curve honest.
        current = problem.real_losses(u)
        problem.record(current, u)
        bar.update(1)
        bar.set_postfix(loss=f"{problem.best:.4f}")
        if problem.matched:
            return "matched"
        if step >= last_sweep and stopper.converged(problem.best):
            return "converged"
    return "steps"


def _run_cma(problem: _Problem, config: MatchConfig, steps: int, deadline: float, bar,
             seed: int) -> str:
    """CMA-ES (IPOP restarts) from the best of the random search for ``cma_sweep_at`` of the
    time; then the frequency sweep from the best point, and CMA-ES again from there with
    ``cma_refine_sigma`` for the rest (when no device has a frequency: one CMA-ES phase)."""
    generations = [0]

    def callback(evals, best, best_u):
        generations[0] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{problem.best:.4f}")
        return generations[0] >= steps or problem.matched

    def losses(cands):
        out = problem.real_losses(cands)
        problem.record(out, cands)
        return out

    start = problem.search(config.search_points)[0]
    sweepable = problem.has_sweep()
    phases = [(start, config.cma, config.cma_sweep_at if sweepable else 1.0)]
    if sweepable:
        phases.append((None, dataclasses.replace(config.cma, sigma0=config.cma_refine_sigma),
                       1.0))
    t0 = time.monotonic()
    total = max(0.0, deadline - t0)
    for u0, cma_config, until in phases:
        if u0 is None:
            u0 = problem.sweep(problem.best_u[problem.free], problem.real_losses)
        budget = max(0.0, t0 + until * total - time.monotonic())
        cma_minimize(losses, u0, cma_config, max_seconds=budget, seed=seed, callback=callback)
        if problem.matched or generations[0] >= steps:
            break
    if problem.matched:
        return "matched"
    return "max_seconds" if time.monotonic() > deadline - 0.5 else "steps"


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------
def preset(device: Device, u: np.ndarray, method: str) -> dict:
    """``{"chain": [{"device", "params"}...], "method"}`` in natural units."""
    values = denormalise(device.params, np.asarray(u, np.float64)[None])[0]
    parts = device.parts if device.is_chain else (device,)
    chain, k = [], 0
    for part in parts:
        n = len(part.params)
        entry = {"device": part.name,
                 "params": {p.name: round(float(v), 6) for p, v in zip(part.params,
                                                                       values[k : k + n])}}
        if part.source and part.source != part.name:
            entry["source"] = part.source
        chain.append(entry)
        k += n
    return {"chain": chain, "method": method}


def _spectrum_db(audio: np.ndarray, n_fft: int = 2048) -> np.ndarray:
    mag = magnitude_spectrogram(torch.from_numpy(audio.astype(np.float32))[None], n_fft,
                                n_fft // 4)[0]
    return (20 * torch.log10(mag.pow(2).mean(1).sqrt() + 1e-7)).numpy()


def _plot(path: Path, history: list[float], dry, target, matched, sample_rate: int,
          title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(np.arange(1, len(history) + 1), np.minimum.accumulate(history), label="best so far")
    ax1.plot(np.arange(1, len(history) + 1), history, alpha=0.35, label="per iteration")
    ax1.set_yscale("log")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("matching loss")
    ax1.set_title("loss")
    ax1.legend()
    freqs = np.fft.rfftfreq(2048, 1.0 / sample_rate)
    for audio, label, style in ((dry, "dry (before)", ":"), (target, "target", "-"),
                                (matched, "matched (after)", "--")):
        ax2.semilogx(freqs[1:], _spectrum_db(audio)[1:], style, label=label)
    ax2.set_xlabel("frequency (Hz)")
    ax2.set_ylabel("level (dB)")
    ax2.set_title("average spectrum")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def _check_outputs(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise MatchError(f"{out_dir}: exists and is not a folder")
    for name in OUTPUT_FILES:
        if (out_dir / name).exists() and not force:
            raise MatchError(f"{out_dir / name} exists; pass --force to overwrite it")


def match_files(dry_path, target_path, chain: str, method: str, out_dir,
                steps: int | None = None, max_seconds: float | None = None, seed: int = 0,
                force: bool = False, progress: bool = True,
                proxy_dirs: list[str | os.PathLike] = (),
                config: MatchConfig = MatchConfig()) -> dict:
    """Estimate the parameters of ``chain`` that turn DRY into TARGET; write the results.

    Args:
        dry_path: the unprocessed recording.
        target_path: the processed recording (any sample rate; resampled to the dry file's).
        chain: comma-separated devices: built-in names, JSON device files, ``.vst3`` paths;
            ``name:param=value`` fixes a parameter.
        method: ``autodiff``, ``spsa``, ``proxy``, ``hybrid`` or ``cma``.
        out_dir: folder for preset.json, matched.wav, report.json, match.png.
        steps: iterations (optimiser steps; CMA-ES generations); default per method.
        max_seconds: optimisation time budget (loading and rendering come on top).
        seed: random starts, SPSA perturbations, CMA-ES.
        force: overwrite existing outputs.
        progress: show a progress bar.
        proxy_dirs: extra folders searched for proxies (before the shipped ones).
        config: everything else (:class:`MatchConfig`).

    Returns:
        The report (also written to report.json); ``report["notes"]`` lists what was done
        to the inputs (resampling, alignment), one line each.

    Raises:
        MatchError, AudioError: bad inputs or settings (one-line messages).
    """
    from tqdm import tqdm

    t_start = time.monotonic()
    if method not in METHODS:
        raise MatchError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    for name, value in (("steps", steps), ("max_seconds", max_seconds)):
        if value is not None and (isinstance(value, bool) or not math.isfinite(value)
                                  or value <= 0):
            raise MatchError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    out_dir = Path(out_dir)
    _check_outputs(out_dir, force)
    check_output_folder(out_dir, inputs=[dry_path, target_path])  # writable, before any work
    inputs = load_inputs(dry_path, target_path, config)
    sr = inputs.sample_rate
    try:
        device = make_chain(chain, sr)
    except DeviceError as err:
        raise MatchError(str(err)) from None
    render_by_twin = False  # matched.wav through the twins: pedalboard is not installed
    if device.spec is not None and needs_pedalboard(device.spec):
        try:
            import_pedalboard()
        except DeviceError as err:
            if method in ("spsa", "hybrid", "cma") or device.twin is None:
                raise MatchError(f"method '{method}' needs the real devices: {err}") from None
            render_by_twin = True
            inputs.notes.append("pedalboard is not installed: matched.wav was rendered by the "
                                "PyTorch twins")
    if len(device.fixed) == len(device.params):
        raise MatchError("every parameter of the chain is fixed: nothing to estimate")
    n_steps = int(steps) if steps is not None else config.steps[method]
    budget = float(max_seconds) if max_seconds is not None else config.max_seconds[method]

    pre, w0, w1 = analysis_window(inputs.dry_common, sr, config.analysis_seconds,
                                  config.preroll_seconds)
    loss = WindowLoss(inputs.target_common[w0:w1], w0 - pre, config)
    x = inputs.dry_common[pre:w1]
    torch.manual_seed(seed)
    pool = None
    try:
        needs_pool = method in ("spsa", "hybrid", "cma")
        if device.spec is None and needs_pool:
            raise MatchError(f"method '{method}' needs the real devices, and '{device.name}' has "
                             f"none")
        if needs_pool:
            pool = device.pool(config.n_workers)
        problem = _Problem(device, x, loss, pool, seed, config, method)
        with torch.no_grad():
            dry_loss = float(loss(torch.from_numpy(x[None].astype(np.float32)))[0])
            problem.good_enough = config.good_enough * dry_loss
        # the result is the best candidate evaluated (every method evaluates the defaults
        # among its first), never an unevaluated point credited with the dry file's loss
        kinds = []
        bar = tqdm(total=n_steps, disable=not progress, desc=f"match {method}", unit="it",
                   leave=False)
        t_opt = time.monotonic()
        deadline = t_opt + budget
        if method == "cma":
            stopped = _run_cma(problem, config, n_steps, deadline, bar, seed)
        elif method == "spsa":
            stopped = _run_spsa(problem, config, n_steps, deadline, bar, seed)
        else:
            fn = DeviceFunction(device, method, pool=pool, proxy_dirs=list(proxy_dirs),
                                seed=seed)
            kinds = fn.kinds
            stopped = _run_gradient(problem, fn, method, config, n_steps, deadline, bar)
        if pool is not None:  # every real-device run of the optimisation, counted once
            problem.device_calls = pool.calls
        bar.close()
        opt_seconds = time.monotonic() - t_opt
        best_u = problem.best_u
        natural = denormalise(device.params, best_u[None])[0]
        # matched.wav: the whole dry file through the real chain (its twin if it has none).
        if device.spec is not None and not render_by_twin:
            if pool is None:
                pool = device.pool(min(1, config.n_workers))
            # one item as long as the whole file: a slow plugin gets time in proportion
            pool.timeout_s = max(pool.timeout_s, 60.0 + 10.0 * len(inputs.dry) / sr)
            matched = pool.process(inputs.dry, natural)
        else:
            with torch.no_grad():
                matched = device.twin(torch.from_numpy(inputs.dry)[None],
                                      torch.from_numpy(natural)[None].float())[0].numpy()
    except (DeviceError, ProxyFileError) as err:
        raise MatchError(str(err)) from None
    finally:
        if pool is not None:
            pool.close()

    # The dry/target offset was estimated before the devices were known, so it holds their
    # own delay too (a shelf or a low-pass moves the correlation peak by a few samples). The
    # matched output carries that delay itself: what is left between it and the target is
    # the real offset, and the report compares at that one.
    notes = list(inputs.notes)
    lag = align(matched.astype(np.float32), inputs.target, sr, config.max_offset_ms)
    d0, t0, n_common = _overlap(inputs.dry, inputs.target, lag)
    if lag != inputs.lag:
        notes = [n for n in notes if not n.startswith("target aligned")]
        if lag:
            notes.append(_offset_note(lag, sr))
    if n_common < config.min_seconds * sr:  # cannot happen for sane devices; keep the first
        d0, t0, n_common = _overlap(inputs.dry, inputs.target, inputs.lag)
    n_rep = min(n_common, int(config.report_max_seconds * sr))
    seg = slice(d0, d0 + n_rep)
    target_common = inputs.target[t0 : t0 + n_rep]
    tgt = torch.from_numpy(target_common)[None]
    with torch.no_grad():
        d_before = float(mr_log_distance(torch.from_numpy(inputs.dry[seg])[None], tgt)[0])
        d_after = float(mr_log_distance(torch.from_numpy(matched[seg].astype(np.float32))[None],
                                        tgt)[0])
    result = preset(device, best_u, method)
    report = {
        "method": method,
        "chain": result["chain"],
        "sample_rate": sr,
        "seed": seed,
        "steps_requested": n_steps,
        "iterations": len(problem.history),
        "stopped_by": stopped,
        "max_seconds": budget,
        "optimisation_seconds": round(opt_seconds, 3),
        "wall_seconds": round(time.monotonic() - t_start, 3),
        "device_evaluations": problem.device_calls,
        "models": kinds,
        "analysis": {"window_start_s": round((inputs.start + w0) / sr, 3),
                     "window_seconds": round((w1 - w0) / sr, 3),
                     "preroll_seconds": round((w0 - pre) / sr, 3)},
        "loss_dry": dry_loss,
        "loss_final": problem.best if math.isfinite(problem.best) else None,
        "loss_per_step": [round(v, 6) for v in problem.history],
        "spectral_distance_before": d_before,
        "spectral_distance_after": d_after,
        "rel_spec": d_after / max(d_before, 1e-12),
        "distance_seconds": round(n_rep / sr, 3),
        "notes": notes,
        "config": asdict(config),
    }
    text = json.dumps(result, indent=2) + "\n"  # (the atomic writer makes the folder)
    atomic_write_bytes(out_dir / "preset.json", lambda tmp: Path(tmp).write_text(text))
    write_audio(out_dir / "matched.wav", matched, sr, force=True)
    _plot(out_dir / "match.png", problem.history or [dry_loss], inputs.dry[seg],
          target_common, matched[seg], sr,
          f"{chain} - {method}: rel_spec {report['rel_spec']:.3f}")
    rtext = json.dumps(report, indent=2) + "\n"
    atomic_write_bytes(out_dir / "report.json", lambda tmp: Path(tmp).write_text(rtext))
    return report


def summary_line(report: dict, out_dir) -> str:
    """One line for the command line: where the results are and how close they came."""
    return (f"{out_dir}: {report['method']} matched {len(report['chain'])} device(s) in "
            f"{report['wall_seconds']:.1f} s ({report['iterations']} iterations, "
            f"{report['device_evaluations']} device runs, {report['stopped_by']}); spectral "
            f"distance {report['spectral_distance_before']:.3f} -> "
            f"{report['spectral_distance_after']:.3f} (rel_spec {report['rel_spec']:.3f})")
