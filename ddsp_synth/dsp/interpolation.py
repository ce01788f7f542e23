"""Frames to samples: the one convention of the package, and its interpolation.

Frame-rate values are ``[batch, n_frames, channels]``; audio is ``[batch, n_samples]``. Frame
``t`` describes the signal *at* sample ``t * hop`` (the centre of the analysis window used
for features, as in ``torch.stft(center=True)``), so block ``t`` (samples
``[t * hop, (t + 1) * hop)``) is interpolated from frame ``t`` to frame ``t + 1``: ``n + 1``
frames give ``n`` blocks. At the end of a signal the last frame is held for its own block
(:func:`hold_last_frame`), so ``n_frames`` frames always give ``n_frames * hop`` samples.
Every stage of every chain, and the neural proxies, turn frames into samples with
:func:`frames_to_samples` (whose block kernel, :func:`interpolate_blocks`, is what the
exportable streaming step runs).
"""

from __future__ import annotations

import math

import torch

from .checks import check_positive_int, check_tensor


def n_frames_for(n_samples: int, hop: int) -> int:
    """Number of frames covering ``n_samples`` on the shared feature grid: ceil(n/hop)."""
    return -(-int(n_samples) // int(hop))


def interp_weights(hop: int, kind: str, dtype: torch.dtype = torch.float32,
                   device=None) -> torch.Tensor:
    """Weight of frame ``t + 1`` for each of the ``hop`` samples of block ``t``: [hop].

    ``"linear"`` (f0) ramps from 0 to ``(hop - 1) / hop``; ``"hann"`` (amplitudes) is the
    raised-cosine crossfade that overlap-adding Hann windows of length ``2 * hop`` centred on
    the frames amounts to (the windows sum to one).
    """
    frac = torch.arange(hop, dtype=torch.float64, device=device) / hop
    if kind == "linear":
        w = frac
    elif kind == "hann":
        w = 0.5 - 0.5 * torch.cos(math.pi * frac)
    else:
        raise ValueError(f"kind must be 'linear' or 'hann', got {kind!r}")
    return w.to(dtype)


def interpolate_blocks(frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Block ``t`` interpolated from frame ``t`` to frame ``t + 1``.

    Args:
        frames: [batch, n_frames, channels]; the last frame is only an interpolation target.
        weights: [hop] weight of the next frame (see :func:`interp_weights`).

    Returns:
        [batch, (n_frames - 1) * hop, channels].
    """
    w = weights[None, None, :, None]
    y = frames[:, :-1, None, :] * (1.0 - w) + frames[:, 1:, None, :] * w
    return y.reshape(frames.shape[0], -1, frames.shape[2])


def hold_last_frame(x: torch.Tensor) -> torch.Tensor:
    """[batch, n_frames, C] -> [batch, n_frames + 1, C]: the last frame repeated, so that
    block-wise rendering (block t from frame t to t + 1) holds it for its own block."""
    return torch.cat([x, x[:, -1:]], dim=1)


def frames_to_samples(frames: torch.Tensor, hop: int, kind: str = "linear",
                      n_samples: int | None = None, first_sample: float = 0.0) -> torch.Tensor:
    """Frame-rate values -> sample-rate values.

    Frame ``t`` sits at sample ``first_sample + t * hop``; between two frames the value is
    interpolated (``"linear"``, or ``"hann"``: the raised-cosine crossfade that overlap-added
    Hann windows amount to); before the first frame and after the last it holds. With the
    default ``first_sample = 0`` this is block-wise rendering with the last frame held.

    Args:
        frames: [batch, n_frames, channels].
        hop: samples per frame.
        kind: ``"linear"`` or ``"hann"``.
        n_samples: output length (default ``n_frames * hop``).
        first_sample: where frame 0 sits, in samples (a frame that describes the samples
            ``[t * hop, (t + 1) * hop)`` sits at ``(hop - 1) / 2``).

    Returns:
        [batch, n_samples, channels].
    """
    check_tensor(frames, "frames", rank=3)
    check_positive_int(hop, "hop")
    n_frames = frames.shape[1]
    n_samples = n_frames * hop if n_samples is None else int(n_samples)
    if first_sample == 0.0 and n_samples <= n_frames * hop:
        weights = interp_weights(hop, kind, frames.dtype, frames.device)
        return interpolate_blocks(hold_last_frame(frames), weights)[:, :n_samples]
    pos = ((torch.arange(n_samples, dtype=torch.float64, device=frames.device) - first_sample)
           / hop).clamp(0.0, n_frames - 1)
    left = pos.floor().long().clamp_max(n_frames - 1)
    right = (left + 1).clamp_max(n_frames - 1)
    frac = pos - left
    if kind == "hann":
        frac = 0.5 - 0.5 * torch.cos(math.pi * frac)
    elif kind != "linear":
        raise ValueError(f"kind must be 'linear' or 'hann', got {kind!r}")
    w = frac.to(frames.dtype)[None, :, None]
    return frames[:, left] * (1.0 - w) + frames[:, right] * w
