"""The search problem of ``match``: the free parameters of a chain and how to evaluate them.

Everything here works on normalised parameters (``u`` in [0, 1]); the fixed parameters sit
at their values and are never moved. Candidates are evaluated through the real devices
(:meth:`Problem.real_losses`: the random search, SPSA, CMA-ES, the hybrid's sweeps) or
through the chain's own stages without gradients (:meth:`Problem.model_losses`: the twins
and proxies' sweeps). The best candidate ever evaluated is the result.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import numpy as np
import torch

from ..chains import chain_devices, fixed_params
from ..stages.chain import Chain
from ..stages.params import denormalise, normalise
from .config import MatchConfig
from .loss import WindowLoss


class OutOfTime(Exception):
    """The time budget ran out in the middle of a phase (caught by the optimisers)."""


class Problem:
    """The free parameters of a chain and how to evaluate candidates.

    Args:
        chain: the chain, built with the method whose gradients the optimiser follows.
        x: [W, n] the dry audio of the analysis windows with their pre-roll (or [n]).
        loss: the matching loss against the target's windows.
        real: the chain's real devices (a black box), or None.
        deadline: ``time.monotonic()`` after which every phase stops.
    """

    def __init__(self, chain: Chain, x: np.ndarray, loss: WindowLoss, real, seed: int,
                 config: MatchConfig, method: str, deadline: float):
        self.chain, self.real, self.loss, self.config = chain, real, loss, config
        self.params = chain.params
        self.devices = chain_devices(chain)
        self.x = torch.from_numpy(np.atleast_2d(np.asarray(x, np.float32)))
        self.rng = np.random.default_rng(seed)
        self.deadline = deadline
        fixed = fixed_params(chain)
        self.free = [i for i in range(len(self.params)) if i not in fixed]
        self.base = normalise(self.params, np.array([p.default for p in self.params]))
        for i, v in fixed.items():
            self.base[i] = self.params[i].to_normalised(v)
        self.history: list[float] = []
        self.phases: list[dict] = []  # what each phase did (:meth:`phase`)
        self.dry_loss = math.inf  # set once known, with good_enough
        self.good_enough = 0.0
        self.sweep_points = config.sweep_points.get(method, 33)
        self.best_u = self.base.copy()
        self.best = math.inf
        self.guesses: list[np.ndarray] = []  # informed starts [P], best first

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    @contextmanager
    def phase(self, name: str):
        """Record a phase of the search: its seconds, iterations and the best loss after
        it (into :attr:`phases`, also when it runs out of time); yields its entry."""
        t0, n0 = time.monotonic(), len(self.history)
        entry = {"phase": name}
        try:
            yield entry
        finally:
            entry.update(seconds=round(time.monotonic() - t0, 3),
                         iterations=len(self.history) - n0,
                         best_loss=self.best if math.isfinite(self.best) else None)
            self.phases.append(entry)

    def full(self, u_free):
        """[N, F] free (normalised) -> [N, P] full parameter vectors (numpy or torch)."""
        if isinstance(u_free, torch.Tensor):
            out = torch.from_numpy(np.repeat(self.base[None], u_free.shape[0], 0)).to(u_free)
            return out.index_copy(1, torch.tensor(self.free), u_free) if self.free else out
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

    @property
    def n_windows(self) -> int:
        return self.x.shape[0]

    def render(self, u_free: torch.Tensor) -> torch.Tensor:
        """The chain's output for [N, F] free parameters (differentiable): [N * W, n],
        candidate-major (item ``k * W + w``: candidate ``k``, window ``w``)."""
        natural = denormalise(self.params, self.full(u_free))
        x = self.x.repeat(u_free.shape[0], 1)
        return self.chain(x, natural.repeat_interleave(self.n_windows, 0))[0]

    def real_outputs(self, u_free: np.ndarray) -> np.ndarray:
        """The real devices' output for [N, F] candidates: [N * W, n], candidate-major."""
        if self.out_of_time():
            raise OutOfTime
        u = self.full(np.clip(u_free, 0.0, 1.0))
        return self.real.run(np.tile(self.x.numpy(), (len(u), 1)),
                             np.repeat(denormalise(self.params, u), self.n_windows, 0))

    def real_losses(self, u_free: np.ndarray) -> np.ndarray:
        """Losses of candidates [N, F] run through the real devices."""
        y = self.real_outputs(u_free)
        with torch.no_grad():
            return self.loss(torch.from_numpy(y)).numpy().astype(np.float64)

    def model_losses(self, u_free: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Losses of candidates [N, F] through the chain's stages, without gradients."""
        out = []
        chunk = chunk or max(1, 32 // self.n_windows)
        with torch.no_grad():
            for i in range(0, len(u_free), chunk):
                if self.out_of_time():
                    raise OutOfTime
                c = torch.tensor(u_free[i : i + chunk], dtype=torch.float32)
                out.append(self.loss(self.render(c)).numpy())
        return np.concatenate(out).astype(np.float64)

    def starts(self, n: int) -> np.ndarray:
        """The informed guesses, the defaults, then uniform random draws: [n, F] (the last
        row random whenever n leaves room for one)."""
        known = [g[self.free] for g in self.guesses] + [self.base[self.free]]
        known = known[: max(1, n - 1)]
        u = self.rng.uniform(size=(n, len(self.free)))
        u[: len(known)] = known
        return u

    def sweep_candidates(self, u_free: np.ndarray, device_index: int) -> np.ndarray | None:
        """Grid over one device's frequency (x its gain, if it has one) around ``u_free``.

        Returns [N, F] candidates, or None if that device has no free frequency.
        """
        offset, device = self.devices[device_index]
        names = [p.name for p in device.params]
        free_pos = {i: k for k, i in enumerate(self.free)}
        freq = [offset + i for i, p in enumerate(device.params)
                if p.unit == "Hz" and offset + i in free_pos]
        if not freq:
            return None
        # after informed starts a coarser grid around the current gain is enough
        informed = bool(self.guesses) and device.twin is not None
        points = self.config.informed_sweep_points if informed else self.sweep_points
        grid = [{free_pos[freq[0]]: v} for v in np.linspace(0.0, 1.0, points)]
        if "gain_db" in names and offset + names.index("gain_db") in free_pos:
            g = self.params[offset + names.index("gain_db")]
            k = free_pos[offset + names.index("gain_db")]
            now = float(g.from_normalised(u_free[k]))
            values = ([now + d for d in self.config.informed_sweep_gains_db] if informed
                      else self.config.sweep_gains_db)
            gains = [g.to_normalised(min(max(v, g.min), g.max)) for v in values]
            grid = [{**cell, k: gv} for cell in grid for gv in gains]
        cands = np.repeat(u_free[None], len(grid), 0)
        for row, cell in zip(cands, grid):
            for k, v in cell.items():
                row[k] = v
        return cands

    def has_sweep(self) -> bool:
        """Whether any device has a free frequency to grid-search."""
        probe = self.base[self.free]
        return any(self.sweep_candidates(probe, i) is not None for i in range(len(self.devices)))

    def sweep(self, u_free: np.ndarray, losses_fn) -> np.ndarray:
        """Coordinate grid search over each device's frequency (and gain): [F] -> [F].

        Gradients cannot move a filter whose frequency is far off (its effect does not
        overlap the target's), so the frequencies are searched on a grid, device by device,
        with every other parameter kept; the best point so far is kept. Stops at the
        deadline with what it has.
        """
        best_u = u_free.copy()
        try:
            best = float(losses_fn(best_u[None])[0])
            for i in range(len(self.devices)):
                cands = self.sweep_candidates(best_u, i)
                if cands is None:
                    continue
                losses = losses_fn(cands)
                self.record(losses, cands)
                j = int(np.argmin(losses))
                if losses[j] < best:
                    best, best_u = float(losses[j]), cands[j].copy()
        except OutOfTime:
            pass
        return best_u

    def search(self, n_points: int, keep: int = 1) -> np.ndarray:
        """Best ``keep`` of defaults + random candidates on the real devices: [keep, F]."""
        cands = self.starts(n_points)
        losses = self.real_losses(cands)
        self.record(losses, cands)
        return cands[np.argsort(losses)[:keep]]
