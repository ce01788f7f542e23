"""Audio devices ``h(audio [batch, n_samples], params) -> audio`` with declared parameters.

White-box PyTorch twins (:mod:`.twins`), fast differentiable IIR (:mod:`.iir`), black boxes
(:mod:`.blackbox`: pedalboard built-ins, VST3/AU plugins, external commands, callables) run in
worker processes (:mod:`.pool`), and devices by name (:mod:`.devices`)::

    from ddsp_synth.effects import make_chain
    chain = make_chain("peak,compressor,distortion", sample_rate=16000)
    y = chain.twin(audio, params)                 # PyTorch, differentiable
    with chain.pool(n_workers=2) as pool:         # the real devices (pedalboard)
        y_real = pool.process(audio_np, params_np)

Names are imported lazily, so a black-box worker process that imports this package does not
pay for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Param": "params", "DeviceError": "params", "normalise": "params",
    "denormalise": "params", "frames_to_samples": "params",
    "Device": "devices", "make_device": "devices", "make_chain": "devices",
    "parse_chain": "devices", "BUILTIN_NAMES": "devices",
    "DevicePool": "pool",
    "CommandSpec": "blackbox", "CallableSpec": "blackbox", "PedalboardSpec": "blackbox",
    "PluginSpec": "blackbox", "ChainSpec": "blackbox", "load_device_file": "blackbox",
    "Twin": "twins", "TWINS": "twins", "Chain": "twins",
    "sosfilt": "iir", "biquad": "iir", "allpole": "iir", "sosfilt_freq_sampling": "iir",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
