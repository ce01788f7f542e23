"""Fitting the rack's parametric EQ (low shelf, peaks, high shelf) to a target spectrum.

The model is exact for a linear filter: the 1/3-octave levels of the output after the EQ
are ``10 log10(sum over the band's bins of P(f) |H(f)|^2)``, with ``P`` the output's fine
long-term spectrum and ``H`` the product of the twins' own biquads (the coefficients
pedalboard computes). The fit minimises, over the bands, the squared difference between
those levels and the reference's (after removing its mean: the overall level is the gain
stage's business), plus a small penalty on every gain, so that among settings that match
alike the smaller boosts and cuts win (and a band that barely helps stays near 0 dB).

It starts from an informed guess: each device in turn is placed by a grid search over its
frequency, gain and q with the devices already placed held (shelves first: they take the
broad tilt; then each peak where the remaining error is largest), and all of them are then
refined together by L-BFGS on the normalised parameters. Everything stays inside the
declared ranges (a sigmoid maps the optimiser's variables into them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..stages.params import Param
from ..stages.twins import HighShelf, LowShelf, Peak
from .spectrum import Spectrum


@dataclass(frozen=True)
class EqFitConfig:
    """Settings of :func:`fit_eq`.

    Attributes:
        gain_penalty: weight of the mean squared gain (in units of the 24 dB range) against
            the mean squared band error in dB^2.
        grid_qs: q values tried by the initial grid search.
        grid_gain_factors: multiples of the remaining error at a frequency tried as gains.
        lbfgs_iterations: iterations of each joint refinement.
        replace_passes: passes that move each device in turn to its best grid setting
            against what the others leave, each followed by a joint refinement (a peak
            that the first placement put beside another moves to where it is needed).
        max_boost_db: the target never asks a band for more than this above the output's
            level (its difference to the reference is clipped); a band 50 dB down in the
            output is noise that no EQ should raise by 50 dB.
        max_cut_db: likewise for cuts.
        shelf_q_range, peak_q_range: the q values the fit may use (inside the declared
            0.1 to 10): a shelf above q 1 rings into a bump and a dip, a peak beyond q 8 is
            narrower than any 1/3-octave band can ask for.
        quiet_db, quiet_weight: see :func:`band_weights`.
        level_free_db, level_weight: the EQ may change the output's overall level by this
            much freely; beyond it each dB costs ``level_weight * excess^2`` (dB^2, as the
            band error): the output gain, which stops at +-24 dB, must still be able to make
            the loudness right.
    """

    gain_penalty: float = 0.5
    grid_qs: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    grid_gain_factors: tuple[float, ...] = (0.5, 1.0)
    lbfgs_iterations: int = 60
    replace_passes: int = 2
    max_boost_db: float = 24.0
    max_cut_db: float = 36.0
    shelf_q_range: tuple[float, float] = (0.5, 1.0)
    peak_q_range: tuple[float, float] = (0.3, 8.0)
    quiet_db: tuple[float, float] = (-40.0, -60.0)
    quiet_weight: float = 0.1
    level_free_db: float = 12.0
    level_weight: float = 1.0


def _grouped_bins(spectrum: Spectrum, bands: np.ndarray, group_octaves: float):
    """The bins inside the bands, merged into groups at most ``group_octaves`` wide within
    each band (the EQ's response barely changes across one; evaluating it at the group's
    power centroid keeps the model exact to first order at a tenth of the cost).

    Returns:
        freqs_hz [n_groups] (power centroids), power [n_groups], band index [n_groups].
    """
    matrix = spectrum.band_matrix(bands)
    inside = matrix.any(axis=0)
    f, p = spectrum.freqs_hz[inside], spectrum.power[inside]
    band = matrix[:, inside].argmax(axis=0)
    key = band * 100000 + np.floor(np.log2(f) / group_octaves).astype(np.int64)
    _, group = np.unique(key, return_inverse=True)
    n = group.max() + 1
    power = np.bincount(group, p, n)
    count = np.bincount(group, None, n)
    mean_f = np.bincount(group, f, n) / count
    centroid = np.where(power > 0, np.bincount(group, p * f, n) / np.maximum(power, 1e-300),
                        mean_f)
    band_of = np.zeros(n, np.int64)
    band_of[group] = band
    return centroid, power, band_of


def _fit_params(params: tuple[Param, ...], q_range: tuple[float, float]) -> tuple[Param, ...]:
    """A filter's (cutoff, gain, q) declarations with q kept within ``q_range``."""
    cutoff, gain, q = params
    lo, hi = max(q.min, q_range[0]), min(q.max, q_range[1])
    return cutoff, gain, Param(q.name, q.unit, lo, hi, min(max(q.default, lo), hi), q.scale)


