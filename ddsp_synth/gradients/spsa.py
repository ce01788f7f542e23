"""Simultaneous perturbation stochastic approximation (SPSA) through a black-box device.

Spall (1992): with a random direction ``delta`` of independent +-1 entries (Rademacher) on
all normalised parameters at once, ``(f(u + eps delta) - f(u - eps delta)) / (2 eps) * delta``
is an unbiased estimate (to O(eps^2)) of the gradient of ``f`` at ``u``, at the cost of two
device runs whatever the number of parameters. Averaging over ``n_pairs`` directions lowers
its variance. The one implementation, :func:`spsa_estimate`, serves two uses:

* :class:`SPSAFunction` - a device as a PyTorch op for networks (DeepAFx, Ramirez et al.
  2021): forward runs the real device; backward estimates, per batch item ``b``, the gradient
  of ``<grad_output_b, h(x_b, u_b)>`` (the vector-Jacobian product autograd asks for) from
  ``2 * n_pairs`` extra device runs of that item. Parameters may be per frame: every frame's
  every parameter is perturbed at once (an automation curve for a black box);
* :func:`spsa_gradient` - the gradient of a scalar loss of parameter vectors (what ``match``
  optimises from several starts at once): the loss itself is the black box.

Gradient to the device's *input audio*: SPSA estimates parameter gradients only. With
``input_grad="passthrough"`` (default) ``grad_output`` goes on to the input unchanged, as if
the device were the identity (a straight-through estimate, biased for a compressor or a
distortion), so the devices and the network before an SPSA device still learn (autograd asks
for it only where something before the device needs a gradient: for data it costs nothing);
``"none"`` passes nothing. For an input gradient that follows the device, use ``hybrid`` (its
proxy's or twin's).

Perturbations that would leave [0, 1] are clipped and the finite difference divides by the
step actually taken, per coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..stages.params import Param, denormalise, expand, normalise

INPUT_GRAD_MODES = ("none", "passthrough")


@dataclass(frozen=True)
class SPSAConfig:
    """SPSA settings.

    Attributes:
        epsilon: perturbation size in normalised parameter units (0.02 = 2 % of each range).
        n_pairs: perturbation pairs averaged per estimate (2 device runs each).
        input_grad: ``"none"`` or ``"passthrough"`` (see the module docstring).
    """

    epsilon: float = 0.02
    n_pairs: int = 1
    input_grad: str = "passthrough"

    def __post_init__(self):
        if not 0 < self.epsilon < 0.5:
            raise ValueError(f"epsilon must be in (0, 0.5), got {self.epsilon}")
        if not isinstance(self.n_pairs, int) or self.n_pairs < 1:
            raise ValueError(f"n_pairs must be a positive integer, got {self.n_pairs!r}")
        if self.input_grad not in INPUT_GRAD_MODES:
            raise ValueError(f"input_grad must be one of {INPUT_GRAD_MODES}, got "
                             f"{self.input_grad!r}")


def perturbations(u: np.ndarray, epsilon: float, n_pairs: int, rng: np.random.Generator):
    """Two-sided Rademacher perturbations of normalised parameters, clipped to [0, 1].

    Args:
        u: [...] normalised parameters (one point: a vector, or frames x parameters).

    Returns:
        plus, minus: [n_pairs, ...] perturbed points; step: [n_pairs, ...] ``plus - minus``
        (never zero: a coordinate pinned at a bound is moved inwards on one side only).
    """
    delta = rng.choice(np.array([-1.0, 1.0]), size=(n_pairs,) + u.shape)
    plus = np.clip(u + epsilon * delta, 0.0, 1.0)
    minus = np.clip(u - epsilon * delta, 0.0, 1.0)
    return plus, minus, plus - minus


def _differences(f_plus: np.ndarray, f_minus: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The SPSA estimate from values at the perturbed points: ``f_*`` [n_pairs], ``step``
    [n_pairs, ...] -> [...]."""
    shape = (len(f_plus),) + (1,) * (step.ndim - 1)
    return ((f_plus - f_minus).reshape(shape) / step).mean(0)


