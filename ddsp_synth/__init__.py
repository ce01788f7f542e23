"""ddsp_synth: a differentiable harmonic-plus-noise synthesizer (DDSP) in PyTorch.

The public API, loaded on first use (``import ddsp_synth`` itself is instant)::

    import ddsp_synth as ds

    audio, sr = ds.transfer("singing.wav", model="violin")      # timbre transfer
    model, meta = ds.load_model("cello")                        # a shipped name or a folder
    ds.prepare(["my_takes/"], "data/mine")                      # recordings -> dataset
    ds.train("data/mine", "runs/mine", config=ds.TrainConfig(max_minutes=15))
    ds.match_files("dry.wav", "wet.wav", "peak,compressor", "autodiff", "matched/")
    chain = ds.make_chain("peak,compressor@spsa", sample_rate=16000)   # any chain, a stage
    out = ds.apply_controller("style", song, 44100, reference=ref)      # "make it sound like"

Packages and modules, in the order data flows: ``dsp`` (pure DSP functions) -> ``audio_io``
-> ``pitch`` -> ``features`` -> ``decoder`` -> ``stages`` (one interface for every stage of a
signal chain, synthesizer or effect; the registry and chain syntax) -> ``blackbox`` (real
devices in worker processes) -> ``gradients`` (how a gradient crosses a device) ->
``chains`` -> ``model`` -> ``losses`` -> ``data`` -> ``train`` / ``evaluate`` /
``transfer`` -> ``match`` -> ``streaming`` -> ``cli``.
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
    "Stage": "stages.base", "Chain": "stages.chain", "Param": "stages.params",
    "Harmonic": "stages.synth", "FilteredNoise": "stages.synth", "SynthConfig": "stages.synth",
    "Reverb": "stages.room",
    "make_chain": "chains", "preset": "chains", "make_device": "stages.registry",
    "register_device": "stages.registry",
    "device_stage": "gradients.methods",
    "training_loss": "losses", "multi_resolution_stft_loss": "losses",
    "SpectralLossConfig": "losses", "spectral_distance": "dsp.spectral",
    "evaluate_source": "evaluate",
    "LiveEngine": "streaming", "LiveOptions": "streaming", "StreamingSynth": "streaming",
    "SynthStep": "streaming", "export_runtime": "streaming",
    "train_proxy": "gradients.proxy.train", "load_proxy": "gradients.proxy.files",
    "match": "match", "match_files": "match", "MatchConfig": "match",
    "train_controller": "control", "apply_controller": "control",
    "load_controller": "control", "predict_settings": "control", "rule_baseline": "control",
    "ControllerConfig": "control", "ControlDataConfig": "control",
    "integrated_loudness": "control",
    "UserError": "errors",
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
