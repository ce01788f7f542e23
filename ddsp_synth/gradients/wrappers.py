"""Stages whose forward runs the real device and whose backward estimates or borrows the
gradient: :class:`SPSAStage` (gradient estimates from more real runs) and
:class:`HybridStage` (the gradient of a local model: a proxy, or the twin).

Both wrap a :class:`~ddsp_synth.blackbox.stage.BlackBox` of one device or of several
consecutive ones (a group: SPSA perturbs all their parameters at once, so the gradient of an
early device sees the devices after it), accept per-frame parameters, and carry the real
device's stream state across calls (a stream is rendered without gradients).
"""

from __future__ import annotations

import numpy as np
import torch

from ..blackbox.stage import BlackBox
from ..stages.base import Stage
from .spsa import SPSAConfig, SPSAFunction


class _RealForward(Stage):
    """What both wrappers share: the real device, its parameters, its streams."""

    def __init__(self, real: BlackBox, devices: list):
        super().__init__(real.sample_rate, real.hop, real.params)
        self.real = real
        self.name = real.name
        self.devices = list(devices)
        self.streamable = real.streamable

    @property
    def calls(self) -> int:
        return self.real.calls

    def initial_state(self, batch: int):
        return self.real.initial_state(batch)

    def end_state(self, state) -> None:
        self.real.end_state(state)

    def _needs_gradient(self, audio, params, state) -> bool:
        wanted = torch.is_grad_enabled() and (params.requires_grad or audio.requires_grad)
        return wanted and state is None

    def close(self) -> None:
        self.real.close()


class SPSAStage(_RealForward):
    """Real device forward; backward: per item, an SPSA estimate of the parameter gradient
    from ``2 * n_pairs`` more real runs (all items' runs in one pool call)."""

    def __init__(self, real: BlackBox, devices: list, config: SPSAConfig = SPSAConfig(),
                 seed: int = 0):
        super().__init__(real, devices)
        self.config = config
        self.rng = np.random.default_rng(seed)

    def forward(self, audio, params, state=None, **kwargs):
        if not self._needs_gradient(audio, params, state):
            return self.real(audio, params, state)
        y = SPSAFunction.apply(audio, params, self.real.run, self.params, self.config, self.rng)
        return y, None


class HybridStage(_RealForward):
    """Real devices forward (one pool call, every device's output kept); each device's
    backward through its local model (``local[i]``: a proxy or the twin, a stage in natural
    units), evaluated at the input the real device received."""

    def __init__(self, real: BlackBox, devices: list, local: list[Stage], kinds: list[str]):
        super().__init__(real, devices)
        self.local = torch.nn.ModuleList(local)
        self.kinds = list(kinds)

    @property
    def sizes(self) -> list[int]:
        return [m.n_params for m in self.local]

    def forward(self, audio, params, state=None, **kwargs):
        if not self._needs_gradient(audio, params, state):
            return self.real(audio, params, state)
        for model, p in zip(self.local, torch.split(params, self.sizes, -1)):
            if hasattr(model, "check_frames"):  # before the real devices run, not after
                model.check_frames(p)
        return _HybridFunction.apply(audio, params, self), None


class _HybridFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, audio, params, stage: HybridStage):
        x = audio.detach().cpu().numpy().astype(np.float32)
        p = params.detach().cpu().numpy().astype(np.float64)
        outs = stage.real.run(x, p, return_intermediates=True)  # [batch, n_devices, n]
        ctx.stage = stage
        ctx.inputs = [x] + [outs[:, i] for i in range(outs.shape[1] - 1)]
        ctx.save_for_backward(params)
        return torch.from_numpy(outs[:, -1].copy()).to(audio.device, audio.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (params,) = ctx.saved_tensors
        stage = ctx.stage
        chunks = torch.split(params.detach(), stage.sizes, -1)
        grads, g = [None] * len(chunks), grad_out
        for i in range(len(chunks) - 1, -1, -1):
            with torch.enable_grad():
                x = torch.from_numpy(ctx.inputs[i]).to(grad_out.device, grad_out.dtype)
                x.requires_grad_(True)
                p = chunks[i].clone().requires_grad_(True)
                y, _ = stage.local[i](x, p)
                gx, gp = torch.autograd.grad(y, (x, p), g, allow_unused=True)
            grads[i] = gp if gp is not None else torch.zeros_like(p)
            g = gx if gx is not None else torch.zeros_like(x)
        return g, torch.cat(grads, -1), None
