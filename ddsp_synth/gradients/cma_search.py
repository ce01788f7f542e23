"""CMA-ES (the ``cma`` package) on normalised parameters: the gradient-free baseline."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class CMAConfig:
    """CMA-ES settings.

    Attributes:
        sigma0: initial step size in normalised units (a third of the range: the search
            starts broad, as nothing is known but the defaults).
        popsize: candidates per generation (None: cma's default ``4 + 3 ln P``).
        restarts: IPOP-CMA-ES: when a run converges (cma's own stopping rules) while budget
            remains, start again from a uniform random point with ``incpopsize`` times the
            population, up to this many times (Auger & Hansen 2005).
        incpopsize: population growth per restart.
    """

    sigma0: float = 0.3
    popsize: int | None = None
    restarts: int = 8
    incpopsize: float = 2.0


def cma_minimize(loss_fn: Callable[[np.ndarray], np.ndarray], u0: np.ndarray,
                 config: CMAConfig = CMAConfig(), max_evals: int | None = None,
                 max_seconds: float | None = None, seed: int = 0,
                 callback: Callable[[int, float, np.ndarray], bool] | None = None):
    """Minimise ``loss_fn`` over [0, 1]^P with CMA-ES, one batch per generation.

    Args:
        loss_fn: ``[N, P] -> [N]`` losses (a generation is evaluated as one batch, so a device
            pool runs its candidates in parallel).
        u0: [P] start (normalised).
        config: sigma0 and population size.
        max_evals: stop after this many loss evaluations.
        max_seconds: stop after this much wall time.
        seed: CMA-ES random seed.
        callback: ``(evaluations, best_loss, best_u) -> stop?`` after every generation.

    Returns:
        best_u [P], best_loss, number of evaluations.
    """
    import cma

    u0 = np.asarray(u0, np.float64)
    if u0.shape[-1] == 1:
        # cma refuses one-dimensional problems: add an inert second coordinate.
        u, best, evals = cma_minimize(lambda c: loss_fn(c[:, :1]), np.array([u0[0], 0.5]),
                                      config, max_evals, max_seconds, seed,
                                      None if callback is None
                                      else (lambda e, b, bu: callback(e, b, bu[:1])))
        return u[:1], best, evals
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    best_u, best = np.clip(u0, 0.0, 1.0), np.inf
    evals = 0
    popsize = config.popsize or int(4 + 3 * np.log(len(u0)))
    x0 = best_u.copy()
    stop = False
    for run in range(config.restarts + 1):
        # cma seeds numpy's generator with it: keep it in numpy's range (1 .. 2**32 - 1)
        run_seed = (int(seed) * 1000 + run) % (2**32 - 1) + 1
        opts = {"bounds": [0.0, 1.0], "seed": run_seed, "verbose": -9, "popsize": popsize}
        if max_evals is not None:
            opts["maxfevals"] = max(1, max_evals - evals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cma warns about its own internal choices
            es = cma.CMAEvolutionStrategy(x0.tolist(), config.sigma0, opts)
            while not es.stop():
                if max_seconds is not None and time.monotonic() - t0 >= max_seconds:
                    stop = True
                    break
                cands = np.clip(np.asarray(es.ask()), 0.0, 1.0)
                losses = np.asarray(loss_fn(cands), np.float64)
                es.tell(list(cands), losses.tolist())
                evals += len(cands)
                i = int(np.argmin(losses))
                if losses[i] < best:
                    best, best_u = float(losses[i]), cands[i].copy()
                if callback is not None and callback(evals, best, best_u):
                    stop = True
                    break
                if max_evals is not None and evals >= max_evals:
                    stop = True
                    break
        if stop:
            break
        popsize = int(round(popsize * config.incpopsize))
        x0 = rng.uniform(size=len(u0))
    return best_u, best, evals
