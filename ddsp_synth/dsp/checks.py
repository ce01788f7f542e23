"""Argument checks of the checked (whole-signal) DSP entry points.

The per-block kernels hold no checks (they must export to ONNX). These raise ValueError for a
wrong shape, dtype or value: a programming error of the caller, not a user error.
"""

from __future__ import annotations

import numpy as np
import torch


def check_tensor(x, name: str, rank: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if rank is not None and x.dim() != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_positive_int(value, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_frames(x: torch.Tensor, name: str, batch: int, n_frames: int) -> None:
    if x.shape[0] != batch or x.shape[1] != n_frames:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, expected [batch={batch}, "
            f"n_frames={n_frames}, ...] to match f0_hz"
        )
