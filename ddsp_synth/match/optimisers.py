"""The optimisers of ``match``: Adam through a chain's gradients, Adam on SPSA estimates from
the real devices, and CMA-ES; each with the frequency sweeps of :class:`~.problem.Problem`,
an early stop on convergence, and the deadline obeyed in every phase. A gradient method that
stalls (converges, or uses up its steps, with the loss still above ``fallback_above`` of the
dry file's) hands the rest of the time to CMA-ES from its best point, through the same
losses.
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


class Schedule:
    """When the gradient loops sweep frequencies and narrow their starts.

    At ``sweep_at[0]`` of the steps several starts narrow down to the best point so far;
    then, and each time Adam converges, the best point has its frequencies grid-searched
    (at most ``len(sweep_at)`` times; never when no device has a frequency) and Adam goes on
    from there alone at the refining rate. A convergence after which the sweep finds
    nothing better (or no sweep is left) ends the loop: an informed start that is already
    right is not kept busy for a fixed number of steps.
    """

    def __init__(self, problem: Problem, config: MatchConfig, steps: int, patience: int,
                 losses_fn):
        self.problem, self.losses_fn, self.tol = problem, losses_fn, config.tolerance
        self.sweeps_left = len(config.sweep_at) if problem.has_sweep() else 0
        self.narrow_at = int(config.sweep_at[0] * steps)
        self.stopper = Stopper(patience, config.tolerance)
        self.refining = False

    def check(self, step: int, opt: Adam, current: np.ndarray | None = None):
        """After a step: (the optimiser to go on with, or None when done)."""
        p = self.problem
        converged = self.stopper.converged(p.best)
        if not converged and not (step + 1 == self.narrow_at and len(opt.u) > 1):
            return opt
        if self.sweeps_left:
            self.sweeps_left -= 1
            before = p.best
            opt = Adam(p.sweep(p.best_u[p.free], self.losses_fn)[None])
            if converged and p.best > before * (1.0 - self.tol):
                return None
        elif len(opt.u) > 1:
            pick = int(np.argmin(current)) if current is not None else None
            opt = Adam(opt.u[[pick]] if pick is not None else p.best_u[p.free][None])
        elif converged:
            return None
        self.refining = True
        self.stopper.reset()
        return opt


def fallback_cma(problem: Problem, losses_fn, config: MatchConfig, bar, seed: int,
                 stalled: str) -> str:
    """CMA-ES from the best point so far, for the rest of the time, when the method
    stopped short of a match (above ``fallback_above`` of the dry loss); else ``stalled``
    (why it stopped: "converged" or "steps") is returned as it is."""
    if (problem.matched or problem.best <= config.fallback_above * problem.dry_loss
            or problem.deadline - time.monotonic() < config.fallback_min_seconds):
        return stalled

    def losses(cands):
        out = losses_fn(cands)
        problem.record(out, cands)
        return out

    def callback(evals, best, best_u):
        bar.update(1)
        bar.set_postfix(loss=f"{problem.best:.4f}")
        return problem.matched

    cma_config = dataclasses.replace(config.cma, sigma0=config.fallback_sigma)
    with problem.phase("cma (the gradient stalled)"):
        import cma  # noqa: F401  (seconds on a busy machine: inside the budget, then checked)

        if problem.deadline - time.monotonic() < config.fallback_min_seconds:
            return stalled
        try:
            cma_minimize(losses, problem.best_u[problem.free], cma_config,
                         max_seconds=max(0.0, problem.deadline - time.monotonic()), seed=seed,
                         callback=callback)
        except OutOfTime:
            return "max_seconds"
    if problem.matched:
        return "matched"
    return "max_seconds" if time.monotonic() > problem.deadline - 0.5 else "converged"


def run_gradient(problem: Problem, method: str, config: MatchConfig, steps: int, bar,
                 seed: int = 0) -> str:
    """Adam on the free parameters through the chain's gradients (autodiff, proxy,
    hybrid), from several starts; at each of ``sweep_at`` the best point so far has its
    frequencies grid-searched and Adam continues from there alone; CMA-ES if it stalls."""
    losses_fn = problem.real_losses if method == "hybrid" else problem.model_losses
    return _loop_then_cma(problem, method, lambda: _gradient_loop(problem, method, config,
                                                                  steps, bar),
                          losses_fn, config, bar, seed)


def _loop_then_cma(problem: Problem, phase: str, loop, losses_fn, config: MatchConfig, bar,
                   seed: int) -> str:
    """Run ``loop()`` in ``phase`` under the budget; a loop that converged, or used up its
    default steps (``config.fallback_after_steps``), without reaching the goal hands the
    rest of the budget to CMA-ES. Returns why it stopped."""
    with problem.phase(phase):
        try:
            stopped = loop()
        except OutOfTime:
            return "max_seconds"
    if stopped != "converged" and not (stopped == "steps" and config.fallback_after_steps):
        return stopped
    return fallback_cma(problem, losses_fn, config, bar, seed, stopped)


def _gradient_loop(problem: Problem, method: str, config: MatchConfig, steps: int, bar) -> str:
    if method == "hybrid":
        init, sweep_losses = problem.search(config.search_points), problem.real_losses
    else:
        init, sweep_losses = problem.starts(config.n_starts[method]), problem.model_losses
    opt = Adam(init)
    schedule = Schedule(problem, config, steps, config.patience[method], sweep_losses)
    for step in range(steps):
        if problem.out_of_time():
            return "max_seconds"
        u = torch.tensor(opt.u, dtype=torch.float32, requires_grad=True)
        losses = problem.loss(problem.render(u))
        losses.sum().backward()
        problem.record(losses.detach().numpy(), opt.u)
        opt.step(u.grad.numpy(), learning_rate(config, method, step / max(1, steps),
                                               schedule.refining))
        bar.update(1)
        bar.set_postfix(loss=f"{problem.best:.4f}")
        if problem.matched:
            return "matched"
        opt = schedule.check(step, opt, losses.detach().numpy())
        if opt is None:
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
    return _loop_then_cma(problem, "spsa", lambda: _spsa_loop(problem, config, steps, bar, seed),
                          problem.real_losses, config, bar, seed)


def _spsa_loop(problem: Problem, config: MatchConfig, steps: int, bar, seed: int) -> str:
    rng = np.random.default_rng(seed + 7)
    opt = Adam(problem.search(config.search_points, config.n_starts["spsa"]))
    schedule = Schedule(problem, config, steps, config.patience["spsa"], problem.real_losses)
    for step in range(steps):
        if problem.out_of_time():
            return "max_seconds"
        frac = step / max(1, steps)
        eps = config.spsa.epsilon + (config.spsa_epsilon_start - config.spsa.epsilon) * (1 - frac)
        cfg = SPSAConfig(epsilon=eps, n_pairs=config.spsa.n_pairs)
        grad, _ = spsa_estimate(problem.real_losses, opt.u, cfg, rng)
        u = opt.step(grad, learning_rate(config, "spsa", frac, schedule.refining))
        # One real evaluation of the current points keeps the loss curve honest.
        current = problem.real_losses(u)
        problem.record(current, u)
        bar.update(1)
        bar.set_postfix(loss=f"{problem.best:.4f}")
        if problem.matched:
            return "matched"
        opt = schedule.check(step, opt, current)
        if opt is None:
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
        with problem.phase("search"):
            start = problem.search(config.search_points)[0]
        informed = any(np.allclose(start, g[problem.free]) for g in problem.guesses)
        first = dataclasses.replace(config.cma, sigma0=config.cma_informed_sigma) \
            if informed else config.cma
        sweepable = problem.has_sweep()
        phases = [(start, first, config.cma_sweep_at if sweepable else 1.0)]
        if sweepable:
            phases.append((None, dataclasses.replace(config.cma, sigma0=config.cma_refine_sigma),
                           1.0))
        t0 = time.monotonic()
        total = max(0.0, problem.deadline - t0)
        for k, (u0, cma_config, until) in enumerate(phases):
            with problem.phase("cma" if k == 0 else "cma after the frequency sweep"):
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
