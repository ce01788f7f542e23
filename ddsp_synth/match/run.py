"""``match`` on arrays: the parameters of a chain that turn DRY into TARGET.

:func:`match` takes two signals at one sample rate, aligns them, and listens to the whole
clip when it is short, else to a few windows that cover its loud and soft passages
(:mod:`.windows`; the soft ones tell a compressor's threshold from a distortion's drive).
It starts from informed guesses (:mod:`.guess`: EQ from the ratio of the long-term spectra,
compressor and drive from envelopes, levels from frame levels) and estimates the chain's
parameters with one of five methods:

* ``autodiff`` - Adam through the PyTorch twins, from several starts at once (a batch: the
  guesses, the defaults, a random draw);
* ``proxy`` - the same through the neural proxies (twins for devices without one);
* ``hybrid`` - the real devices forward, the proxies (or twins) backward; starts from the
  best of the guesses and a small random search on the real devices;
* ``spsa`` - Adam on SPSA estimates of the gradient from the real devices, from the best
  points of the same search;
* ``cma`` - CMA-ES on the real devices from the best of the same search (locally when that
  is a guess; restarted with a doubled population from random points when it converges:
  IPOP), then the frequency sweep and CMA-ES again, locally, from its result.

The four gradient methods grid-search each filter's frequency (and gain) when they narrow
their starts down to one and whenever they converge, through the same model they take
gradients from, and go on from the best point at a lower rate: a gradient cannot move a
peak whose frequency is far off, because its effect does not overlap the target's. They
stop once neither Adam nor the sweep improves; one that stops (converged or out of steps)
short of a match, a stall, hands the rest of ``max_seconds`` to CMA-ES from its best point. The loss is a
multi-resolution spectral distance plus a distance of smoothed long-term average spectra,
over the analysis windows. Around the result, :mod:`.identify` says which parameters the
clip pins down and which trade off (within the same time budget).

The result holds the preset (natural units), the dry signal through the *real* chain with
those settings, and a report; :func:`~ddsp_synth.match.files.match_files` writes them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..blackbox.specs import import_pedalboard, needs_pedalboard
from ..chains import fixed_params, make_chain, preset_from_normalised, real_chain
from ..dsp.spectral import mr_log_distance, noise_floor_eps
from ..gradients.methods import METHODS
from ..stages.params import DeviceError, denormalise
from ..stages.registry import parse_chain
from .config import MatchConfig, MatchError
from .guess import informed_guesses
from .identify import identifiability, param_labels
from .inputs import MatchInputs, align, align_pair, offset_note, overlap, same_band
from .loss import WindowLoss
from .optimisers import run_cma, run_gradient, run_spsa
from .problem import OutOfTime, Problem
from .windows import Windows, analysis_windows


@dataclass
class MatchResult:
    """What :func:`match` found.

    Attributes:
        preset: ``{"chain": [{"device", "params"}...], "method"}`` in natural units.
        matched: [n_samples] the whole dry signal through the chain with those settings (the
            real devices where they exist).
        report: loss per step, device runs, wall time, the spectral distance before and
            after, notes on what was done to the inputs.
        history: the best loss of each iteration.
        inputs: the aligned pair.
        compared: the part of the dry signal the distances compare (a slice of it) and the
            target over the same part.
    """

    preset: dict
    matched: np.ndarray
    report: dict
    history: list
    inputs: MatchInputs
    compared: tuple


def check_settings(method: str, steps, max_seconds) -> None:
    """One-line MatchError for an unknown method or a non-positive budget."""
    if method not in METHODS:
        raise MatchError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    for name, value in (("steps", steps), ("max_seconds", max_seconds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise MatchError(f"--{name.replace('_', '-')} must be a positive number, got {value}")


def _chains(chain_text, sample_rate: int, method: str, config: MatchConfig, proxy_dirs, seed):
    """(the chain whose gradients the optimiser follows, its real devices or None)."""
    grad_method = "spsa" if method == "cma" else method
    chain = make_chain(chain_text, sample_rate, method=grad_method, n_workers=config.n_workers,
                       proxy_dirs=list(proxy_dirs), spsa=config.spsa, seed=seed)
    if len(chain.params) == len(fixed_params(chain)):
        raise MatchError("every parameter of the chain is fixed: nothing to estimate")
    if method not in ("spsa", "hybrid", "cma"):
        return chain, None
    stages = chain.stages()
    if len(stages) == 1 and hasattr(stages[0], "real"):  # one group: share its workers
        return chain, stages[0].real
    return chain, real_chain(chain, config.n_workers)


def _pedalboard_note(chain, method: str) -> str | None:
    """A note when pedalboard is missing and the twins render instead; MatchError when the
    method needs the real devices."""
    specs = [getattr(d, "spec", None) for s in chain.stages() for d in getattr(s, "devices", [])]
    if not any(spec is not None and needs_pedalboard(spec) for spec in specs):
        return None
    try:
        import_pedalboard()
    except DeviceError as err:
        if method in ("spsa", "hybrid", "cma") or any(
                d.twin is None for s in chain.stages() for d in s.devices):
            raise MatchError(f"method '{method}' needs the real devices: {err}") from None
        return "pedalboard is not installed: the matched output was rendered by the PyTorch twins"
    return None


def _preload_cma(method: str) -> None:
    """Import ``cma`` (it imports matplotlib and scipy.stats: seconds on a busy machine)
    before the time budget starts for ``cma``. The gradient methods import it only when they
    stall, inside their budget (an import in a background thread races with the plot's
    import of matplotlib: a partially initialised module)."""
    if method == "cma":
        import cma  # noqa: F401


class _BudgetBar:
    """Progress over the time budget's seconds, for a search that ends at the deadline or
    sooner (converged, matched): its ETA is the budget's end, an upper bound, and its
    postfix the iterations and the best loss. Takes ``update`` and ``set_postfix`` like the
    tqdm bar over steps it stands in for."""

    def __init__(self, deadline: float, progress: bool, desc: str):
        from tqdm import tqdm

        self.t0, self.iterations = time.monotonic(), 0
        self.bar = tqdm(total=max(1, round(deadline - self.t0)), disable=not progress,
                        desc=desc, leave=False,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s at most "
                                   "[{elapsed}<{remaining}{postfix}]")

    def _advance(self) -> None:
        self.bar.update(min(float(self.bar.total), time.monotonic() - self.t0) - self.bar.n)

    def update(self, n: int = 1) -> None:
        self.iterations += n
        self._advance()

    def set_postfix(self, **values) -> None:
        self.bar.set_postfix(it=self.iterations, **values)

    def close(self) -> None:
        self.bar.close()


def _optimise(problem: Problem, method: str, config: MatchConfig, steps: int, seed: int,
              progress: bool, guess=None, steps_set: bool = False) -> str:
    """The informed starts (``guess()``, when given), then the method's optimiser; returns
    how it stopped. The progress bar counts the steps the caller set, else the seconds of
    the budget (the default steps may end the search, or hand the rest of the time to
    CMA-ES)."""
    from tqdm import tqdm

    if guess is not None:
        with problem.phase("informed starts") as entry:
            guesses = guess()
            entry["notes"] = guesses.notes
        problem.guesses = guesses.starts

    if steps_set:
        bar = tqdm(total=steps, disable=not progress, desc=f"match {method}", unit="it",
                   leave=False)
    else:
        bar = _BudgetBar(problem.deadline, progress, f"match {method}")
    try:
        if method == "cma":
            return run_cma(problem, config, steps, bar, seed)
        if method == "spsa":
            return run_spsa(problem, config, steps, bar, seed)
        return run_gradient(problem, method, config, steps, bar, seed)
    finally:
        bar.close()


def _render(chain_text, inputs: MatchInputs, natural: np.ndarray, real, by_twins: bool,
            config: MatchConfig):
    """The whole dry signal through the real chain (the twins when it has none, or when
    pedalboard is missing)."""
    sr = inputs.sample_rate
    if real is not None and not by_twins:
        # one item as long as the whole file: a slow plugin gets time in proportion
        real.pool.timeout_s = max(real.pool.timeout_s, 60.0 + 10.0 * len(inputs.dry) / sr)
        return real.run(inputs.dry[None], natural[None])[0]
    twins = make_chain(chain_text, sr, method="autodiff")
    with torch.no_grad():
        x = torch.from_numpy(inputs.dry)[None]
        return twins(x, torch.from_numpy(natural)[None].float())[0][0].numpy()


def _distances(inputs: MatchInputs, matched: np.ndarray, config: MatchConfig):
    """Spectral distances before/after at the offset left between the matched output and
    the target (the devices' own delay is in the dry/target offset estimated before they
    were known), and the notes with that offset."""
    sr = inputs.sample_rate
    notes = list(inputs.notes)
    dry = inputs.dry
    if inputs.target_rate is not None:  # what resampling leaves of both, as of the target
        dry, matched = inputs.dry_heard, same_band(matched, sr, inputs.target_rate)
    lag = align(matched.astype(np.float32), inputs.target, sr, config.max_offset_ms)
    d0, t0, n_common = overlap(inputs.dry, inputs.target, lag)
    if lag != inputs.lag:
        notes = [n for n in notes if not n.startswith("target aligned")]
        if lag:
            notes.append(offset_note(lag, sr))
    if n_common < config.min_seconds * sr:  # cannot happen for sane devices; keep the first
        d0, t0, n_common = overlap(inputs.dry, inputs.target, inputs.lag)
    n = min(n_common, int(config.report_max_seconds * sr))
    seg, tgt = slice(d0, d0 + n), inputs.target[t0 : t0 + n]
    t = torch.from_numpy(tgt)[None]
    eps = noise_floor_eps(inputs.noise_rms)  # the target's noise floor, where it has one
    with torch.no_grad():
        before = float(mr_log_distance(torch.from_numpy(dry[seg])[None], t, log_eps=eps)[0])
        after = float(mr_log_distance(torch.from_numpy(matched[seg].astype(np.float32))[None],
                                      t, log_eps=eps)[0])
    return before, after, n, notes, seg, tgt


def match(dry: np.ndarray, target: np.ndarray, sample_rate: int, chain, method: str = "autodiff",
          steps: int | None = None, max_seconds: float | None = None, seed: int = 0,
          progress: bool = False, proxy_dirs=(), config: MatchConfig = MatchConfig(),
          inputs: MatchInputs | None = None) -> MatchResult:
    """Estimate the parameters of ``chain`` that turn ``dry`` into ``target``.

    Args:
        dry, target: [n_samples] float signals at ``sample_rate`` (aligned here, offsets up to
            +-50 ms).
        chain: ``"peak,compressor"``, JSON device files, ``.vst3`` paths; ``name:param=value``
            fixes a parameter.
        method: ``autodiff``, ``spsa``, ``proxy``, ``hybrid`` or ``cma``.
        steps: iterations (optimiser steps; CMA-ES generations); default per method.
        max_seconds: optimisation time budget (loading and rendering come on top).
        seed: random starts, SPSA perturbations, CMA-ES.
        inputs: an already aligned pair (what :func:`load_pair` gives), instead of the arrays.

    Raises:
        MatchError, AudioError, DeviceError: bad inputs or settings (one-line messages).
    """
    t_start = time.monotonic()
    check_settings(method, steps, max_seconds)
    parse_chain(chain)  # the arguments before the audio: a bad chain is said first
    inputs = inputs or align_pair(dry, target, sample_rate, config)
    sr = inputs.sample_rate
    gradient_chain, real = _chains(chain, sr, method, config, proxy_dirs, seed)
    try:
        return _match(gradient_chain, real, chain, inputs, method, steps, max_seconds, seed,
                      progress, config, t_start)
    finally:
        gradient_chain.close()
        if real is not None:
            real.close()


def _renderer(chain_text, problem: Problem, sr: int):
    """[N, P] normalised -> [N * W, n] outputs for the identifiability report: the twins
    where every device has one (exact and fast), else the real devices, else the chain's
    own stages."""
    if all(d.twin is not None for _, d in problem.devices):
        twins = make_chain(chain_text, sr, method="autodiff")
    elif problem.real is not None:
        return lambda u: problem.real_outputs(u[:, problem.free])
    else:
        twins = problem.chain
    x = problem.x

    def render(u: np.ndarray) -> np.ndarray:
        natural = torch.from_numpy(denormalise(problem.params, u)).float()
        with torch.no_grad():
            y = twins(x.repeat(len(u), 1), natural.repeat_interleave(x.shape[0], 0))[0]
        return y.numpy()

    return render


def _identify_reserve(render, problem: Problem, config: MatchConfig, budget: float) -> float:
    """Seconds kept for the identifiability report: twice the time of its renders (timed
    on one) and 5 % of the budget, at most ``identify_max_fraction`` of the budget."""
    t0 = time.monotonic()
    try:
        render(problem.base[None])
    except OutOfTime:
        return 0.0
    # central differences, then at most 8 renders per trade-off (about one per 2 parameters)
    need = (time.monotonic() - t0) * (2 * len(problem.free) + 4 * len(problem.free)) + 0.2
    # and room for the optimiser's last iteration, which may end after its deadline
    return min(2.0 * need + 0.05 * budget, config.identify_max_fraction * budget)


def _identify(render, problem: Problem, windows: Windows, target_windows, sr, config,
              deadline: float, reserve: float) -> dict | None:
    """The identifiability report, or None when the time left would not cover it."""
    if time.monotonic() + 0.5 * reserve > deadline:
        return None
    problem.deadline = max(problem.deadline, deadline)  # the real devices check it
    labels = param_labels(problem.devices)
    with problem.phase("identifiability"):
        try:
            return identifiability(render, problem.best_u, problem.free, problem.params,
                                   labels, target_windows, windows.preroll, sr,
                                   config.same_sound_db)
        except OutOfTime:
            return None


def _match(gradient_chain, real, chain_text, inputs, method, steps, max_seconds, seed,
           progress, config, t_start) -> MatchResult:
    sr = inputs.sample_rate
    note = _pedalboard_note(gradient_chain, method)
    n_steps = int(steps) if steps is not None else config.steps[method]
    if steps is not None:  # the caller's steps end the search; the default ones may not
        config = replace(config, fallback_after_steps=False)
    budget = float(max_seconds) if max_seconds is not None else config.max_seconds[method]
    windows = analysis_windows(inputs.dry_common, sr, config)
    x = windows.cut(inputs.dry_common)
    target_w = windows.cut(inputs.target_common, with_preroll=False)
    loss = WindowLoss(target_w, windows.preroll, config, inputs.noise_rms)
    torch.manual_seed(seed)
    _preload_cma(method)
    t_opt = time.monotonic()
    problem = Problem(gradient_chain, x, loss, real, seed, config, method, t_opt + budget)
    render = _renderer(chain_text, problem, sr)
    reserve = _identify_reserve(render, problem, config, budget)
    problem.deadline = t_opt + budget - reserve
    with torch.no_grad():
        problem.dry_loss = dry_loss = float(loss(problem.x)[0])
    problem.good_enough = config.good_enough * dry_loss
    def guess():
        return informed_guesses(problem.devices, problem.params, problem.base, problem.free,
                                inputs.dry_common, inputs.target_common, x, target_w,
                                windows.preroll, sr, config,
                                t_opt + config.guess_budget_fraction * budget)

    stopped = _optimise(problem, method, config, n_steps, seed, progress, guess,
                        steps_set=steps is not None)
    ident = _identify(render, problem, windows, target_w, sr, config, t_opt + budget, reserve)
    opt_seconds = time.monotonic() - t_opt
    natural = denormalise(problem.params, problem.best_u[None])[0]
    matched = _render(chain_text, inputs, natural, real, note is not None, config)
    before, after, n_rep, notes, seg, tgt = _distances(inputs, matched, config)
    result = preset_from_normalised(gradient_chain, problem.best_u, method)
    rel_spec = after / max(before, 1e-12)
    if rel_spec >= 1.0:
        notes.append(f"no setting found sounds closer to the target than the dry file itself "
                     f"(rel_spec {rel_spec:.2f}): the target may not be the dry file through "
                     "this chain")
    if ident is not None:
        ident = _local_caveat(ident, rel_spec, config)
    report = {
        "method": method, "chain": result["chain"], "sample_rate": sr, "seed": seed,
        "steps_requested": n_steps, "iterations": len(problem.history), "stopped_by": stopped,
        "max_seconds": budget, "optimisation_seconds": round(opt_seconds, 3),
        "wall_seconds": round(time.monotonic() - t_start, 3),
        "device_evaluations": _device_runs(gradient_chain, real),
        "models": [k for s in gradient_chain.stages() for k in getattr(s, "kinds", [])]
        if method in ("proxy", "hybrid") else [],
        "analysis": _analysis(inputs, windows, sr),
        "phases": problem.phases,
        "identifiability": ident,
        "loss_dry": dry_loss,
        "loss_final": problem.best if math.isfinite(problem.best) else None,
        "loss_per_step": [round(v, 6) for v in problem.history],
        "spectral_distance_before": before, "spectral_distance_after": after,
        "rel_spec": rel_spec, "distance_seconds": round(n_rep / sr, 3),
        "notes": notes + ([note] if note else []), "config": asdict(config),
    }
    return MatchResult(result, matched, report, problem.history, inputs, (seg, tgt))


def _device_runs(chain, real) -> int:
    """Runs of the real devices: the search's (``real``) and those of the chain's own real
    stages (an ``@spsa`` or ``@hybrid`` device inside an autodiff chain), each pool once."""
    pools = {id(s.real): s.real for s in chain.stages() if hasattr(s, "real")}
    if real is not None:
        pools[id(real)] = real
    return sum(p.calls for p in pools.values())


def _local_caveat(ident: dict, rel_spec: float, config: MatchConfig) -> dict:
    """The identifiability report describes the neighbourhood of the result: where the match
    is not close (rel_spec above ``identify_close_rel_spec``), "pins down" means "around
    this setting", and the report and its sentence say so."""
    close = rel_spec <= config.identify_close_rel_spec
    ident = {**ident, "match_is_close": close}
    if not close and ident.get("sentence"):
        ident["sentence"] = (f"Around this setting (the match is not close, rel_spec "
                             f"{rel_spec:.2f}: another setting may fit better): "
                             + ident["sentence"][:1].lower() + ident["sentence"][1:])
    return ident


def _analysis(inputs: MatchInputs, windows: Windows, sr: int) -> dict:
    """Where the loss listened: the first window's keys as before, and every window."""
    return {"window_start_s": round((inputs.start + windows.starts[0]) / sr, 3),
            "window_seconds": round(windows.length / sr, 3),
            "preroll_seconds": round(windows.preroll / sr, 3),
            "whole_clip": windows.starts == (0,) and windows.length == len(inputs.dry_common),
            "compared_seconds": round(windows.compared_samples / sr, 3),
            "windows": [{"start_s": round((inputs.start + s) / sr, 3),
                         "level_db": round(v, 1)}
                        for s, v in zip(windows.starts, windows.levels_db)]}
