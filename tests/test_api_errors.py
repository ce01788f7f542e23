"""The Python API given wrong types and values: a one-line UserError (an InputError is also a
ValueError), never a raw TypeError/AttributeError from deep inside. (The command line's bad
inputs are in test_user_errors.py.)"""

import numpy as np
import pytest

import ddsp_synth as ds
from ddsp_synth.blackbox.pool import DevicePool
from ddsp_synth.stages.registry import make_device

X = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)

CASES = {
    "load_model(None)": (lambda: ds.load_model(None), "shipped name or a folder"),
    "load_model(3)": (lambda: ds.load_model(3), "shipped name or a folder"),
    "transfer, a rate as the model": (lambda: ds.transfer(X, 1e9, "violin"),
                                      "model must be a shipped model's name"),
    "transfer, rate 1e9": (lambda: ds.transfer(X, "violin", 1e9), "sample_rate must be"),
    "transfer, rate True": (lambda: ds.transfer(X, "violin", True), "sample_rate must be"),
    "transfer, no rate": (lambda: ds.transfer(X, "violin"), "sample_rate must be"),
    "make_chain([3])": (lambda: ds.make_chain([3], 16000), "a chain is"),
    "make_chain rate 1e9": (lambda: ds.make_chain("gain", 1e9), "sample_rate"),
    "make_chain rate True": (lambda: ds.make_chain("gain", True), "sample_rate"),
    "match rate 1e9": (lambda: ds.match(X, X, 1e9, "gain"), "sample_rate must be"),
    "match rate -1": (lambda: ds.match(X, X, -1, "gain"), "sample_rate must be"),
    "match chain [3]": (lambda: ds.match(X, X, 16000, [3]), "a chain is"),
    "match 2-D dry": (lambda: ds.match(np.zeros((2, 2, 2)), X, 16000, "gain"), "mono"),
    "match method": (lambda: ds.match(X, X, 16000, "gain", method="magic"), "method"),
    "pool n_workers True": (lambda: DevicePool(make_device("gain", 16000).spec, 16000, True),
                            "n_workers"),
    "pool n_workers -1": (lambda: DevicePool(make_device("gain", 16000).spec, 16000, -1),
                          "n_workers"),
    "make_chain rate '16000'": (lambda: ds.make_chain("peak", "16000"), "sample_rate"),
    "a chain given a string as audio": (
        lambda: ds.make_chain("gain", 16000)("abc", ds.make_chain("gain", 16000)
                                             .default_params(batch=1)),
        "audio must be a torch.Tensor"),
    "a stereo block to the live engine": (
        lambda: ds.LiveEngine(ds.load_model("violin")[0]).process(np.zeros((256, 2))),
        "mono samples"),
    "amounts of a missing stage": (
        lambda: ds.transfer(X, "violin", 16000, ds.TransferOptions(amounts={"flanger": 1.0})),
        "no stage 'flanger'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_wrong_arguments_raise_one_line_user_errors(name):
    call, message = CASES[name]
    with pytest.raises(ds.UserError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_numpy_audio_and_torch_pairs_are_taken_as_they_come():
    """A chain given numpy audio, and match given torch tensors, work (they were an
    AttributeError and a TypeError from deep inside)."""
    import torch

    chain = ds.make_chain("gain", 16000)
    y, _ = chain(X[None].astype(np.float64), chain.default_params(batch=1))
    assert isinstance(y, torch.Tensor) and y.shape == (1, len(X))
    report = ds.match(torch.from_numpy(X), torch.from_numpy(0.5 * X), 16000, "gain",
                      max_seconds=3).report
    assert report["rel_spec"] < 0.1