class EqModel:
    """The EQ's band levels over one output spectrum, for batches of settings.

    Args:
        spectrum: the output's long-term spectrum.
        bands: [n_bands, 3] band edges and centres (Hz).
        n_peaks: peaks between the two shelves.
    """

    def __init__(self, spectrum: Spectrum, bands: np.ndarray, n_peaks: int,
                 config: EqFitConfig = EqFitConfig(), group_octaves: float = 1 / 96):
        sr = spectrum.sample_rate
        self.devices = [LowShelf(sr)] + [Peak(sr) for _ in range(n_peaks)] + [HighShelf(sr)]
        self.bounds = [_fit_params(d.params, config.peak_q_range if isinstance(d, Peak)
                                   else config.shelf_q_range) for d in self.devices]
        freqs, power, band_of = _grouped_bins(spectrum, bands, group_octaves)
        self.matrix = torch.tensor((band_of[None, :] == np.arange(len(bands))[:, None])
                                   .astype(np.float64))  # [n_bands, n_groups]
        self.power = torch.tensor(power)  # [n_groups]
        w = torch.tensor(2 * math.pi * freqs / sr)
        self.trig = (torch.cos(w), torch.cos(2 * w), torch.sin(w), torch.sin(2 * w))
        self.floor = float(spectrum.power.sum()) * 1e-12
        self.centres_hz = bands[:, 1]
        self.level_free_db, self.level_weight = config.level_free_db, config.level_weight

    @property
    def params(self):
        """Each device's parameters as the fit sees them (its q range narrowed)."""
        return self.bounds

    def _magnitude_squared(self, sos: torch.Tensor) -> torch.Tensor:
        """[..., 6] sections -> [..., n_groups] ``|H|^2`` on the model's bins."""
        c1, c2, s1, s2 = self.trig
        b0, b1, b2, a0, a1, a2 = sos[..., None, :].unbind(-1)
        num = (b0 + b1 * c1 + b2 * c2).square() + (b1 * s1 + b2 * s2).square()
        den = (a0 + a1 * c1 + a2 * c2).square() + (a1 * s1 + a2 * s2).square()
        return num / den

    def device_gain(self, index: int, natural: torch.Tensor) -> torch.Tensor:
        """``|H|^2`` of device ``index`` with settings [..., 3]: [..., n_groups]."""
        return self._magnitude_squared(self.devices[index].coefficients(natural))

    def power_gain(self, natural: torch.Tensor) -> torch.Tensor:
        """``|H|^2`` of the whole EQ with settings [..., n_devices, 3]: [..., n_groups]
        (the peaks' sections computed together: one twin designs them all)."""
        low, high = self.devices[0], self.devices[-1]
        parts = [low.coefficients(natural[..., :1, :])]
        if natural.shape[-2] > 2:
            parts.append(self.devices[1].coefficients(natural[..., 1:-1, :]))
        parts.append(high.coefficients(natural[..., -1:, :]))
        return self._magnitude_squared(torch.cat(parts, -2)).prod(-2)

    def band_db(self, natural: torch.Tensor, gain: torch.Tensor | None = None
                ) -> torch.Tensor:
        """[..., n_devices, 3] settings -> [..., n_bands] levels after the EQ (dB); or the
        levels for a given ``|H|^2`` [..., n_groups]."""
        gain = self.power_gain(natural) if gain is None else gain
        return 10.0 * torch.log10((self.power * gain) @ self.matrix.T + self.floor)

    def plain_db(self) -> torch.Tensor:
        """[n_bands] levels without the EQ."""
        return 10.0 * torch.log10(self.matrix @ self.power + self.floor)