def spsa_estimate(f: Callable[[np.ndarray], np.ndarray], points: np.ndarray,
                  config: SPSAConfig, rng: np.random.Generator):
    """SPSA gradients of a scalar function at several points, all evaluated in one call.

    Args:
        f: ``[N, ...] normalised points -> [N]`` values (one batch: a pool runs it in
            parallel).
        points: [M, ...] the points.

    Returns:
        gradients [M, ...], and the mean of each point's ``2 * n_pairs`` values [M].
    """
    k = config.n_pairs
    plans = [perturbations(u, config.epsilon, k, rng) for u in points]
    batch = np.concatenate([np.concatenate([plus, minus]) for plus, minus, _ in plans])
    values = np.asarray(f(batch), np.float64).reshape(len(points), 2, k)
    grads = np.stack([_differences(v[0], v[1], step) for v, (_, _, step) in zip(values, plans)])
    return grads, values.mean((1, 2))


def spsa_gradient(loss_fn: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
                  config: SPSAConfig, rng: np.random.Generator):
    """SPSA estimate of the gradient of a scalar loss at one point ``u`` [P]: (gradient [P],
    mean of the 2 * n_pairs losses)."""
    grads, values = spsa_estimate(loss_fn, np.asarray(u, np.float64)[None], config, rng)
    return grads[0], float(values[0])


def normalise_slope(params: tuple[Param, ...], natural: np.ndarray) -> np.ndarray:
    """d(normalised) / d(natural) along the last axis: ``1 / (max - min)`` for linear
    parameters, ``1 / (value ln(max / min))`` for log-scaled ones."""
    cols = expand(params)
    out = np.empty_like(natural, dtype=np.float64)
    for i, p in enumerate(cols):
        if p.scale == "log":
            out[..., i] = 1.0 / (np.maximum(natural[..., i], 1e-30) * np.log(p.max / p.min))
        else:
            out[..., i] = 1.0 / (p.max - p.min)
    return out


class SPSAFunction(torch.autograd.Function):
    """``SPSAFunction.apply(audio, params, runner, declared, config, rng)`` -> device output.

    Args (of ``apply``):
        audio: [batch, n_samples].
        params: natural units, [batch, P] or [batch, n_frames, P].
        runner: ``(audio [N, n] float32, natural params [N, ...]) -> [N, n]`` numpy: runs the
            real device (a :class:`~ddsp_synth.blackbox.stage.BlackBox`'s ``run``).
        declared: the parameters' declarations (for the normalised domain).
        config: :class:`SPSAConfig`.
        rng: numpy Generator for the perturbations.
    """

    @staticmethod
    def forward(ctx, audio, params, runner, declared, config, rng):
        x = audio.detach().cpu().numpy().astype(np.float32)
        # the device only takes values in its declared ranges, and perturbations keep a point
        # inside [0, 1]: values outside are read as the nearest bound
        u = np.clip(normalise(declared, params.detach().cpu().numpy().astype(np.float64)),
                    0.0, 1.0)
        p = denormalise(declared, u)
        y = runner(x, p)
        ctx.runner, ctx.declared, ctx.config, ctx.rng = runner, declared, config, rng
        ctx.x, ctx.u, ctx.p = x, u, p
        return torch.from_numpy(np.asarray(y, np.float32)).to(audio.device, audio.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, u, cfg = ctx.x, ctx.u, ctx.config
        k = cfg.n_pairs
        plans = [perturbations(u[b], cfg.epsilon, k, ctx.rng) for b in range(x.shape[0])]
        points = np.concatenate([np.concatenate([plus, minus]) for plus, minus, _ in plans])
        # every item's perturbations in one call: the pool spreads them over its workers
        y = np.asarray(ctx.runner(np.repeat(x, 2 * k, axis=0),
                                  denormalise(ctx.declared, points)), np.float64)
        g = grad_out.detach().cpu().numpy().astype(np.float64)
        f = np.einsum("bkn,bn->bk", y.reshape(x.shape[0], 2 * k, -1), g)  # <grad_b, h(x_b, u)>
        grad_u = np.stack([_differences(fb[:k], fb[k:], step)
                           for fb, (_, _, step) in zip(f, plans)])
        grad_natural = grad_u * normalise_slope(ctx.declared, ctx.p)
        grad_params = torch.from_numpy(grad_natural).to(grad_out.device, grad_out.dtype)
        grad_audio = grad_out if cfg.input_grad == "passthrough" else None
        return grad_audio, grad_params, None, None, None, None
