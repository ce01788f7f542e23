"""A chain of stages is a stage: sources summed, effects applied in order.

The synthesizer's chain (harmonic + noise + room), an effect chain that ``match`` or a
controller drives, and an instrument followed by an effects rack are all one
:class:`Chain`. Its parameters are its stages' parameters side by side on the last axis (a
stage with none takes no room); its state holds every stage's state, plus, while a signal is
rendered in chunks, the last parameter frame (and the input audio of its block), which wait
until the next chunk brings their successor, so that chunks join exactly.

Live ``amounts`` (one per stage, by label, 1 = as trained or as set): a source's output is
scaled by it, an effect's output is mixed with its input, ``(1 - a) * in + a * out`` (the
room's wet/dry mix).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..dsp.interpolation import hold_last_frame
from ..errors import InputError
from .base import Stage
from .params import Param

# the largest live amount (a gain of 10, a wet/dry mix of 10: beyond, a typo)
MAX_AMOUNT = 10.0


def check_amounts(amounts, labels=None) -> dict:
    """{stage label: amount} checked: finite numbers in [0, 10], and, given the chain's
    ``labels``, only stages it has. InputError (one line) otherwise."""
    if not isinstance(amounts, dict):
        raise InputError(f"amounts must be a mapping of stage names to numbers, got "
                         f"{type(amounts).__name__}")
    for name, value in amounts.items():
        if labels is not None and name not in labels:
            raise InputError(f"the chain has no stage '{name}'; its stages: {', '.join(labels)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not 0.0 <= value <= MAX_AMOUNT:
            raise InputError(f"the amount of '{name}' must be a number from 0 to {MAX_AMOUNT:g}, "
                             f"got {value!r:.40}")
    return {k: float(v) for k, v in amounts.items()}


def unique_labels(names: list[str]) -> list[str]:
    """Stage labels from stage names: a name that repeats gets ``_2``, ``_3``, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


