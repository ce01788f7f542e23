"""How well the clip pins down each parameter: the loss's curvature around the solution.

A listener compares band levels, so the residual is ``r(u)`` = 1/3-octave band levels (dB,
per frame of each analysis window, floored 50 dB below the target's loudest band) of the
output at normalised parameters ``u`` minus the target's. Its Jacobian ``J`` (central
differences, one batch of ``2F`` renders) gives the Gauss-Newton Hessian ``H = sum_b
J_b^T J_b / T``: per band ``b``, the mean over its ``T`` frames of the squared level change
per unit^2 of normalised parameters, summed over the bands. Two settings *sound the same*
when these band-level differences (RMS over time, added in quadrature over the bands) stay
below ``tau`` = ``same_sound_db``: around the solution, the ellipsoid ``du^T H du <=
tau^2``. A 1 dB change of one band is at the edge, as is a 0.25 dB change of all 17 bands
(more conservative than hearing for broad level changes, which only makes "pinned down"
stricter). With ``C = tau^2 (H +
lambda I)^-1`` (``lambda = tau^2``: nothing is less certain than its whole range):

* uncertainty of parameter ``i`` = ``sqrt(C_ii)`` (the others free to make up for it), and
  alone = ``tau / sqrt(H_ii + lambda)`` (the others held), both in natural units;
* **pinned down**: uncertainty within 0.5 octave (frequencies and other log-scaled
  parameters), 2 dB (dB parameters), or 10 % of the range (the rest);
* **trades off**: not pinned down, yet pinned down alone: other parameters make up for it,
  the partners being those whose correlation ``C_ij / sqrt(C_ii C_jj)`` is at least
  ``TRADE_CORRELATION`` (else the most correlated one); two settings along that valley,
  ``u* +- s C e_i / sqrt(C_ii)``, are rendered and compared (the largest ``s`` in
  ``VALLEY_SCALES`` whose two ends stay within ``2 tau``; their band levels' RMS
  difference is reported);
* **barely audible**: not pinned down even alone (e.g. an attack time when nothing
  crosses the threshold).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from ..dsp.spectral import magnitude_spectrogram
from ..stages.params import Param, denormalise

FEATURE_FFT = 1024
FEATURE_HOP = 256
BANDS_PER_OCTAVE = 3
FLOOR_BELOW_MAX_DB = 50.0
STEP = 0.02  # central-difference step, normalised units
TRADE_CORRELATION = 0.5
VALLEY_SCALES = (1.0, 0.5, 0.25, 0.125)
PINNED_OCTAVES = 0.5
PINNED_DB = 2.0
PINNED_RANGE_FRACTION = 0.1


def band_matrix(sample_rate: int, n_fft: int = FEATURE_FFT) -> torch.Tensor:
    """[n_bands, n_fft // 2 + 1] 0/1 rows: the rfft bins of each 1/3-octave band from
    40 Hz to 0.45 x the sample rate (bands without a bin dropped)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, hi = 40.0, 0.45 * sample_rate
    n = int(BANDS_PER_OCTAVE * math.log2(hi / lo))
    edges = lo * 2.0 ** (np.arange(n + 1) / BANDS_PER_OCTAVE)
    rows = [(freqs >= a) & (freqs < b) for a, b in zip(edges[:-1], edges[1:])]
    return torch.tensor(np.array([r for r in rows if r.any()], np.float32))


def band_levels_db(audio: torch.Tensor, bands: torch.Tensor, floor_power: float | None = None
                   ) -> tuple[torch.Tensor, float]:
    """[N, n] -> ([N, n_bands * frames] band levels in dB, the power floor used)."""
    mag = magnitude_spectrogram(audio, FEATURE_FFT, FEATURE_HOP)
    power = torch.einsum("kf,nft->nkt", bands, mag.square())
    if floor_power is None:
        floor_power = float(power.max()) * 10 ** (-FLOOR_BELOW_MAX_DB / 10) + 1e-20
    return (10 * torch.log10(power + floor_power)).reshape(audio.shape[0], -1), floor_power


def natural_width(p: Param, du: float) -> tuple[float, str]:
    """A normalised half-width ``du`` in natural units: (octaves, "oct") for log-scaled
    parameters, else (value, unit)."""
    if p.scale == "log":
        return du * math.log2(p.max / p.min), "oct"
    return du * (p.max - p.min), p.unit


def is_pinned(p: Param, du: float) -> bool:
    width, unit = natural_width(p, du)
    if unit == "oct":
        return bool(width <= PINNED_OCTAVES)
    if unit == "dB":
        return bool(width <= PINNED_DB)
    return bool(du <= PINNED_RANGE_FRACTION)


def param_labels(chain_devices) -> list[str]:
    """``device.param`` for every parameter of the chain (``peak2.gain_db`` for a second
    device of the same name)."""
    names = [d.name for _, d in chain_devices]
    labels = []
    for k, (_, device) in enumerate(chain_devices):
        name = device.name
        if names.count(name) > 1:
            name = f"{name}{names[: k + 1].count(name)}"
        labels += [f"{name}.{p.name}" for p in device.params]
    return labels


def _format(p: Param, value: float) -> str:
    unit = f" {p.unit}" if p.unit else ""
    return f"{value:.3g}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"


def identifiability(render: Callable[[np.ndarray], np.ndarray], u_best: np.ndarray, free,
                    params, labels, target_windows: np.ndarray, preroll: int,
                    sample_rate: int, same_sound_db: float) -> dict:
    """The per-parameter report (see the module docstring).

    Args:
        render: [N, P] normalised full parameter vectors -> [N * W, preroll + n] outputs.
        u_best: [P] the solution (normalised); free: indices of the free parameters.
        params: [P] declarations; labels: [P] ``device.param`` names.
        target_windows: [W, n] the target's analysis windows.

    Returns:
        ``{"same_sound_db", "params": [...], "trade_offs": [...], "sentence"}``.
    """
    t0 = time.monotonic()
    free = list(free)
    bands = band_matrix(sample_rate)
    target, floor = band_levels_db(torch.from_numpy(np.asarray(target_windows, np.float32)),
                                   bands)
    n_windows, n_bands = target.shape[0], bands.shape[0]

    def features(cands: np.ndarray) -> np.ndarray:
        y = torch.from_numpy(np.asarray(render(cands), np.float32))[:, preroll:]
        with torch.no_grad():
            f, _ = band_levels_db(y, bands, floor)
        return f.reshape(len(cands), n_windows * f.shape[1]).numpy().astype(np.float64)

    cands, steps = [], []
    for i in free:
        lo, hi = max(0.0, u_best[i] - STEP), min(1.0, u_best[i] + STEP)
        for v in (hi, lo):
            c = u_best.copy()
            c[i] = v
            cands.append(c)
        steps.append(hi - lo)
    f = features(np.array(cands))
    jac = ((f[0::2] - f[1::2]) / np.array(steps)[:, None]).T  # [M, F]
    hess = jac.T @ jac / (jac.shape[0] / n_bands)  # summed over bands, mean over frames
    tau2 = same_sound_db ** 2
    cov = tau2 * np.linalg.inv(hess + tau2 * np.eye(len(free)))
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    alone = same_sound_db / np.sqrt(np.diag(hess) + tau2)
    corr = cov / np.outer(sd, sd)
    rows = []
    natural = denormalise(params, u_best[None])[0]
    for k, i in enumerate(free):
        p = params[i]
        width, unit = natural_width(p, sd[k])
        alone_width, _ = natural_width(p, alone[k])
        pinned, pinned_alone = is_pinned(p, sd[k]), is_pinned(p, alone[k])
        status = "pinned" if pinned else ("trades_off" if pinned_alone else "barely_audible")
        partners = _partners(corr[k], k, free, labels) if status == "trades_off" else []
        rows.append({"param": labels[i], "value": round(float(natural[i]), 6),
                     "uncertainty": round(float(width), 4), "uncertainty_unit": unit,
                     "alone": round(float(alone_width), 4), "status": status,
                     "pinned": pinned, "trades_off_with": partners})
    trade_offs = _trade_offs(rows, free, cov, sd, u_best, params, labels, features,
                             same_sound_db)
    return {"same_sound_db": same_sound_db, "method": "Gauss-Newton on 1/3-octave band levels",
            "params": rows, "trade_offs": trade_offs,
            "sentence": sentence(rows, trade_offs, params, labels),
            "seconds": round(time.monotonic() - t0, 3)}


def _partners(corr_row: np.ndarray, k: int, free, labels) -> list[str]:
    """The parameters that make up for parameter ``k``: those correlated with it by at
    least ``TRADE_CORRELATION`` (else the most correlated one), most correlated first."""
    order = [j for j in np.argsort(-np.abs(corr_row)) if j != k]
    strong = [j for j in order if abs(corr_row[j]) >= TRADE_CORRELATION]
    return [labels[free[j]] for j in (strong or order[:1])]


def _trade_offs(rows, free, cov, sd, u_best, params, labels, features, tau: float) -> list:
    """One entry per group of parameters that trade off: two settings at the ends of its
    valley, rendered. The linearised valley ``u* +- C e_i / sqrt(C_ii)`` can reach far
    beyond where the sound stays the same, so it is walked at ``VALLEY_SCALES`` of that
    length and the longest walk whose ends stay within ``2 tau`` of each other is kept."""
    out, seen = [], set()
    for k, row in enumerate(rows):
        if row["status"] != "trades_off" or row["param"] in seen:
            continue
        group = [row["param"]] + row["trades_off_with"]
        seen.update(group)
        move = cov[:, k] / max(sd[k], 1e-12)
        ends = []
        for scale in VALLEY_SCALES:
            for sign in (1.0, -1.0):
                u = u_best.copy()
                u[free] = np.clip(u_best[free] + sign * scale * move, 0.0, 1.0)
                ends.append(u)
        f = features(np.array(ends))
        apart = np.sqrt(np.mean((f[0::2] - f[1::2]) ** 2, axis=1))
        ok = [i for i in range(len(VALLEY_SCALES)) if apart[i] <= 2 * tau]
        pick = ok[0] if ok else len(VALLEY_SCALES) - 1
        nat = denormalise(params, np.array(ends[2 * pick : 2 * pick + 2]))
        settings = [{name: round(float(n[labels.index(name)]), 3) for name in group}
                    for n in nat]
        out.append({"params": group, "settings": settings,
                    "apart_db": round(float(apart[pick]), 2)})
    return out


def sentence(rows, trade_offs, params, labels) -> str:
    """One human sentence on what the clip pins down, what trades off, what it hardly
    hears; each parameter in one place (a pinned partner of a trade-off group is said to make
    up for the others, a parameter of a group is not said again to barely matter) and the
    device names as they are written."""
    parts = []
    pinned = [r["param"] for r in rows if r["status"] == "pinned"]
    if pinned:
        parts.append("the clip pins down " + ", ".join(pinned))
    status = {r["param"]: r["status"] for r in rows}
    in_groups = set()
    for t in trade_offs:
        names = [n.split(".", 1)[1] for n in t["params"]]
        ends = [", ".join(f"{name} {_format(params[labels.index(n)], v)}"
                          for name, (n, v) in zip(names, s.items())) for s in t["settings"]]
        same = (f"any of these settings sounds the same ({ends[0]}; or {ends[1]}: "
                f"{t['apart_db']:.1f} dB apart)")
        open_ = [n for n in t["params"] if status.get(n) != "pinned"]
        held = [n for n in t["params"] if status.get(n) == "pinned"]
        in_groups.update(t["params"])
        if held:
            # the pinned partners stay pinned down while they make up: say so, not "trade off"
            one = len(open_) == 1
            parts.append(f"{' and '.join(open_)} {'is' if one else 'are'} left open, as a "
                         f"small change of {' and '.join(held)} "
                         f"{'makes' if len(held) == 1 else 'make'} up for "
                         f"{'it' if one else 'them'}: {same}")
        else:
            parts.append(f"{' and '.join(open_)} trade off here: {same}")
    quiet = [r["param"] for r in rows if r["status"] == "barely_audible"
             and r["param"] not in in_groups]
    if quiet:
        parts.append(f"{', '.join(quiet)} barely change{'s' if len(quiet) == 1 else ''} "
                     "the sound of this clip (any value in a wide range will do)")
    if not parts:
        return ""
    text = "; ".join(parts) + "."
    # a sentence starts with a capital, and a device's name is written as it is
    return "T" + text[1:] if text.startswith("the clip") else "On this clip, " + text
