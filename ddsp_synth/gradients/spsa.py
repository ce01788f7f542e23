"""Simultaneous perturbation stochastic approximation (SPSA) through a black-box device.

Spall (1992): with a random direction ``delta`` of independent +-1 entries (Rademacher) on
all P normalised parameters at once, ``(f(u + eps delta) - f(u - eps delta)) / (2 eps) * delta``
is an unbiased estimate (to O(eps^2)) of the gradient of ``f`` at ``u``, at the cost of two
device runs whatever P is. Averaging over ``n_pairs`` directions lowers its variance.

Two uses:

* :class:`SPSAFunction` - a device as a PyTorch op for networks (DeepAFx, Ramirez et al.
  2021): forward runs the real device; backward estimates, per batch item ``b``, the gradient
  of ``<grad_output_b, h(x_b, u_b)>`` (the vector-Jacobian product autograd asks for) from
  ``2 * n_pairs`` extra device runs of that item.
* :func:`spsa_gradient` - the gradient of a scalar loss of a parameter vector (what
  ``ddsp-synth match`` optimises): the loss itself is the black box.

Gradient to the device's *input audio*: SPSA estimates parameter gradients only. With
``input_grad="none"`` (default) nothing flows to the input (right when the input is data);
``"passthrough"`` passes ``grad_output`` through unchanged, as if the device were the
identity (a straight-through estimate: usable for a network upstream when the device
roughly preserves the waveform, e.g. EQ, biased for distortion). For an input gradient that
follows the device, use ``hybrid`` (the proxy's).

Perturbations that would leave [0, 1] are clipped and the finite difference divides by the
step actually taken, per coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

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
    input_grad: str = "none"

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
        u: [P] normalised parameters.

    Returns:
        plus, minus: [n_pairs, P] perturbed points; step: [n_pairs, P] ``plus - minus`` (never
        zero: a coordinate pinned at a bound is moved inwards on one side only).
    """
    delta = rng.choice(np.array([-1.0, 1.0]), size=(n_pairs, u.shape[-1]))
    plus = np.clip(u + epsilon * delta, 0.0, 1.0)
    minus = np.clip(u - epsilon * delta, 0.0, 1.0)
    return plus, minus, plus - minus


def spsa_gradient(loss_fn: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
                  config: SPSAConfig, rng: np.random.Generator):
    """SPSA estimate of the gradient of a scalar loss at ``u``.

    Args:
        loss_fn: ``[N, P] normalised parameters -> [N] losses`` (evaluated as one batch, so a
            device pool runs the 2 * n_pairs points in parallel).
        u: [P] normalised parameters.

    Returns:
        gradient [P], and the mean of the 2 * n_pairs losses (an estimate of the loss at u).
    """
    plus, minus, step = perturbations(u, config.epsilon, config.n_pairs, rng)
    losses = np.asarray(loss_fn(np.concatenate([plus, minus])), np.float64)
    f_plus, f_minus = losses[: config.n_pairs], losses[config.n_pairs :]
    grad = ((f_plus - f_minus)[:, None] / step).mean(0)
    return grad, float(losses.mean())


class SPSAFunction(torch.autograd.Function):
    """``SPSAFunction.apply(audio, params01, runner, config, rng)`` -> device output.

    Args (of ``apply``):
        audio: [batch, n_samples].
        params01: [batch, P] normalised parameters.
        runner: ``(audio [N, n] float32, params01 [N, P]) -> [N, n]`` numpy; runs the real
            device (e.g. a pool; parameters denormalised by the runner).
        config: :class:`SPSAConfig`.
        rng: numpy Generator for the perturbations.
    """

    @staticmethod
    def forward(ctx, audio, params01, runner, config, rng):
        x = audio.detach().cpu().numpy().astype(np.float32)
        # the device only takes values in its declared ranges, and perturbations() keeps a
        # point inside [0, 1]: values outside are read as the nearest bound
        u = np.clip(params01.detach().cpu().numpy().astype(np.float64), 0.0, 1.0)
        y = runner(x, u)
        ctx.runner, ctx.config, ctx.rng = runner, config, rng
        ctx.x, ctx.u = x, u
        return torch.from_numpy(np.asarray(y, np.float32)).to(audio.device, audio.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        cfg, rng = ctx.config, ctx.rng
        x, u = ctx.x, ctx.u
        batch, k = x.shape[0], cfg.n_pairs
        points, steps = [], []
        for b in range(batch):
            plus, minus, step = perturbations(u[b], cfg.epsilon, k, rng)
            points.append(np.concatenate([plus, minus]))
            steps.append(step)
        points = np.concatenate(points)                     # [batch * 2k, P]
        audio = np.repeat(x, 2 * k, axis=0)
        y = np.asarray(ctx.runner(audio, points), np.float64).reshape(batch, 2 * k, -1)
        g = grad_out.detach().cpu().numpy().astype(np.float64)
        f = np.einsum("bkn,bn->bk", y, g)                   # <grad_out_b, h(x_b, u_bk)>
        grad_u = ((f[:, :k] - f[:, k:])[:, :, None] / np.stack(steps)).mean(1)
        grad_params = torch.from_numpy(grad_u).to(grad_out.device, grad_out.dtype)
        grad_audio = grad_out if cfg.input_grad == "passthrough" else None
        return grad_audio, grad_params, None, None, None
