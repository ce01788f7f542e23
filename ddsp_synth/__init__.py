"""ddsp_synth: a differentiable harmonic-plus-noise synthesizer (DDSP) in PyTorch.

The public API, loaded on first use (``import ddsp_synth`` itself is instant)::

    import ddsp_synth as ds

    audio, sr = ds.transfer("singing.wav", model="violin")      # timbre transfer
    model, meta = ds.load_model("cello")                        # a shipped name or a folder
    ds.prepare(["my_takes/"], "data/mine")                      # recordings -> dataset
    ds.train("data/mine", "runs/mine", config=ds.TrainConfig(max_minutes=15))
    ds.match_files("dry.wav", "wet.wav", "peak,compressor", "autodiff", "matched/")

Modules, in the order data flows: ``core`` (DSP kernels) -> ``audio_io`` -> ``pitch`` ->
``features`` -> ``decoder`` -> ``processors`` -> ``model`` -> ``losses`` -> ``data`` ->
``train`` / ``evaluate`` / ``transfer`` -> ``streaming`` -> ``cli``; effect devices in
``effects``, how gradients cross them in ``gradients``, effect matching in ``match``.
"""

import importlib
import os
import sys
import types

__version__ = "0.1.0"

# OpenMP worker threads that spin while they wait turn one busy neighbour process on a small
# machine into a many-fold slowdown (they wait for a thread the OS has descheduled); passive
# waiting costs nothing measurable on a quiet machine (bench/bench_contention.py). This must
# be set before torch loads its OpenMP runtime; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# public name -> module that defines it
_API = {
    "load_model": "model", "DDSPModel": "model", "ModelConfig": "model",
    "transfer": "transfer", "TransferOptions": "transfer", "render": "transfer",
    "train": "train", "TrainConfig": "train",
    "prepare": "data", "PrepareConfig": "data",
    "ProcessorChain": "processors", "Harmonic": "processors", "FilteredNoise": "processors",
    "Reverb": "processors", "SynthConfig": "processors", "PROCESSORS": "processors",
    "training_loss": "losses", "multi_resolution_stft_loss": "losses",
    "SpectralLossConfig": "losses",
    "evaluate_source": "evaluate",
    "LiveEngine": "streaming", "LiveOptions": "streaming", "StreamingSynth": "streaming",
    "SynthStep": "streaming", "export_runtime": "streaming",
    "make_device": "effects.devices", "make_chain": "effects.devices",
    "device_function": "gradients.methods", "train_proxy": "gradients.proxy",
    "load_proxy": "gradients.proxy", "match_files": "match", "MatchConfig": "match",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'ddsp_synth' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    setattr(sys.modules[__name__], name, value)
    return value


class _Package(types.ModuleType):
    """Keeps ``ds.transfer`` and ``ds.train`` the functions: importing the submodules of the
    same names would otherwise rebind those attributes to the modules (reach the modules
    with ``importlib.import_module("ddsp_synth.train")``)."""

    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType) and _API[name] == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