class Chain(Stage):
    """Stages in series; a chain that starts with a source makes sound from nothing.

    Args:
        stages: the stages in order, all at one sample rate and hop.
        labels: their names in the chain (default: their registry names, made unique);
            the stages are submodules under these names (``chain.reverb``).
    """

    name = "chain"

    def __init__(self, stages: list[Stage], labels: list[str] | None = None):
        if not stages:
            raise ValueError("a chain needs at least one stage")
        rates = {(s.sample_rate, s.hop) for s in stages}
        if len(rates) != 1:
            raise ValueError(f"the stages of a chain must share one sample rate and hop, got "
                             f"{sorted(rates)}")
        labels = list(labels) if labels is not None else unique_labels([s.name for s in stages])
        if len(set(labels)) != len(labels) or len(labels) != len(stages):
            raise ValueError(f"stage labels must be distinct, one per stage: {labels}")
        sample_rate, hop = rates.pop()
        params = tuple(Param(f"{label}.{p.name}", p.unit, p.min, p.max, p.default, p.scale,
                             p.size) for label, s in zip(labels, stages) for p in s.params)
        super().__init__(sample_rate, hop, params)
        self.labels = labels
        self.kind = stages[0].kind
        for label, stage in zip(labels, stages):
            self.add_module(label, stage)
        self.streamable = all(s.streamable for s in stages)
        self.exportable = all(s.exportable for s in stages)

    def stages(self) -> list[Stage]:
        return [getattr(self, label) for label in self.labels]

    @property
    def sizes(self) -> list[int]:
        """Parameter values per stage, in order."""
        return [s.n_params for s in self.stages()]

    @property
    def n_raw(self) -> int:
        return sum(s.n_raw for s in self.stages())

    def params_from_raw(self, raw: torch.Tensor, f0_hz: torch.Tensor | None = None):
        """Split [..., n_raw] network outputs over the stages, in order, and map each onto
        its parameters: [..., n_params]."""
        out, i = [], 0
        for stage in self.stages():
            out.append(stage.params_from_raw(raw[..., i : i + stage.n_raw], f0_hz))
            i += stage.n_raw
        return torch.cat(out, -1)

    def split(self, params) -> list[torch.Tensor]:
        """A flat parameter tensor (or a list of per-stage tensors) -> one per stage."""
        if isinstance(params, (list, tuple)):
            if len(params) != len(self.labels):
                raise ValueError(f"{len(params)} parameter tensors for {len(self.labels)} "
                                 "stages")
            return list(params)
        return list(torch.split(params, self.sizes, dim=-1))

    def initial_state(self, batch: int):
        return {label: s.initial_state(batch) for label, s in zip(self.labels, self.stages())}

    def end_state(self, state) -> None:
        for label, s in zip(self.labels, self.stages()):
            if state and label in state:
                s.end_state(state[label])

    def forward(self, audio, params, state=None, final: bool = True, amounts: dict | None = None,
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """Render the chain.

        Args:
            audio: [batch, n_samples] the input of a chain of effects, or None.
            params: natural units, flat ([batch, P] or [batch, n_frames, P]) or one tensor per
                stage (a constant and a per-frame stage may be mixed in a list).
            state: what the previous call returned (None: a fresh signal).
            final: the signal ends here: the last frame is held for its own block and all
                frames are rendered. Otherwise the last frame (and the input audio of its
                block) waits in the state for the next call's first frame.
            amounts: {stage label: live amount} (default 1 each).
            noise: [batch, n_blocks * hop] excitation of the noise sources (else drawn from
                ``generator``).

        Returns:
            audio and the new state. A chain of sources given ``n`` frames in one final call
            renders ``n * hop`` samples; a chain of effects returns as many samples as it was
            given (fewer while chunks wait for their next frame).
        """
        audio, params = _tensor(audio, "audio"), _tensor(params, "params")
        parts = self.split(params)
        state = dict(state or {})
        parts, audio, state = self._frames(parts, audio, state, final)
        if parts is None:  # one frame so far: its block waits for the next frame
            batch = audio.shape[0] if audio is not None else params_batch(params)
            return torch.zeros(batch, 0), state
        amounts = amounts or {}
        signal = audio
        for label, stage, p in zip(self.labels, self.stages(), parts):
            out, state[label] = stage(signal if stage.kind == "effect" else None, p,
                                      state.get(label), noise=noise, generator=generator)
            signal = _combine(stage, signal, out, amounts.get(label, 1.0))
        return signal, state

    def _frames(self, parts, audio, state, final):
        """Prepend the waiting frame (and audio) to this call's; hold the last frame at the
        end of a signal, or keep it waiting. Returns (parts, audio to render, state); parts
        is None when nothing can be rendered yet."""
        pending = state.pop("pending", None)
        waiting_audio = state.pop("pending_audio", None)
        per_frame = [p.dim() == 3 for p in parts]
        if not any(per_frame):
            return parts, audio, state
        if pending is not None:
            parts = [torch.cat([w, p], 1) if f else p for w, p, f in zip(pending, parts, per_frame)]
        if audio is not None and waiting_audio is not None:
            audio = torch.cat([waiting_audio, audio], 1)
        if final:
            parts = [hold_last_frame(p) if f else p for p, f in zip(parts, per_frame)]
        else:
            state["pending"] = [p[:, -1:] if f else None for p, f in zip(parts, per_frame)]
        n_blocks = next(p.shape[1] for p, f in zip(parts, per_frame) if f) - 1
        if audio is not None and final:  # frames beyond the audio's end are not needed
            needed = -(-audio.shape[1] // self.hop)
            if n_blocks < needed:  # too few: the audio would be cut short
                raise InputError(f"{n_blocks} parameter frames for {audio.shape[1]} samples "
                                 f"({needed} blocks of {self.hop}); give {needed} or "
                                 f"{needed + 1} (with the frame after the last block)")
            n_blocks = needed
            parts = [p[:, : n_blocks + 1] if f else p for p, f in zip(parts, per_frame)]
            audio = audio[:, : n_blocks * self.hop]
        elif audio is not None:
            state["pending_audio"] = audio[:, n_blocks * self.hop :]
            audio = audio[:, : n_blocks * self.hop]
        if n_blocks < 1:
            return None, audio, state
        return parts, audio, state

    def make_step(self) -> "ChainStep":
        return ChainStep(self)

    def close(self) -> None:
        for s in self.stages():
            s.close()


def _tensor(value, what: str):
    """A numpy array as a float32 tensor (a tensor, a list of tensors or None as they are);
    InputError for anything else."""
    if value is None or isinstance(value, (torch.Tensor, list, tuple)):
        return value
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    raise InputError(f"{what} must be a torch.Tensor (or a numpy array), got "
                     f"{type(value).__name__}")


def params_batch(params) -> int:
    """Batch size of a flat parameter tensor or of a list of per-stage tensors."""
    return (params[0] if isinstance(params, (list, tuple)) else params).shape[0]


def _combine(stage, signal, out, amount):
    """A stage's output joined to the signal so far with its live amount (a Python 1.0
    leaves the output untouched: the rendering is then bit for bit the stage's own): a
    source's gain, or an effect's wet/dry mix with the dry signal at the effect's
    :meth:`~ddsp_synth.stages.base.Stage.dry_level`."""
    if stage.kind == "source":
        out = out if (isinstance(amount, float) and amount == 1.0) else amount * out
        return out if signal is None else signal + out
    if isinstance(amount, float) and amount == 1.0:
        return out
    return _mix(signal, out, amount, stage.dry_level())


def _mix(dry, wet, amount, dry_level: float):
    """``(1 - amount) * dry_level * dry + amount * wet``."""
    return (1.0 - amount) * (dry if dry_level == 1.0 else dry_level * dry) + amount * wet


class ChainStep(nn.Module):
    """One hop of a whole chain: every stage's step, sources summed and effects applied in
    order, as in :meth:`Chain.forward`.

    ``forward(prev, new, noise, amounts, state) -> (audio [batch, hop], new_state)``: ``prev``
    and ``new`` are flat parameter frames [batch, P]; ``noise`` [batch, hop]; ``amounts``
    [batch, n_stages] in chain order; ``state`` the concatenation of the stages' states
    (:attr:`state_names`).
    """

    def __init__(self, chain: Chain, steps: list | None = None):
        """``steps``: one per stage (default: each stage's :meth:`make_step`)."""
        super().__init__()
        self.labels = chain.labels
        self.kinds = [s.kind for s in chain.stages()]
        self.dry_levels = [s.dry_level() for s in chain.stages()]  # frozen, as the responses
        self.sizes = chain.sizes
        self.steps = nn.ModuleList(steps if steps is not None
                                   else [s.make_step() for s in chain.stages()])
        self.state_names = tuple(n for s in self.steps for n in s.state_names)
        self.exportable = chain.exportable if steps is None else all(
            s.exportable for s in self.steps)

    def initial_state(self, batch: int) -> tuple:
        return tuple(t for s in self.steps for t in s.initial_state(batch))

    def forward(self, prev: torch.Tensor, new: torch.Tensor, noise: torch.Tensor,
                amounts: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        prevs = torch.split(prev, self.sizes, dim=-1)
        news = torch.split(new, self.sizes, dim=-1)
        signal, new_state, i = None, [], 0
        for j, (step, kind) in enumerate(zip(self.steps, self.kinds)):
            n = len(step.state_names)
            out, s = step(prevs[j], news[j], tuple(state[i : i + n]), signal, noise)
            new_state += list(s)
            i += n
            a = amounts[:, j : j + 1]
            if kind == "source":
                signal = a * out if signal is None else signal + a * out
            else:
                signal = _mix(signal, out, a, self.dry_levels[j])
        return signal, tuple(new_state)
