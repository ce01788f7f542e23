"""One-hop steps of a model's effect stages, for :class:`~ddsp_synth.streaming.step.SynthStep`.

Each step renders one hop the way the offline chain renders it, so a stream equals offline
rendering: a device set once (or fixed) runs with its constant settings (the offline path
for ``[batch, P]``), a device set per frame with the two frames around the hop (the offline
path for per-frame settings, one block of it).

* Twins (``autodiff``): exportable. Offline they run their recursions (biquads, the
  compressor's envelope) in compiled numba kernels, which a trace cannot follow; while the
  step is traced (TorchScript, ONNX) they run the same recursions as PyTorch loops over the
  hop's samples (``ddsp_synth.dsp.iir``'s ``loop`` backend), which the trace unrolls.
* Real devices (``spsa``, ``hybrid``, as rendered: the real device) keep one stream per item
  in their worker pool; proxies (``proxy``) carry their input history. Both run in Python
  only: the step of a chain that holds one is not exportable.
"""

from __future__ import annotations

import contextlib

import torch

from ..dsp import iir
from ..stages.base import StageStep
from ..stages.chain import Chain, ChainStep
from ..stages.twins import Twin


@contextlib.contextmanager
def traceable_recursions():
    """While tracing, recursions run as PyTorch loops (the trace unrolls them); otherwise
    in the compiled kernels."""
    if not torch.jit.is_tracing():
        yield
        return
    previous = iir.set_default_backend("loop")
    try:
        yield
    finally:
        iir.set_default_backend(previous)


def _settings(prev: torch.Tensor, new: torch.Tensor, constant: bool) -> torch.Tensor:
    """The hop's settings: constant [batch, P], or its two frames [batch, 2, P]."""
    return new if constant else torch.stack([prev, new], 1)


class TwinHopStep(StageStep):
    """One hop of a twin: its own forward on the hop (exportable)."""

    exportable = True

    def __init__(self, twin: Twin, label: str, constant: bool):
        super().__init__()
        self.twin, self.constant = twin, constant
        self.state_names = tuple(f"{label}_state{i}" for i in range(len(twin.initial_state(1))))

    def initial_state(self, batch: int):
        return self.twin.initial_state(batch)

    def forward(self, prev, new, state, audio, noise):
        with traceable_recursions():
            return self.twin(audio, _settings(prev, new, self.constant), state)


class PythonHopStep(StageStep):
    """One hop of a stage that runs only in Python: a real device (its stream kept by its
    worker) or a proxy (its input history carried)."""

    exportable = False

    def __init__(self, stage, label: str, constant: bool):
        super().__init__()
        self.stage, self.label, self.constant = stage, label, constant
        self.state_names = (f"{label}_stream",)

    def initial_state(self, batch: int):
        return (self.stage.initial_state(batch),)

    def forward(self, prev, new, state, audio, noise):
        y, s = self.stage(audio, _settings(prev, new, self.constant), state[0])
        return y, (s,)


def hop_step(stage, label: str, constant: bool) -> StageStep:
    """The one-hop step of a chain stage: the synthesizer's own steps, a twin's, or a
    Python-only step for real devices and proxies."""
    if not getattr(stage, "devices", None):
        step = stage.make_step()
        step.exportable = stage.exportable
        return step
    if isinstance(stage, Twin):
        return TwinHopStep(stage, label, constant)
    return PythonHopStep(getattr(stage, "real", stage), label, constant)


class ModelChainStep(ChainStep):
    """:class:`~ddsp_synth.stages.chain.ChainStep` of a model's chain with effect stages:
    the same hop (sources summed, effects in order, live amounts), with each effect's step
    from :func:`hop_step`.

    Args:
        chain: the model's chain.
        constant: labels of the stages whose settings are constant (set once, fixed).
    """

    def __init__(self, chain: Chain, constant: set[str]):
        super().__init__(chain, [hop_step(s, label, label in constant)
                                 for label, s in zip(chain.labels, chain.stages())])

    def not_exportable(self) -> list[str]:
        """Labels of the stages that run only in Python."""
        return [label for label, s in zip(self.labels, self.steps) if not s.exportable]
