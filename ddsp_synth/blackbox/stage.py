"""A black box as a stage: the real device, run by its own pool of worker processes.

:class:`BlackBox` renders through the real device (no gradient: wrap it with ``spsa`` or
``hybrid``, :mod:`ddsp_synth.gradients`). Its pool is a resource it opens on first use and
closes with :meth:`BlackBox.close` (or as a context manager). Its state is a stream: an
independent call (``state=None``) runs every item from rest; a signal rendered in chunks
starts from :meth:`initial_state`, which gives each item an instance of its own, kept by
its worker until :meth:`end_state` (a stream equals one call on the whole signal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..stages.base import Stage, check_params
from ..stages.params import DeviceError
from .specs import call_timeout_s, carries_state


@dataclass
class Streams:
    """The state of a black box in a chunked signal: one stream id per batch item."""

    ids: list[int]


class BlackBox(Stage):
    """The real device of ``spec``.

    Args:
        spec: a picklable recipe (:mod:`ddsp_synth.blackbox.specs`).
        sample_rate: Hz.
        hop: samples per parameter frame.
        n_workers: worker processes (0: in this process).
        timeout_s: longest one item may take before its worker counts as hung (a command
            that declares a longer timeout gets its own plus 10 s).
        params: the declared parameters (default: the spec's; a plugin reports its own).
    """

    def __init__(self, spec, sample_rate: int, hop: int, n_workers: int = 2,
                 timeout_s: float = 60.0, params=None):
        super().__init__(sample_rate, hop, params if params is not None else spec.params)
        self.spec = spec
        self.name = spec.name
        self.n_workers = n_workers
        self.timeout_s = max(float(timeout_s), call_timeout_s(spec) + 10.0)
        self.streamable = carries_state(spec)
        self._pool = None

    @property
    def pool(self):
        """The worker pool, started on first use."""
        if self._pool is None:
            from .pool import DevicePool

            self._pool = DevicePool(self.spec, self.sample_rate, self.n_workers, self.timeout_s)
        return self._pool

    @property
    def calls(self) -> int:
        """Device evaluations so far."""
        return 0 if self._pool is None else self._pool.calls

    def run(self, audio: np.ndarray, params: np.ndarray, streams=None,
            return_intermediates: bool = False) -> np.ndarray:
        """The real device on numpy arrays: [batch, n] float32 and natural parameters [batch,
        P] or [batch, n_frames, P] -> [batch, n] (or [batch, n_stages, n])."""
        return self.pool.process(audio, params, self.hop, streams, return_intermediates)

    def initial_state(self, batch: int) -> Streams:
        if not self.streamable:
            raise DeviceError(f"device '{self.name}' runs once per call from nothing: it "
                              "cannot continue from one chunk to the next; give it the whole "
                              "signal")
        return Streams(self.pool.open_streams(batch))

    def end_state(self, state) -> None:
        if isinstance(state, Streams) and self._pool is not None:
            self._pool.end_streams(state.ids)

    def forward(self, audio, params, state=None, **kwargs):
        """The device's output (no gradient) and the stream state (None for independent
        items)."""
        check_params(self, params, audio.shape[0])
        x = audio.detach().cpu().numpy().astype(np.float32)
        p = params.detach().cpu().numpy().astype(np.float64)
        ids = state.ids if isinstance(state, Streams) else None
        y = self.run(x, p, ids)
        return torch.from_numpy(np.asarray(y, np.float32)).to(audio.device, audio.dtype), state

    def make_step(self):
        from ..stages.base import StageStep

        stage = self

        class BlackBoxStep(StageStep):
            """One hop through the real device, continuing the stream (eager only)."""

            def initial_state(self, batch: int):
                return (stage.initial_state(batch),)

            def forward(self, prev, new, state, audio, noise):
                y, s = stage(audio, torch.stack([prev, new], 1), state[0])
                return y, (s,)

        return BlackBoxStep()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