def _objective(model: EqModel, natural, target_db, weights, penalty: float, gain=None):
    """[...] mean weighted squared shape error (dB^2) + penalty on the gains (``gain``: the
    EQ's ``|H|^2`` when already known)."""
    gain = model.power_gain(natural) if gain is None else gain
    diff = model.band_db(natural, gain) - target_db
    diff = diff - (diff * weights).sum(-1, keepdim=True) / weights.sum()
    error = (diff.square() * weights).sum(-1) / weights.sum()
    gains = natural[..., 1] / 24.0
    level = 10.0 * torch.log10((model.power * gain).sum(-1) / model.power.sum())
    excess = torch.relu(level.abs() - model.level_free_db)
    return error + penalty * gains.square().sum(-1) + model.level_weight * excess.square()


def _grid_candidates(model: EqModel, index: int, residual_db: torch.Tensor,
                     config: EqFitConfig) -> torch.Tensor:
    """[C, 3] settings to try for device ``index`` from the remaining error per band: at each
    band centre, gains of a fraction of the error there (a shelf: of the mean error beyond
    it), each q of the grid."""
    params = model.params[index]
    f_lo, f_hi = params[0].min, params[0].max
    centres = torch.tensor(model.centres_hz)
    ok = (centres >= f_lo) & (centres <= f_hi)
    centres, res = centres[ok], residual_db[ok]
    if index == 0:  # low shelf: the mean error below the cutoff
        level = torch.cumsum(res, 0) / torch.arange(1, len(res) + 1)
    elif index == len(model.devices) - 1:  # high shelf: the mean error above
        level = torch.flip(torch.cumsum(torch.flip(res, [0]), 0), [0]) \
            / torch.arange(len(res), 0, -1)
    else:
        level = res
    rows = []
    for factor in config.grid_gain_factors:
        gains = (level * factor).clamp(params[1].min, params[1].max)
        for q in config.grid_qs:
            q = min(max(q, params[2].min), params[2].max)
            rows.append(torch.stack([centres, gains, torch.full_like(gains, q)], -1))
    return torch.cat(rows).to(torch.float64)


def _place(model: EqModel, placed: torch.Tensor, index: int, target_db, weights,
           config: EqFitConfig) -> torch.Tensor:
    """``placed`` [n_devices, 3] with device ``index`` moved to the best setting of a grid
    search against the error the other devices leave, if that is better than where it is."""
    others = placed.clone()
    others[index, 1] = 0.0
    residual = target_db - model.band_db(others)
    residual = residual - (residual * weights).sum() / weights.sum()
    cands = _grid_candidates(model, index, residual, config)
    trial = placed.expand(len(cands), *placed.shape).clone()
    trial[:, index] = cands
    gain = model.power_gain(others) / model.device_gain(index, others[index]) \
        * model.device_gain(index, cands)
    loss = _objective(model, trial, target_db, weights, config.gain_penalty, gain)
    best = int(torch.argmin(loss))
    if loss[best] < _objective(model, placed, target_db, weights, config.gain_penalty):
        return trial[best]
    return placed


def _placement_order(n_devices: int) -> list[int]:
    """Shelves first (the broad tilt), then the peaks."""
    return [0, n_devices - 1] + list(range(1, n_devices - 1))


