"""Informed starting points of ``match``: what the two recordings say before any search.

* **EQ from the long-term spectra.** The transfer estimate ``|S_xy| / S_xx`` (Welch cross-
  and auto-spectra of dry ``x`` and target ``y``; it ignores what a compressor or a
  distortion adds that is not correlated with the dry signal), on narrow bands weighted by
  coherence, the dry level and how the loss counts frequencies, is fitted by the chain's linear devices (filters, gain) in
  the frequency domain: greedily, the device and setting from a grid that explains most of
  what is left, then Adam on all of them together. A flat offset is free where nonlinear
  or unknown devices change the level too. With such devices, each target frame is first
  divided by its own broadband gain (:func:`frame_gains_db`: a compressor's gain would
  otherwise read as an EQ, low in the bands of the loud notes). When a distortion follows
  the filters, its harmonics (phase-locked to the dry signal's, so coherent) read as a
  boost: the same estimate on the twins' output at the guessed settings measures that bias,
  and the EQ is re-fitted without it (twice, with the dynamics re-read each time).
* **Dynamics from envelopes.** The compressor's input (the dry signal through the devices
  before it, at their guesses) has a peak envelope ``E`` per frame; the level change
  target - input against ``E`` is a hinge, flat below the threshold and of slope
  ``1 / ratio - 1`` above it: least squares over grids of thresholds and attack/release.
* **Level.** The level parameters of the nonlinear devices and the gain (threshold, ratio,
  drive, gain) are then refined by a coordinate grid search on the frame levels of the
  chain's output (through the twins, on the analysis windows) against the target's.

Devices without a twin (plugins, commands) keep their defaults; the EQ fit then takes the
level offset as free.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..dsp import iir
from ..stages.params import denormalise
from ..stages.twins import Compressor, Distortion, Gain, _Biquad, time_coefficient
from .config import MatchConfig
from .windows import LEVEL_FLOOR

TRANSFER_FFT = 2048
BANDS_PER_OCTAVE = 48
LOG_SHARE = 0.0
DRY_RANGE_DB = 100.0  # bins further below the dry signal's loudest bin get no weight
DRY_RAMP_DB = 30.0  # ... and those within this much above that floor less
SHELF_GAINS_DB = (-18.0, -12.0, -8.0, -5.0, -3.0, -1.5, 1.5, 3.0, 5.0, 8.0, 12.0, 18.0)
GRID_QS = (0.5, 0.9, 2.0, 4.0)
SOFT_OUTPUT_DB = -25.0  # tanh(v) is within 0.3 dB of v below about -25 dBFS RMS
GAIN_PRIOR = 0.02  # dB of misfit per dB of filter gain (see _EQFit.penalty)
FD_STEP = 1e-4  # forward-difference step of the EQ fit's Jacobian, normalised units
EQ_FIT_EVALUATIONS = 60  # Jacobian evaluations of each refinement
ATTACK_RELEASE_MS = ((1.0, 50.0), (5.0, 100.0), (20.0, 300.0), (2.0, 200.0))
FRAME_GAIN_BANDS_PER_OCTAVE = 3  # bands of the per-frame gain fit
FRAME_GAIN_RANGE_DB = 30.0  # bands this far below their loudest frame get no weight there
FRAME_GAIN_ITERATIONS = 10
BIAS_ITERATIONS = 2  # re-fits of the EQ with the distortion's bias taken out


@dataclass
class Guesses:
    """Informed starts.

    Attributes:
        starts: normalised [P] parameter vectors, the best guess first.
        notes: one line per thing estimated.
        seconds: time taken.
        eq_error_db: weighted RMS misfit of the EQ fit to the transfer estimate (None: no
            linear device).
    """

    starts: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    eq_error_db: float | None = None


# --------------------------------------------------------------------------- transfer
def frame_gains_db(X: np.ndarray, Y: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """Broadband gain of each frame of target over dry (a compressor's gain, in the main),
    apart from a fixed response: ``log|Y|^2 - log|X|^2 = h(band) + c(frame)`` fitted by
    alternating weighted means over third-octave bands (weights: the dry band within
    ``FRAME_GAIN_RANGE_DB`` of its own loudest frame and within twice that of the clip's
    loudest band).

    A compressor turns loud frames down, so a plain Welch estimate weighs each band's
    gain by where its energy lies: bands that sound in loud notes read lower, those of
    soft notes higher, by several dB (7-8 dB on an oboe melody through a 4.7:1
    compressor). Dividing each frame by ``c`` takes that out.

    Args:
        X, Y: [n_frames, n_fft // 2 + 1] spectra of dry and target frames.

    Returns:
        c: [n_frames] dB, median 0.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    keep = (freqs >= 20.0) & (freqs <= 0.45 * sample_rate)
    band = np.floor(np.log2(np.maximum(freqs, 1.0) / 20.0) * FRAME_GAIN_BANDS_PER_OCTAVE)
    bands = [band == k for k in np.unique(band[keep])]
    px = np.stack([(np.abs(X[:, b & keep]) ** 2).sum(1) for b in bands], 1)
    py = np.stack([(np.abs(Y[:, b & keep]) ** 2).sum(1) for b in bands], 1)
    lx, ly = 10 * np.log10(px + 1e-30), 10 * np.log10(py + 1e-30)
    w = (np.clip((lx - (lx.max(0, keepdims=True) - FRAME_GAIN_RANGE_DB)) / 10.0, 0.0, 1.0)
         * np.clip((lx - (lx.max() - 2 * FRAME_GAIN_RANGE_DB)) / 10.0, 0.0, 1.0))
    d, c = ly - lx, np.zeros(len(lx))
    for _ in range(FRAME_GAIN_ITERATIONS):
        h = ((d - c[:, None]) * w).sum(0) / np.maximum(w.sum(0), 1e-9)
        c = ((d - h[None]) * w).sum(1) / np.maximum(w.sum(1), 1e-9)
    return c - np.median(c[w.sum(1) > 0]) if np.any(w.sum(1) > 0) else np.zeros(len(c))


def transfer_db(dry: np.ndarray, target: np.ndarray, sample_rate: int,
                n_fft: int = TRANSFER_FFT, frame_gains: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transfer magnitude of dry -> target on 1/48-octave bands of an ``n_fft`` FFT (20 Hz
    to 0.45 x the sample rate), with each target frame's broadband gain
    (:func:`frame_gains_db`) divided out when ``frame_gains``.

    The matching loss's log-magnitude term counts every FFT bin alike, quiet or loud, so
    most of it sits at high frequencies; the compressor's level, on the other hand, is
    where the energy is, often low. Each band is weighted half by its share of the bins and
    half by its share of the octaves.

    Args:
        dry, target: [n] aligned signals.

    Returns:
        band centres_hz [K], gain_db [K] (``20 log10 |S_xy| / S_xx``, Welch) and weights
        [K] (coherence x how far the dry signal is above its floor, ``DRY_RANGE_DB`` below
        its loudest bin, x the band's share as above).
    """
    hop = n_fft // 2
    n = (min(len(dry), len(target)) - n_fft) // hop + 1
    if n < 1:
        pad = n_fft - min(len(dry), len(target))
        dry, target = np.pad(dry, (0, pad)), np.pad(target, (0, pad))
        n = 1
    idx = np.arange(n_fft)[None] + hop * np.arange(n)[:, None]
    win = np.hanning(n_fft)
    X = np.fft.rfft(dry[idx] * win, axis=1)
    Y = np.fft.rfft(target[idx] * win, axis=1)
    if frame_gains:
        Y = Y / 10.0 ** (frame_gains_db(X, Y, sample_rate, n_fft)[:, None] / 20.0)
    sxx, syy = (np.abs(X) ** 2).mean(0), (np.abs(Y) ** 2).mean(0)
    sxy = np.abs((np.conj(X) * Y).mean(0))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    keep = (freqs >= 20.0) & (freqs <= 0.45 * sample_rate)
    sxx, syy, sxy, freqs = sxx[keep], syy[keep], sxy[keep], freqs[keep]
    level = 10 * np.log10(sxx + 1e-30)
    above = np.clip((level - (level.max() - DRY_RANGE_DB)) / DRY_RAMP_DB, 0.0, 1.0)
    # pooled into narrow log-frequency bands (fewer points to fit), each weighted half by
    # its share of the bins (as the loss counts them) and half by its share of octaves
    edges = 20.0 * 2.0 ** (np.arange(0, 12, 1 / BANDS_PER_OCTAVE))
    band = np.digitize(freqs, edges)
    out = []
    for k in np.unique(band):
        sel = band == k
        pxx, pyy, pxy = sxx[sel].sum(), syy[sel].sum(), sxy[sel].sum()
        coherence = pxy * pxy / max(pxx * pyy, 1e-60)
        out.append((math.exp(np.log(freqs[sel]).mean()),
                    20 * math.log10(max(pxy, 1e-30) / max(pxx, 1e-30)),
                    coherence * above[sel].mean(), sel.sum()))
    centres, gains, quality, n_bins = (np.array(v) for v in zip(*out))
    octaves = np.gradient(np.log2(centres)) if len(centres) > 1 else np.ones(1)
    weights = quality * (LOG_SHARE * octaves / octaves.sum()
                         + (1 - LOG_SHARE) * n_bins / n_bins.sum())
    return centres, gains, weights


def response_db(twin, natural: torch.Tensor, freqs_hz: torch.Tensor) -> torch.Tensor:
    """Magnitude response in dB of a linear twin (a biquad or gain) at [N, P] natural
    parameters: [N, K]."""
    if isinstance(twin, Gain):
        return natural[:, :1].expand(-1, len(freqs_hz))
    sos = twin.coefficients(natural)  # [N, 6]
    w = (2 * math.pi / twin.sample_rate) * freqs_hz
    c1, s1, c2, s2 = torch.cos(w), torch.sin(w), torch.cos(2 * w), torch.sin(2 * w)

    def power(k0, k1, k2):
        re = k0[:, None] + k1[:, None] * c1 + k2[:, None] * c2
        im = k1[:, None] * s1 + k2[:, None] * s2
        return re * re + im * im

    b, a = sos[:, :3].unbind(-1), sos[:, 3:].unbind(-1)
    return 10 * torch.log10(power(*b).clamp_min(1e-20) / power(*a).clamp_min(1e-20))


# --------------------------------------------------------------------------- EQ fit
class _EQFit:
    """Weighted least squares of the linear devices' summed dB responses against a
    transfer estimate, over their free normalised parameters.

    Each device is first placed on a grid (frequency x gain x q) against what the devices
    placed before it leave unexplained, in several orders (the greedy order, the chain's,
    and its reverse: a boost can be a peak or a shelf); each placement is then refined
    jointly by bounded Levenberg-Marquardt (``scipy.optimize.least_squares``, Jacobian by
    batched forward differences), and the best fit is kept.
    """

    def __init__(self, linear, free, freqs, gains_db, weights, offset_free):
        self.linear, self.free = linear, set(free)
        self.freqs = torch.tensor(freqs, dtype=torch.float64)
        self.h = torch.tensor(gains_db, dtype=torch.float64)
        self.w = torch.tensor(weights / max(weights.sum(), 1e-12), dtype=torch.float64)
        self.offset_free = offset_free
        self.gains = [(off + i, p) for off, d, twin in linear if not isinstance(twin, Gain)
                      for i, p in enumerate(d.params) if p.name == "gain_db" and off + i in free]

    def device_db(self, k: int, u_dev) -> torch.Tensor:
        """[N, P_dev] normalised -> [N, K] dB response of linear device ``k``."""
        _, device, twin = self.linear[k]
        u_dev = torch.as_tensor(np.asarray(u_dev), dtype=torch.float64)
        return response_db(twin, denormalise(device.params, u_dev), self.freqs)

    def residual(self, total_db: torch.Tensor) -> torch.Tensor:
        """[N, K] summed responses -> [N, K] weighted residuals (their squares sum to the
        weighted mean squared misfit in dB^2), with the best flat offset when it is free."""
        r = self.h[None] - total_db
        if self.offset_free:
            r = r - (r * self.w).sum(1, keepdim=True)
        return r * self.w.sqrt()

    def penalty(self, u_full: np.ndarray) -> np.ndarray:
        """[N, P] -> [N, G] ``GAIN_PRIOR`` x the free filter gains in dB: when a flat offset
        is free, a shelf far out of the band is a broadband gain the misfit cannot see;
        this small prior picks the solution with the least gain instead of any."""
        if not self.offset_free or not self.gains:
            return np.zeros((len(u_full), 0))
        return GAIN_PRIOR * np.stack([p.from_normalised(u_full[:, i]) for i, p in self.gains],
                                     1)

    def grid(self, k: int, u: np.ndarray) -> np.ndarray:
        """[G, P_dev] grid candidates for device ``k`` (free parameters gridded, fixed
        ones kept): frequency x gain x q where free."""
        offset, device, twin = self.linear[k]
        axes = []
        for i, p in enumerate(device.params):
            if offset + i not in self.free:
                axes.append([u[offset + i]])
            elif p.unit == "Hz":
                axes.append(np.linspace(0, 1, 48))
            elif p.name == "gain_db" and isinstance(twin, Gain):
                axes.append(np.linspace(0, 1, 49))
            elif p.name == "gain_db":
                axes.append([p.to_normalised(g) for g in SHELF_GAINS_DB])
            elif p.name == "q":
                axes.append([p.to_normalised(q) for q in GRID_QS])
            else:
                axes.append([u[offset + i]])
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], -1)

    def fit(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        """The best of the placements refined: (u [P], weighted RMS misfit in dB)."""
        movable = [k for k in range(len(self.linear)) if self._free_of(k)]
        orders = [None, movable, movable[::-1]]
        best = None
        for order in orders[: 1 + min(2, max(0, len(movable) - 1) * 2)]:
            placed = self._place(u.copy(), order)
            cand, err = self._refine(placed)
            if best is None or err < best[1] - 1e-6:
                best = (cand, err)
        return best

    def _place(self, u: np.ndarray, order) -> np.ndarray:
        """Grid placement, device by device (``order``; None: greedily, the device whose
        best setting lowers the misfit most first)."""
        responses = [self.device_db(k, self._dev(u, k)[None])[0]
                     for k in range(len(self.linear))]
        left = [k for k in range(len(self.linear)) if self._free_of(k)]
        with torch.no_grad():
            while left:
                best = None
                for k in (left if order is None else [order[len(order) - len(left)]]):
                    cands = self.grid(k, u)
                    others = sum((r for j, r in enumerate(responses) if j != k),
                                 torch.zeros_like(self.h))
                    errs = self.residual(others + self.device_db(k, cands)).square().sum(1)
                    i = int(torch.argmin(errs))
                    if best is None or errs[i] < best[0]:
                        best = (float(errs[i]), k, cands[i])
                _, k, cand = best
                self._set_dev(u, k, cand)
                responses[k] = self.device_db(k, cand[None])[0]
                left.remove(k)
        return u

    def _refine(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        from scipy.optimize import least_squares

        idx = [i for k in range(len(self.linear)) for i in self._free_of(k)]
        if not idx:
            return u, self._misfit(u[None])[0]

        def batch(v: np.ndarray) -> np.ndarray:  # [N, len(idx)] -> [N, K + G] residuals
            full = np.repeat(u[None], len(v), 0)
            full[:, idx] = v
            with torch.no_grad():
                r = self.residual(self.total(full)).numpy()
            return np.concatenate([r, self.penalty(full)], 1)

        def jac(v):
            step = FD_STEP * np.where(v > 0.5, -1.0, 1.0)
            rows = np.vstack([v[None], v[None] + np.diag(step)])
            r = batch(rows)
            return ((r[1:] - r[0]) / step[:, None]).T

        sol = least_squares(lambda v: batch(v[None])[0], np.clip(u[idx], 0.0, 1.0), jac=jac,
                            bounds=(0.0, 1.0), method="trf", max_nfev=EQ_FIT_EVALUATIONS)
        u = u.copy()
        u[idx] = sol.x
        return u, self._misfit(u[None])[0]

    def _misfit(self, u_full: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.residual(self.total(u_full)).square().sum(1).sqrt().numpy()

    def total(self, u_full: np.ndarray) -> torch.Tensor:
        """[N, P] -> [N, K] summed dB responses of the linear devices."""
        return sum(self.device_db(k, u_full[:, off : off + len(d.params)])
                   for k, (off, d, _) in enumerate(self.linear))

    def _dev(self, u, k):
        off, d, _ = self.linear[k]
        return u[off : off + len(d.params)]

    def _set_dev(self, u, k, values):
        off, d, _ = self.linear[k]
        u[off : off + len(d.params)] = values

    def _free_of(self, k):
        off, d, _ = self.linear[k]
        return [off + i for i in range(len(d.params)) if off + i in self.free]


# --------------------------------------------------------------------------- dynamics
def _twin_render(devices, u: np.ndarray, x: torch.Tensor, upto: int | None = None
                 ) -> torch.Tensor:
    """[N, P] normalised parameters, [W, n] audio -> [N * W, n] through the twins of the
    first ``upto`` devices (all: None)."""
    n, w = u.shape[0], x.shape[0]
    y = x.repeat(n, 1)
    with torch.no_grad():
        for offset, device, twin in devices[:upto]:
            p = denormalise(device.params, u[:, offset : offset + len(device.params)])
            y, _ = twin(y, torch.tensor(np.repeat(p, w, 0), dtype=torch.float32))
    return y


def _levels(audio: np.ndarray, frame: int) -> np.ndarray:
    """[..., n] -> [..., n // frame] frame levels in dB."""
    n = audio.shape[-1] // frame
    x = audio[..., : n * frame].reshape(*audio.shape[:-1], n, frame).astype(np.float64)
    return 10 * np.log10((x * x).mean(-1) + LEVEL_FLOOR)


def drive_from_soft_frames(x_in: np.ndarray, y: np.ndarray, frame: int) -> float:
    """Drive (dB) of ``tanh(10^(drive / 20) x)`` from its input ``x_in`` [n] and (further
    processed) output ``y`` [n]: below saturation tanh is linear, so the median level
    change over the output's frames under ``SOFT_OUTPUT_DB`` (else its softest tenth)."""
    lx, ly = _levels(x_in, frame), _levels(y, frame)
    active = (lx > lx.max() - 50.0) & (ly > ly.max() - 50.0)
    soft = active & (ly < SOFT_OUTPUT_DB)
    if soft.sum() < 5:
        soft = active & (ly <= np.percentile(ly[active], 10))
    return float(np.median((ly - lx)[soft]))


def compressor_from_envelope(x_in: np.ndarray, y: np.ndarray, sample_rate: int,
                             frame: int) -> dict:
    """Threshold, ratio, attack and release of a compressor whose input is ``x_in`` [n]
    and whose (further processed) output is ``y`` [n], from the hinge of level change
    against peak envelope (see the module docstring). Returns natural values and the
    RMS misfit in dB."""
    lx, ly = _levels(x_in, frame), _levels(y, frame)
    active = (lx > lx.max() - 50.0) & (ly > ly.max() - 50.0)
    d = (ly - lx)[active]
    thr_grid = np.arange(-60.0, 0.5, 1.0)
    best = None
    xt = torch.from_numpy(np.abs(x_in).astype(np.float32))[None]
    for attack_ms, release_ms in ATTACK_RELEASE_MS:
        ca = time_coefficient(torch.tensor([[attack_ms]]), sample_rate)
        cr = time_coefficient(torch.tensor([[release_ms]]), sample_rate)
        env, _ = iir.ballistics(xt, ca, cr)
        env_db = 20 * np.log10(env[0].numpy().astype(np.float64) + 1e-9)
        n = len(env_db) // frame
        e = env_db[: n * frame].reshape(n, frame).mean(1)[active]
        for thr in thr_grid:
            h = np.maximum(e - thr, 0.0)
            a = np.stack([np.ones_like(h), h], 1)
            coef, *_ = np.linalg.lstsq(a, d, rcond=None)
            c, s = coef
            if s > 0 or not np.isfinite(s):
                c, s = float(d.mean()), 0.0
            s = max(s, -0.95)
            err = float(np.sqrt(np.mean((d - c - s * h) ** 2)))
            if best is None or err < best[0] - 1e-9:
                best = (err, thr, s, attack_ms, release_ms)
    err, thr, s, attack_ms, release_ms = best
    ratio = 1.0 / (1.0 + s)
    return {"threshold_db": float(thr), "ratio": float(ratio), "attack_ms": attack_ms,
            "release_ms": release_ms, "misfit_db": err}


LEVEL_PARAMS = {Compressor: ("threshold_db", "ratio"), Distortion: ("drive_db",),
                Gain: ("gain_db",)}


def _level_coords(devices, free) -> list[int]:
    free = set(free)
    return [off + i for off, device, twin in devices for i, p in enumerate(device.params)
            if p.name in LEVEL_PARAMS.get(type(twin), ()) and off + i in free]


def refine_levels(devices, u: np.ndarray, free, x: np.ndarray, target_windows: np.ndarray,
                  preroll: int, frame: int, deadline: float, rounds: int = 2,
                  points: int = 17) -> tuple[np.ndarray, float]:
    """Coordinate grid search of the level parameters (``LEVEL_PARAMS``) on the L1
    distance of frame levels (dB) of the chain's output to the target's, over the target's
    frames within 50 dB of its loudest. Returns (u [P], that distance in dB)."""
    lt = _levels(np.asarray(target_windows, np.float64), frame)  # [W, T]
    active = lt > lt.max() - 50.0
    xt = torch.from_numpy(np.asarray(x, np.float32))

    def losses(cands):
        y = _twin_render(devices, cands, xt)[:, preroll:].numpy()
        ly = _levels(y, frame).reshape(len(cands), *lt.shape)
        return (np.abs(ly - lt[None]) * active).sum((1, 2)) / max(active.sum(), 1)

    coords = _level_coords(devices, free)
    u = u.copy()
    best = float(losses(u[None])[0])
    for r in range(rounds):
        half = 0.5 if r == 0 else 0.12
        for c in coords:
            if time.monotonic() > deadline:
                return u, best
            grid = np.clip(np.linspace(u[c] - half, u[c] + half, points), 0.0, 1.0)
            cands = np.repeat(u[None], points, 0)
            cands[:, c] = grid
            out = losses(cands)
            i = int(np.argmin(out))
            if out[i] < best:
                best, u = float(out[i]), cands[i].copy()
    return u, best


def informed_guesses(chain_devices, params, base: np.ndarray, free, dry: np.ndarray,
                     target: np.ndarray, x: np.ndarray, target_windows: np.ndarray,
                     preroll: int, sample_rate: int, config: MatchConfig,
                     deadline: float) -> Guesses:
    """Informed starts (see the module docstring).

    Args:
        chain_devices: [(offset of its first parameter, Device)] of the chain.
        params: the chain's declared parameters; base: [P] normalised defaults with the
            fixed parameters at their values; free: indices of the free parameters.
        dry, target: [n] the aligned common signals (the transfer and the envelopes).
        x: [W, preroll + n_w] the analysis windows of dry; target_windows: [W, n_w].
        deadline: ``time.monotonic()`` after which the level search stops.
    """
    t0 = time.monotonic()
    devices = [(off, d, d.twin(sample_rate) if d.twin is not None else None)
               for off, d in chain_devices]
    out = Guesses()
    u = np.asarray(base, np.float64).copy()
    cap = int(config.guess_max_seconds * sample_rate)
    dry, target = dry[:cap], target[:cap]
    linear = [dv for dv in devices if isinstance(dv[2], (Gain, _Biquad))]
    if linear:
        others = any(not isinstance(t, (Gain, _Biquad)) for _, _, t in devices)
        # a chain of linear devices alone has no level-dependent gain to take out
        freqs, gains, weights = transfer_db(dry, target, sample_rate, frame_gains=others)
        eq = _EQFit(linear, free, freqs, gains, weights, others)
        u, err = eq.fit(u)
        out.eq_error_db = err
        out.notes.append(f"EQ from the long-term spectra (misfit {err:.1f} dB RMS)")
    if not all(t is not None for _, _, t in devices):
        out.starts, out.seconds = [u], time.monotonic() - t0
        return out
    frame = max(1, int(round(config.guess_frame_seconds * sample_rate)))
    dry_t = torch.from_numpy(np.asarray(dry, np.float32))[None]
    u, notes = _dynamics(devices, u, free, dry_t, target, sample_rate, frame)
    if linear and _harmonics_after_eq(devices):
        # The estimate the twins' own output gives at these settings, less the EQ's
        # response there, is what the nonlinear devices add to it: take it out and re-fit.
        refits = 0
        for _ in range(BIAS_ITERATIONS):
            if time.monotonic() > deadline:  # the guesses' share of the budget is spent
                break
            y_hat = _twin_render(devices, u[None], dry_t)[0].numpy()
            _, gains_hat, _ = transfer_db(dry, y_hat, sample_rate, frame_gains=others)
            with torch.no_grad():
                bias = gains_hat - eq.total(u[None])[0].numpy()
            eq = _EQFit(linear, free, freqs, gains - bias, weights, others)
            u, out.eq_error_db = eq.fit(u)
            u, notes = _dynamics(devices, u, free, dry_t, target, sample_rate, frame)
            refits += 1
        if refits:
            out.notes.append(f"EQ re-fitted without the distortion's harmonics ({refits}x, "
                             f"misfit {out.eq_error_db:.1f} dB RMS)")
    out.notes.extend(notes)
    starts = [u]
    if _level_coords(devices, free):
        levels_u, dist = refine_levels(devices, u, free, x, target_windows, preroll, frame,
                                       deadline)
        starts = [levels_u, u]
        out.notes.append(f"levels from frame levels ({dist:.1f} dB apart)")
    out.starts, out.seconds = starts, time.monotonic() - t0
    return out


def _harmonics_after_eq(devices) -> bool:
    """Whether a distortion follows a linear device: its harmonics, phase-locked to the dry
    signal's, bias the transfer estimate (a high-frequency boost that is not there)."""
    seen_linear = False
    for _, _, twin in devices:
        seen_linear = seen_linear or isinstance(twin, (Gain, _Biquad))
        if seen_linear and isinstance(twin, Distortion):
            return True
    return False


def _dynamics(devices, u: np.ndarray, free, dry_t: torch.Tensor, target: np.ndarray,
              sample_rate: int, frame: int) -> tuple[np.ndarray, list[str]]:
    """The compressors' and distortions' settings from envelopes, device by device on what
    the devices before them (at ``u``) make of the dry signal ``dry_t`` [1, n]: u [P] ->
    (a new u [P], one note per device)."""
    u, notes, free = u.copy(), [], set(free)
    for k, (off, device, twin) in enumerate(devices):
        if not isinstance(twin, (Compressor, Distortion)):
            continue
        x_in = _twin_render(devices, u[None], dry_t, upto=k)[0].numpy()
        if isinstance(twin, Compressor):
            fit = compressor_from_envelope(x_in, target, sample_rate, frame)
            note = (f"compressor from envelopes: threshold {fit['threshold_db']:.0f} dB, ratio "
                    f"{fit['ratio']:.1f} (misfit {fit['misfit_db']:.1f} dB)")
        else:
            fit = {"drive_db": drive_from_soft_frames(x_in, target, frame)}
            note = f"distortion from the soft passages: drive {fit['drive_db']:.0f} dB"
        notes.append(note)
        for i, p in enumerate(device.params):
            if off + i in free and p.name in fit:
                u[off + i] = p.to_normalised(min(max(fit[p.name], p.min), p.max))
    return u, notes
