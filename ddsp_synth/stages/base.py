"""The one interface of every stage of a signal chain: source or effect, white or black box.

A stage declares its parameters in natural units (:class:`~ddsp_synth.stages.params.Param`),
maps raw network outputs onto them (:meth:`Stage.params_from_raw`: the same for every device,
the synthesizer's own mappings as overrides) and renders::

    audio_out, state = stage(audio_in, params, state)

* ``audio_in``: [batch, n_samples] the signal so far (effects), or None (sources);
* ``params``: natural units, constant ``[batch, P]`` or per frame ``[batch, n_blocks + 1, P]``
  on the frame grid of :mod:`ddsp_synth.dsp.interpolation` (frame ``t`` at sample
  ``t * hop``; block ``t`` interpolated from frame ``t`` to ``t + 1``). ``n_blocks`` frames
  (no look-ahead frame) hold the last one, as at the end of a signal. ``P`` counts every
  channel of every parameter (:attr:`Stage.n_params`);
* ``state``: what the previous call returned (None: a fresh signal, which is
  :meth:`Stage.initial_state`). Carrying it makes consecutive calls equal one call on the
  whole signal: oscillator phase, filter memories, envelopes, reverb tails, a black box's
  instance.

A stage that can stream has an exportable one-hop variant (:meth:`Stage.make_step`), used by
the streaming engine and the runtime export.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .params import Param, denormalise, n_values, params_from_raw

State = object  # a stage's state: a tuple of tensors, or a black box's stream handle


class Stage(nn.Module):
    """One stage of a signal chain.

    Class attributes:
        kind: ``"source"`` (its signal is added to the sum of the sources before it) or
            ``"effect"`` (it transforms the signal so far).
        name: the registry name (``"harmonic"``, ``"peak"``).
        streamable: consecutive calls with the state carried equal one whole call.
        exportable: :meth:`make_step` gives a traceable one-hop step (no numba, no worker).

    Attributes:
        params: the declared parameters, natural units, in the order of the last axis.
        sample_rate: Hz.
        hop: samples per parameter frame.
    """

    kind = "effect"
    name = ""
    streamable = True
    exportable = False

    def __init__(self, sample_rate: int, hop: int, params: tuple[Param, ...]):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.hop = int(hop)
        self.params = tuple(params)

    @property
    def n_params(self) -> int:
        """Values per parameter frame (every channel of every parameter)."""
        return n_values(self.params)

    @property
    def n_raw(self) -> int:
        """Network outputs per frame this stage takes."""
        return self.n_params

    def params_from_raw(self, raw: torch.Tensor, f0_hz: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """[..., n_raw] raw network outputs -> [..., n_params] parameters in natural units.

        The default, the same for every device: a sigmoid onto each declared range (log
        ranges geometrically). ``f0_hz`` ([batch, n_frames, 1]) is for stages that follow the
        input's pitch.
        """
        return params_from_raw(self.params, raw)

    def default_params(self, batch: int = 1) -> torch.Tensor:
        """[batch, n_params] every parameter at its declared default."""
        from .params import defaults

        return torch.from_numpy(defaults(self.params)).float()[None].expand(batch, -1).clone()

    def params_from_normalised(self, u: torch.Tensor) -> torch.Tensor:
        """[..., n_params] in [0, 1] -> natural units (differentiable)."""
        return denormalise(self.params, u)

    def dry_level(self) -> float:
        """The linear gain at which a live wet/dry mix below 1 plays the dry signal (an
        effect's): 1, or the effect's own broadband gain where it has one (the learned
        room), so that turning an effect down changes its sound, not the level."""
        return 1.0

    def initial_state(self, batch: int) -> State:
        """The state of a fresh signal for ``batch`` items, to render it in pieces (calls
        with ``state=None`` are independent signals)."""
        return ()

    def end_state(self, state: State) -> None:
        """The signal of ``state`` has ended: release what it holds (a black box's stream)."""

    def forward(self, audio: torch.Tensor | None, params: torch.Tensor, state: State = None,
                **kwargs) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def make_step(self) -> "StageStep":
        """The exportable one-hop variant of this stage."""
        raise NotImplementedError(f"stage '{self.name}' has no exportable one-hop step")

    def close(self) -> None:
        """Release what the stage holds outside this process (a black box's workers)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, hop={self.hop}"


class StageStep(nn.Module):
    """One hop of a stage as a pure function (for the exportable streaming step).

    ``forward(prev, new, state, audio) -> (audio [batch, hop], new_state)``: ``prev`` and
    ``new`` are the parameters ([batch, P]) of the frame whose block is rendered and of the
    next frame; ``state`` a tuple of tensors named by ``state_names``; ``audio`` the signal
    so far ([batch, hop]) or the noise excitation of a noise source.
    """

    state_names: tuple[str, ...] = ()

    def initial_state(self, batch: int) -> tuple:
        return ()


def lookahead_frames(params: torch.Tensor, n_blocks: int, name: str) -> torch.Tensor:
    """Per-frame parameters with their look-ahead frame: [batch, n_blocks + 1, P].

    ``n_blocks + 1`` frames pass through; ``n_blocks`` frames get their last one held (the
    end of a signal). Anything else is a ValueError naming the stage.
    """
    if params.shape[1] == n_blocks + 1:
        return params
    if params.shape[1] == n_blocks:
        return torch.cat([params, params[:, -1:]], dim=1)
    raise InputError(f"{name}: {params.shape[1]} parameter frames for {n_blocks} blocks; "
                     f"give {n_blocks + 1} (with the next block's frame) or {n_blocks}")


def check_params(stage: Stage, params: torch.Tensor, batch: int) -> None:
    """InputError (a ValueError) unless ``params`` is [batch, P] or [batch, n_frames, P] for
    ``stage``."""
    p = stage.n_params
    if params.dim() not in (2, 3) or params.shape[0] != batch or params.shape[-1] != p:
        raise InputError(f"{stage.name}: params must be [batch={batch}, {p}] or [batch, "
                         f"n_frames, {p}], got {tuple(params.shape)}")