def _refine(model: EqModel, start: torch.Tensor, target_db, weights,
            config: EqFitConfig) -> torch.Tensor:
    """Joint L-BFGS refinement of all devices from ``start`` (kept if nothing better)."""
    free = _to_free(model, start).requires_grad_(True)
    optimiser = torch.optim.LBFGS([free], lr=1.0, max_iter=config.lbfgs_iterations,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = _objective(model, _from_free(model, free), target_db, weights,
                          config.gain_penalty)
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        fitted = _from_free(model, free)
        if _objective(model, fitted, target_db, weights, config.gain_penalty) > \
                _objective(model, start, target_db, weights, config.gain_penalty):
            return start
    return fitted.detach()


def _bounds(model: EqModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[n_devices, 3] lower and upper bounds and whether each parameter is log-scaled."""
    lo = torch.tensor([[p.min for p in ps] for ps in model.params], dtype=torch.float64)
    hi = torch.tensor([[p.max for p in ps] for ps in model.params], dtype=torch.float64)
    log = torch.tensor([[p.scale == "log" for p in ps] for ps in model.params])
    return lo, hi, log


def _to_free(model: EqModel, natural: torch.Tensor) -> torch.Tensor:
    """Settings -> unconstrained variables (logit of the normalised value)."""
    lo, hi, log = _bounds(model)
    u_log = torch.log(natural.clamp_min(1e-12) / lo.abs()) / torch.log(hi.abs() / lo.abs())
    u = torch.where(log, u_log, (natural - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
    return torch.log(u / (1 - u))


def _from_free(model: EqModel, free: torch.Tensor) -> torch.Tensor:
    lo, hi, log = _bounds(model)
    u = torch.sigmoid(free)
    return torch.where(log, lo.abs() * torch.exp(u * torch.log(hi.abs() / lo.abs())),
                       lo + u * (hi - lo))


def band_weights(output_db: torch.Tensor, reference_db: torch.Tensor,
                 config: EqFitConfig) -> torch.Tensor:
    """[n_bands] how much each band counts: 1 where either signal is within
    ``quiet_db[0]`` of its own loudest band, falling (linearly in dB) to ``quiet_weight``
    where both are ``quiet_db[1]`` or more below (noise and rumble that nobody hears, and
    that no EQ should chase)."""
    level = torch.maximum(output_db - output_db.max(), reference_db - reference_db.max())
    top, bottom = config.quiet_db
    t = ((level - bottom) / (top - bottom)).clamp(0.0, 1.0)
    return config.quiet_weight + (1.0 - config.quiet_weight) * t


def fit_eq(model: EqModel, target_db: np.ndarray, config: EqFitConfig = EqFitConfig()
           ) -> np.ndarray:
    """Settings of the model's EQ whose output spectrum is closest in shape to ``target_db``.

    Args:
        model: the output's spectrum and the EQ layout.
        target_db: [n_bands] the reference's 1/3-octave levels.

    Returns:
        [n_devices, 3] natural settings (cutoff_frequency_hz, gain_db, q) per device, in the
        layout's order (low shelf, peaks by frequency, high shelf).
    """
    plain = model.plain_db()
    diff = torch.tensor(target_db, dtype=torch.float64) - plain
    diff = diff - diff.mean()
    # what the EQ is asked to do, kept within what it should do
    target = plain + diff.clamp(-config.max_cut_db, config.max_boost_db)
    weights = band_weights(plain, torch.tensor(target_db, dtype=torch.float64), config)
    n = len(model.devices)
    settings = torch.tensor([[p[0].default, 0.0, p[2].default] for p in model.params],
                            dtype=torch.float64)
    with torch.no_grad():
        for index in _placement_order(n):
            settings = _place(model, settings, index, target, weights, config)
    settings = _refine(model, settings, target, weights, config)
    for _ in range(config.replace_passes):
        with torch.no_grad():
            for index in _placement_order(n):
                settings = _place(model, settings, index, target, weights, config)
        settings = _refine(model, settings, target, weights, config)
    fitted = settings
    out = fitted.numpy().copy()
    peaks = out[1:-1]
    out[1:-1] = peaks[np.argsort(peaks[:, 0])]
    return out
