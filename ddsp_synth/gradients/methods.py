"""One switch over the same devices: how the gradient crosses a device.

:func:`device_stage` turns a :class:`~ddsp_synth.stages.registry.Device` (or a group of
consecutive ones) into a stage whose forward and backward follow the method:

============  ====================================  ==========================================
method        forward                               backward (gradient to the parameters)
============  ====================================  ==========================================
autodiff      the PyTorch twin                      exact, through the twin
spsa          the real device (worker pool)         SPSA estimate from 2 x n_pairs extra runs
proxy         its neural proxy, or the twin where   through the same model
              the device has no proxy
hybrid        the real device (one pool call for    per device, through its proxy (or twin)
              a group, every device's output kept)  evaluated at the real device's input
============  ====================================  ==========================================

``cma`` is gradient-free: see :func:`ddsp_synth.gradients.cma_minimize`.

Devices without a proxy use their exact twin in ``proxy``/``hybrid`` (an EQ is linear and
known exactly: a proxy would only add error); a device with neither (a plugin, a command)
needs a proxy: ``ddsp-synth proxy train DEVICE -o DIR``. A device whose proxies exist only at
other sample rates is an error rather than a silent switch to its twin.
"""

from __future__ import annotations

import os

from ..blackbox.stage import BlackBox
from ..blackbox.specs import ChainSpec
from ..stages.base import Stage
from ..stages.params import DeviceError
from ..stages.registry import Device
from .proxy.files import find_proxy, load_proxy, proxy_rates
from .proxy.net import Proxy
from .spsa import SPSAConfig
from .wrappers import HybridStage, SPSAStage

METHODS = ("autodiff", "spsa", "proxy", "hybrid", "cma")
GRADIENT_METHODS = ("autodiff", "spsa", "proxy", "hybrid")
REAL_METHODS = ("spsa", "hybrid")  # the methods that run the real devices


def twin_stage(device: Device, hop: int) -> Stage:
    """The device's twin as a stage (``autodiff``)."""
    if device.twin is None:
        raise DeviceError(f"device '{device.name}' has no PyTorch twin, so no autodiff; use "
                          "spsa or cma (or proxy and hybrid, once 'ddsp-synth proxy train' "
                          "has made its proxy)")
    return device.twin(device.sample_rate, hop)


def _check_declarations(proxy: Proxy, device: Device) -> None:
    """The proxy reads normalised values: names, ranges and scales must all agree."""
    def decl(params):
        return [(p.name, p.min, p.max, p.scale) for p in params]

    if decl(proxy.params) != decl(device.params):
        raise DeviceError(f"proxy of '{device.name}' declares parameters "
                          f"{decl(proxy.params)}, the device {decl(device.params)}")


def local_model(device: Device, hop: int, proxies: dict | None = None,
                proxy_dirs=()) -> tuple[str, Stage]:
    """("proxy" | "twin", stage): the device's proxy (given in ``proxies`` by device name,
    else found in ``proxy_dirs`` or the shipped ``models/proxies``), or its twin."""
    proxy = (proxies or {}).get(device.name)
    if proxy is None:
        found = find_proxy(device.name, device.sample_rate, proxy_dirs)
        proxy = load_proxy(found, hop) if found is not None else None
    if proxy is not None:
        _check_declarations(proxy, device)
        proxy.hop = hop
        return "proxy", proxy
    if device.twin is None:
        raise DeviceError(f"no proxy for '{device.name}' at {device.sample_rate} Hz and no "
                          f"twin: train one with `ddsp-synth proxy train "
                          f"{device.source or device.name} -o DIR`")
    other = proxy_rates(device.name, proxy_dirs)
    if other:
        raise DeviceError(f"the proxy of '{device.name}' is for {', '.join(map(str, other))} "
                          f"Hz, the audio is {device.sample_rate} Hz: resample the audio or "
                          f"train one (`ddsp-synth proxy train {device.name} --sample-rate "
                          f"{device.sample_rate} -o DIR`)")
    return "twin", twin_stage(device, hop)


def real_stage(devices: list[Device], hop: int, n_workers: int = 2) -> BlackBox:
    """The real devices, in series, as one black box."""
    missing = [d.name for d in devices if d.spec is None]
    if missing:
        raise DeviceError(f"device '{missing[0]}' has no real (black-box) implementation")
    spec = devices[0].spec if len(devices) == 1 else \
        ChainSpec("+".join(d.name for d in devices), tuple(d.spec for d in devices))
    params = tuple(p for d in devices for p in d.params)
    return BlackBox(spec, devices[0].sample_rate, hop, n_workers, params=params)


def device_stage(devices: list[Device], method: str, hop: int, n_workers: int = 2,
                 proxies: dict | None = None, proxy_dirs: list[str | os.PathLike] = (),
                 spsa: SPSAConfig = SPSAConfig(), seed: int = 0) -> Stage:
    """A stage over one device (several consecutive ones for ``spsa``/``hybrid``) whose
    gradient follows ``method``. The stage's ``devices`` lists what it covers."""
    if method not in GRADIENT_METHODS:
        raise DeviceError(f"unknown method '{method}'; choose one of "
                          f"{', '.join(GRADIENT_METHODS)}")
    if method not in REAL_METHODS and len(devices) != 1:
        raise ValueError(f"method '{method}' takes one device per stage")
    if method == "autodiff":
        stage, kinds = twin_stage(devices[0], hop), ["twin"]
    elif method == "proxy":
        kind, stage = local_model(devices[0], hop, proxies, proxy_dirs)
        kinds = [kind]
    else:
        real = real_stage(devices, hop, n_workers)
        if method == "spsa":
            stage, kinds = SPSAStage(real, devices, spsa, seed), ["real"] * len(devices)
        else:
            models = [local_model(d, hop, proxies, proxy_dirs) for d in devices]
            kinds = [k for k, _ in models]
            stage = HybridStage(real, devices, [m for _, m in models], kinds)
    stage.devices = list(devices)
    stage.method, stage.kinds = method, kinds
    return stage
