"""The optimisers of ``match``: Adam through a chain's gradients, Adam on SPSA estimates from
the real devices, and CMA-ES; each with the frequency sweeps of :class:`~.problem.Problem`,
an early stop on convergence, and the deadline obeyed in every phase.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from ..gradients.cma_search import cma_minimize
from ..gradients.spsa import SPSAConfig, spsa_estimate
from .config import MatchConfig
from .problem import OutOfTime, Problem


def learning_rate(config: MatchConfig, method: str, frac: float, refining: bool = False) -> float:
    """Cosine schedule; after a sweep the rate drops by ``refine_lr_factor``: Adam's first
    steps move every parameter by about the rate, enough to leave a narrow valley."""
    lo = config.final_lr_fraction
    peak = config.learning_rate[method] * (config.refine_lr_factor if refining else 1.0)
    return peak * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * frac)))


class Adam:
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


class Stopper:
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


def _sweep_steps(config: MatchConfig, steps: int, problem: Problem) -> set[int]:
    """Steps at which to sweep (none when no device has a frequency: then Adam runs on at
    its full rate)."""
    return {int(f * steps) for f in config.sweep_at} if problem.has_sweep() else set()


def run_gradient(problem: Problem, method: str, config: MatchConfig, steps: int, bar) -> str:
    """Adam on the free parameters through the chain's gradients (autodiff, proxy,
    hybrid), from several starts; at each of ``sweep_at`` the best point so far has its
    frequencies grid-searched and Adam continues from there alone."""
    try:
        return _gradient_loop(problem, method, config, steps, bar)
    except OutOfTime:
        return "max_seconds"


def _gradient_loop(problem: Problem, method: str, config: MatchConfig, steps: int, bar) -> str:
    if method == "hybrid":
        init, sweep_losses = problem.search(config.search_points), problem.real_losses
    else:
        init, sweep_losses = problem.starts(config.n_starts[method]), problem.model_losses
    opt, refining = Adam(init), False
    sweeps = _sweep_steps(config, steps, problem)
    last_sweep = max(sweeps) if sweeps else 0
    stopper = Stopper(config.patience[method], config.tolerance)
    for step in range(steps):
        if problem.out_of_time():
            return "max_seconds"
        if step in sweeps:
            opt = Adam(problem.sweep(problem.best_u[problem.free], sweep_losses)[None])
            refining = True
            stopper.reset()
        u = torch.tensor(opt.u, dtype=torch.float32, requires_grad=True)
        losses = problem.loss(problem.render(u))
        losses.sum().backward()
        problem.record(losses.detach().numpy(), opt.u)
        opt.step(u.grad.numpy(), learning_rate(config, method, step / max(1, steps), refining))
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


def run_spsa(problem: Problem, config: MatchConfig, steps: int, bar, seed: int) -> str:
    """Adam on SPSA gradient estimates from the real devices (the loss itself is the black
    box) from the best points of a random search (all starts' perturbations in one pool
    call), with the frequency sweeps of the gradient methods; epsilon shrinks from
    ``spsa_epsilon_start``."""
    try:
        return _spsa_loop(problem, config, steps, bar, seed)
    except OutOfTime:
        return "max_seconds"


def _spsa_loop(problem: Problem, config: MatchConfig, steps: int, bar, seed: int) -> str:
    rng = np.random.default_rng(seed + 7)
    opt, refining = Adam(problem.search(config.search_points, config.n_starts["spsa"])), False
    sweeps = _sweep_steps(config, steps, problem)
    last_sweep = max(sweeps) if sweeps else 0
    # Without sweeps, the starts are narrowed down to the best at the first sweep fraction.
    narrow_at = min(sweeps) if sweeps else int(config.sweep_at[0] * steps)
    stopper = Stopper(config.patience["spsa"], config.tolerance)
    current = np.full(len(opt.u), np.inf)
    for step in range(steps):
        if problem.out_of_time():
            return "max_seconds"
        if step in sweeps:
            opt = Adam(problem.sweep(problem.best_u[problem.free], problem.real_losses)[None])
            refining = True
            stopper.reset()
        elif step == narrow_at and len(opt.u) > 1:
            opt = Adam(opt.u[[int(np.argmin(current))]])
        frac = step / max(1, steps)
        eps = config.spsa.epsilon + (config.spsa_epsilon_start - config.spsa.epsilon) * (1 - frac)
        cfg = SPSAConfig(epsilon=eps, n_pairs=config.spsa.n_pairs)
        grad, _ = spsa_estimate(problem.real_losses, opt.u, cfg, rng)
        u = opt.step(grad, learning_rate(config, "spsa", frac, refining))
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


def run_cma(problem: Problem, config: MatchConfig, steps: int, bar, seed: int) -> str:
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

    try:
        start = problem.search(config.search_points)[0]
        sweepable = problem.has_sweep()
        phases = [(start, config.cma, config.cma_sweep_at if sweepable else 1.0)]
        if sweepable:
            phases.append((None, dataclasses.replace(config.cma, sigma0=config.cma_refine_sigma),
                           1.0))
        t0 = time.monotonic()
        total = max(0.0, problem.deadline - t0)
        for u0, cma_config, until in phases:
            if u0 is None:
                u0 = problem.sweep(problem.best_u[problem.free], problem.real_losses)
            budget = max(0.0, t0 + until * total - time.monotonic())
            cma_minimize(losses, u0, cma_config, max_seconds=budget, seed=seed,
                         callback=callback)
            if problem.matched or generations[0] >= steps:
                break
    except OutOfTime:
        return "max_seconds"
    if problem.matched:
        return "matched"
    return "max_seconds" if time.monotonic() > problem.deadline - 0.5 else "steps"
