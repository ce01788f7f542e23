"""One switch over the same devices: how the gradient crosses a device.

:func:`device_function` turns a :class:`~ddsp_synth.effects.Device` (a single device or a
chain) into ``f(audio [batch, n], params01 [batch, P]) -> [batch, n]``, a PyTorch function
whose forward and backward follow ``method``:

============  ====================================  ==========================================
method        forward                               backward (gradient to the parameters)
============  ====================================  ==========================================
autodiff      the PyTorch twin                      exact, through the twin
spsa          the real device (worker pool)         SPSA estimate from 2 x n_pairs extra runs
proxy         per device: its neural proxy, or the  through the same models
              twin where the device has no proxy
hybrid        the real device (one pool call for    per device, through its proxy (or twin)
              the chain, every stage's output kept)  evaluated at the real stage's input
============  ====================================  ==========================================

``cma`` is gradient-free: see :func:`ddsp_synth.gradients.cma_minimize`.

Devices without a proxy use their exact twin in ``proxy``/``hybrid`` (an EQ is linear and
known exactly: a proxy would only add error); a device with neither (a plugin, a command)
needs a proxy: ``ddsp-synth proxy train DEVICE -o DIR``. A device whose proxies exist only at
other sample rates is an error rather than a silent switch to its twin.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..effects.devices import Device
from ..effects.params import DeviceError, denormalise
from .proxy import Proxy, find_proxy, load_proxy
from .spsa import SPSAConfig, SPSAFunction

METHODS = ("autodiff", "spsa", "proxy", "hybrid", "cma")
GRADIENT_METHODS = ("autodiff", "spsa", "proxy", "hybrid")


def _parts(device: Device) -> tuple[Device, ...]:
    return device.parts if device.is_chain else (device,)


def _splits(device: Device) -> list[int]:
    return [len(d.params) for d in _parts(device)]


def local_models(device: Device, proxies: dict[str, Proxy] | None = None,
                 proxy_dirs: list[str | os.PathLike] = ()) -> list[tuple[str, Callable]]:
    """Per device of the chain: ("proxy" | "twin", ``fn(audio, params01_part)``).

    Proxies come from ``proxies`` (by device name), else are looked up in ``proxy_dirs`` and
    the shipped ``models/proxies``; devices without one use their twin.
    """
    out = []
    for part in _parts(device):
        proxy = (proxies or {}).get(part.name)
        if proxy is None:
            found = find_proxy(part.name, device.sample_rate, proxy_dirs)
            proxy = load_proxy(found) if found is not None else None
        if proxy is not None:
            # the proxy reads normalised values: names, ranges and scales must all agree
            def decl(params):
                return [(p.name, p.min, p.max, p.scale) for p in params]

            if decl(proxy.params) != decl(part.params):
                raise DeviceError(f"proxy of '{part.name}' declares parameters "
                                  f"{decl(proxy.params)}, the device {decl(part.params)}")
            out.append(("proxy", proxy))
        elif part.twin is not None:
            other = _proxy_rates(part.name, proxy_dirs)
            if other:
                raise DeviceError(f"the proxy of '{part.name}' is for {', '.join(map(str, other))} "
                                  f"Hz, the audio is {device.sample_rate} Hz: resample the audio "
                                  f"or train one (`ddsp-synth proxy train {part.name} "
                                  f"--sample-rate {device.sample_rate} -o DIR`)")
            out.append(("twin", part.twin.forward_normalised))
        else:
            raise DeviceError(f"no proxy for '{part.name}' at {device.sample_rate} Hz and no "
                              f"twin: train one with `ddsp-synth proxy train "
                              f"{part.source or part.name} "
                              f"-o DIR`")
    return out


def _proxy_rates(name: str, proxy_dirs) -> list[int]:
    """Sample rates of the proxies of ``name`` that exist (at any rate)."""
    from .proxy import PROXY_CONFIG, ProxyFileError, proxies_dir, read_proxy_config

    rates = set()
    for root in [Path(d) for d in proxy_dirs] + [proxies_dir()]:
        for cand in (root, root / name):
            if (cand / PROXY_CONFIG).is_file():
                try:
                    meta = read_proxy_config(cand)
                except ProxyFileError:
                    continue
                if meta.get("device") == name and isinstance(meta.get("sample_rate"), int):
                    rates.add(meta["sample_rate"])
    return sorted(rates)


class DeviceFunction:
    """A device as a differentiable function of (audio, normalised parameters).

    Attributes:
        method: the gradient method.
        device: the device.
        calls: real-device evaluations so far (twin and proxy runs are not counted).
        kinds: for proxy/hybrid, what stands in for each device ("proxy" or "twin").
    """

    def __init__(self, device: Device, method: str, pool=None,
                 proxies: dict[str, Proxy] | None = None,
                 proxy_dirs: list[str | os.PathLike] = (), spsa: SPSAConfig = SPSAConfig(),
                 seed: int = 0):
        if method not in METHODS:
            raise DeviceError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
        if method == "cma":
            raise DeviceError("cma is gradient-free: use ddsp_synth.gradients.cma_minimize")
        self.method, self.device, self.pool, self.spsa = method, device, pool, spsa
        self.rng = np.random.default_rng(seed)
        self._calls0 = pool.calls if pool is not None else 0
        self.kinds: list[str] = []
        if method == "autodiff" and device.twin is None:
            raise DeviceError(f"device '{device.name}' has no PyTorch twin, so no autodiff; use "
                              f"spsa, hybrid, proxy or cma")
        if method in ("spsa", "hybrid") and pool is None:
            raise DeviceError(f"method '{method}' runs the real device: give a pool "
                              f"(device.pool())")
        if method in ("proxy", "hybrid"):
            self.models = local_models(device, proxies, proxy_dirs)
            self.kinds = [k for k, _ in self.models]

    @property
    def calls(self) -> int:
        return (self.pool.calls - self._calls0) if self.pool is not None else 0

    def _run_real(self, audio: np.ndarray, params01: np.ndarray) -> np.ndarray:
        return self.pool.process(audio, denormalise(self.device.params, params01))

    def __call__(self, audio: torch.Tensor, params01: torch.Tensor) -> torch.Tensor:
        """Process ``audio`` [batch, n] with ``params01`` [batch, P] in [0, 1]."""
        if self.method == "autodiff":
            return self.device.twin.forward_normalised(audio, params01)
        if self.method == "spsa":
            return SPSAFunction.apply(audio, params01, self._run_real, self.spsa, self.rng)
        if self.method == "proxy":
            y = audio
            for (_, fn), u in zip(self.models, torch.split(params01, _splits(self.device), -1)):
                y = fn(y, u)
            return y
        return _HybridFunction.apply(audio, params01, self)


class _HybridFunction(torch.autograd.Function):
    """Real device forward (one pool call, every stage kept); each stage's backward through
    its proxy or twin, evaluated at the input the real stage received."""

    @staticmethod
    def forward(ctx, audio, params01, fn: DeviceFunction):
        x = audio.detach().cpu().numpy().astype(np.float32)
        u = params01.detach().cpu().numpy().astype(np.float64)
        stages = fn.pool.process(x, denormalise(fn.device.params, u), return_intermediates=True)
        ctx.fn = fn
        ctx.inputs = [x] + [stages[:, i] for i in range(stages.shape[1] - 1)]
        ctx.save_for_backward(params01)
        return torch.from_numpy(stages[:, -1].copy()).to(audio.device, audio.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (params01,) = ctx.saved_tensors
        fn = ctx.fn
        chunks = torch.split(params01.detach(), _splits(fn.device), -1)
        grads = [None] * len(chunks)
        g = grad_out
        for i in range(len(chunks) - 1, -1, -1):
            with torch.enable_grad():
                x = torch.from_numpy(ctx.inputs[i]).to(grad_out.device, grad_out.dtype)
                x.requires_grad_(True)
                u = chunks[i].clone().requires_grad_(True)
                y = fn.models[i][1](x, u)
                gx, gu = torch.autograd.grad(y, (x, u), g, allow_unused=True)
            grads[i] = gu if gu is not None else torch.zeros_like(u)
            g = gx if gx is not None else torch.zeros_like(x)
        return g, torch.cat(grads, -1), None


def device_function(device: Device, method: str, **kwargs) -> DeviceFunction:
    """``f(audio, params01) -> audio`` with the gradient of ``method`` (see module doc).

    Args:
        device: a device or chain (:func:`ddsp_synth.effects.make_chain`).
        method: autodiff | spsa | proxy | hybrid.
        **kwargs: ``pool`` (spsa, hybrid), ``proxies`` / ``proxy_dirs`` (proxy, hybrid),
            ``spsa`` (:class:`SPSAConfig`), ``seed``.
    """
    return DeviceFunction(device, method, **kwargs)
