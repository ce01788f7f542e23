"""The harmonic oscillator bank: phase, Nyquist masking, the crossfaded harmonic mix.

The per-block kernels (:func:`phase_ramp`, :func:`harmonics_below_nyquist`,
:func:`harmonic_blocks`, :func:`harmonic_synthesis_blocks`) are the one math path of
whole-signal, chunked and one-hop streaming synthesis: they hold no checks and no
data-dependent control flow on the exportable path, so the streaming step that calls them
exports to ONNX / TorchScript. :func:`harmonic_synthesis` is the checked entry point.

Phase is accumulated in float64 and wrapped to ``[0, 2*pi)``; everything else is float32
unless the inputs are float64 (used by ``gradcheck``).
"""

from __future__ import annotations

import torch

from .checks import check_finite, check_frames, check_positive_int, check_tensor
from .interpolation import hold_last_frame, interp_weights, interpolate_blocks
from .units import TWO_PI

# Elements (samples x harmonics) synthesised per chunk: keeps the working set of the
# oscillator bank in cache and bounds peak memory for long signals (60 s x 100 harmonics
# would otherwise be 384 MB per float32 tensor).


_HARMONIC_CHUNK_ELEMENTS = 1 << 21


def phase_ramp(f0_hz: torch.Tensor, sample_rate: float,
               initial_phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Oscillator phase over one block of samples, wrapped to ``[0, 2*pi)``.

    Sample ``n`` has phase ``initial_phase + 2*pi * sum_{m<n} f0[m] / sample_rate``.

    Args:
        f0_hz: [batch, n_samples] float64 instantaneous frequency.
        sample_rate: Hz.
        initial_phase: [batch, 1] float64 phase of sample 0 (radians).

    Returns:
        phase [batch, n_samples] and the phase of the sample after the block [batch, 1].
    """
    increments = f0_hz * (TWO_PI / sample_rate)
    csum = torch.cumsum(increments, dim=1)
    phase = torch.remainder(initial_phase + csum - increments, TWO_PI)
    return phase, torch.remainder(initial_phase + csum[:, -1:], TWO_PI)


def harmonics_below_nyquist(f0_hz: torch.Tensor, sample_rate: float,
                            n_harmonics: int) -> torch.Tensor:
    """How many harmonics ``k = 1..n_harmonics`` lie strictly below Nyquist at each sample.

    ``k * f0 < sample_rate / 2  <=>  k < nyquist / f0``. Same shape and dtype as ``f0_hz``.
    """
    ratio = (sample_rate / 2.0) / f0_hz.clamp_min(1e-12)
    return (torch.ceil(ratio) - 1.0).clamp(0.0, float(n_harmonics))


def harmonic_blocks(phase: torch.Tensor, n_below: torch.Tensor, dist: torch.Tensor,
                    dist_next: torch.Tensor, amp_weights: torch.Tensor,
                    crossing: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised harmonic mix of ``R`` blocks of ``hop`` samples (before the amplitude).

    Sample ``n`` of a block is the raised-cosine crossfade, from the block's frame to the
    next, of ``sum_k d_k m_k sin(k phi) / sum_k d_k m_k``, where ``m_k = 1`` for the
    ``n_below[n]`` harmonics below Nyquist and 0 above.

    Args:
        phase: [R, hop] oscillator phase (radians), in the output dtype.
        n_below: [R, hop] int64 count of harmonics below Nyquist.
        dist, dist_next: [R, K] harmonic distributions of the block's frame and of the next.
        amp_weights: [hop] crossfade weights of the next frame (``interp_weights("hann")``).
        crossing: [R] bool, the blocks in which the count changes (a harmonic crosses
            Nyquist mid-block), or None to mask every sample. Where the count is constant
            over a block, masking the two distributions equals masking every sample and is
            far cheaper; only offline rendering, which may branch on data, passes it.

    Returns:
        [R, hop].
    """
    n_harmonics = dist.shape[-1]
    k = torch.arange(1, n_harmonics + 1, device=phase.device)
    sines = torch.sin(phase[..., None] * k.to(phase.dtype))  # [R, hop, K]
    if crossing is None:
        sines = sines * (k <= n_below[..., None]).to(sines.dtype)
        pair = torch.stack([dist, dist_next], dim=-1)  # [R, K, 2]
    else:
        cross = torch.nonzero(crossing, as_tuple=True)[0]
        if cross.numel():
            sines[cross] = sines[cross] * (k <= n_below[cross][..., None]).to(sines.dtype)
        block_mask = (k <= n_below.amax(dim=1, keepdim=True)).to(dist.dtype)  # [R, K]
        pair = torch.stack([dist * block_mask, dist_next * block_mask], dim=-1)
    mixed = torch.matmul(sines, pair)  # [R, hop, 2]
    # sum_{k <= M} d_k for the per-sample count M, from cumulative sums over harmonics.
    zeros = dist.new_zeros(dist.shape[0], 1)
    csum = torch.stack([torch.cat([zeros, torch.cumsum(dist, dim=1)], dim=1),
                        torch.cat([zeros, torch.cumsum(dist_next, dim=1)], dim=1)], dim=-1)
    norms = torch.gather(csum, 1, n_below[..., None].expand(-1, -1, 2))  # [R, hop, 2]
    w = amp_weights
    numer = mixed[..., 0] * (1.0 - w) + mixed[..., 1] * w
    denom = norms[..., 0] * (1.0 - w) + norms[..., 1] * w
    return numer / denom.clamp_min(1e-7)


def harmonic_synthesis_blocks(f0_hz: torch.Tensor, amplitude: torch.Tensor,
                              harmonic_distribution: torch.Tensor, sample_rate: float, hop: int,
                              initial_phase: torch.Tensor,
                              exportable: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic synthesis of blocks between consecutive frames (no input checks).

    Block ``t`` is rendered from frame ``t`` to frame ``t + 1`` (f0 linear, amplitude and
    distribution with a raised-cosine crossfade), so ``n_frames`` frames give
    ``n_frames - 1`` blocks: the last frame is the interpolation target only. Whole-signal,
    chunked and one-hop streaming synthesis all go through here.

    Args:
        f0_hz: [batch, n_frames, 1]; amplitude: [batch, n_frames, 1];
        harmonic_distribution: [batch, n_frames, K]; initial_phase: [batch, 1] float64.
        exportable: no data-dependent branches (the streaming step); masks every sample.

    Returns:
        audio [batch, (n_frames - 1) * hop] in the dtype of ``amplitude`` and the phase of
        the next sample [batch, 1] float64.
    """
    dtype = amplitude.dtype
    batch, n_frames, n_harmonics = harmonic_distribution.shape
    n_blocks = n_frames - 1
    f0_up = interpolate_blocks(f0_hz.to(torch.float64),
                               interp_weights(hop, "linear", torch.float64, f0_hz.device))[..., 0]
    # float64 phase, accumulated in blocks of frames with the wrapped phase carried, so the
    # running sum never exceeds one block's worth of radians.
    span = max(1, 65536 // hop) * hop
    phases = []
    phase0 = initial_phase
    for i in range(0, n_blocks * hop, span):
        ph, phase0 = phase_ramp(f0_up[:, i : i + span], sample_rate, phase0)
        phases.append(ph)
    phase = torch.cat(phases, dim=1) if len(phases) > 1 else phases[0]
    n_below = harmonics_below_nyquist(f0_up, sample_rate, n_harmonics).to(torch.long)
    w_amp = interp_weights(hop, "hann", dtype, amplitude.device)
    amp_up = interpolate_blocks(amplitude, w_amp)[..., 0]
    n_below_b = n_below.reshape(batch, n_blocks, hop)
    crossing = None if exportable else (n_below_b.amin(dim=2) != n_below_b.amax(dim=2))
    dist, dist_next = harmonic_distribution[:, :-1], harmonic_distribution[:, 1:]
    if exportable:
        chunk = max(1, _HARMONIC_CHUNK_ELEMENTS // (hop * n_harmonics * batch))
        out = []
        for t0 in range(0, n_blocks, chunk):
            t1 = min(n_blocks, t0 + chunk)
            rows = batch * (t1 - t0)
            mix = harmonic_blocks(
                phase[:, t0 * hop : t1 * hop].to(dtype).reshape(rows, hop),
                n_below_b[:, t0:t1].reshape(rows, hop), dist[:, t0:t1].reshape(rows, n_harmonics),
                dist_next[:, t0:t1].reshape(rows, n_harmonics), w_amp)
            out.append(mix.reshape(batch, (t1 - t0) * hop))
        mixed = torch.cat(out, dim=1) if len(out) > 1 else out[0]
        return mixed * amp_up, phase0
    # Offline, chunk by chunk of each row, with only the harmonics that are below Nyquist
    # somewhere in the chunk: the others are silent and get no gradient either way, and at
    # ordinary pitches they are most of the bank (100 harmonics of a 400 Hz note at 16 kHz:
    # 19 below Nyquist).
    chunk = max(1, _HARMONIC_CHUNK_ELEMENTS // (hop * n_harmonics))
    starts = list(range(0, n_blocks, chunk))
    k_max = n_below_b.amax(dim=2)  # [B, n_blocks]
    k_chunks = torch.stack([k_max[:, t0 : t0 + chunk].amax(dim=1) for t0 in starts], 1).tolist()
    # unbind and split (not indexing) so that backward assembles the distribution's gradient
    # in one stack / cat instead of a zero-filled full-size tensor per piece
    rows = []
    for b, (d_row, dn_row) in enumerate(zip(dist.unbind(0), dist_next.unbind(0))):
        parts = []
        for t0, k, d, dn in zip(starts, k_chunks[b], d_row.split(chunk), dn_row.split(chunk)):
            t1 = min(n_blocks, t0 + chunk)
            if k == 0:
                parts.append(amp_up.new_zeros((t1 - t0) * hop))
                continue
            parts.append(harmonic_blocks(
                phase[b, t0 * hop : t1 * hop].to(dtype).reshape(t1 - t0, hop),
                n_below_b[b, t0:t1], d[:, :k], dn[:, :k], w_amp, crossing[b, t0:t1]).reshape(-1))
        rows.append(torch.cat(parts) if len(parts) > 1 else parts[0])
    mixed = torch.stack(rows) if batch > 1 else rows[0][None]
    return mixed * amp_up, phase0


def _check_f0(f0_hz, sample_rate) -> None:
    check_tensor(f0_hz, "f0_hz", rank=3)
    if f0_hz.shape[2] != 1:
        raise ValueError(f"f0_hz must be [batch, n_frames, 1], got {tuple(f0_hz.shape)}")
    check_finite(f0_hz, "f0_hz")
    if bool((f0_hz < 0).any()):
        raise ValueError("f0_hz must be non-negative")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")


def _initial_phase(initial_phase, batch: int, device) -> torch.Tensor:
    if initial_phase is None:
        return torch.zeros(batch, 1, dtype=torch.float64, device=device)
    check_tensor(initial_phase, "initial_phase", rank=2)
    if tuple(initial_phase.shape) != (batch, 1):
        raise ValueError(
            f"initial_phase must be [batch={batch}, 1], got {tuple(initial_phase.shape)}"
        )
    check_finite(initial_phase, "initial_phase")
    return torch.remainder(initial_phase.to(torch.float64), TWO_PI)


def harmonic_synthesis(
    f0_hz: torch.Tensor,
    amplitude: torch.Tensor,
    harmonic_distribution: torch.Tensor,
    sample_rate: float,
    hop: int,
    initial_phase: torch.Tensor | None = None,
    lookahead: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bank of harmonic sinusoidal oscillators.

    Sample ``n`` is ``A[n] * sum_k d_k[n] m_k[n] sin(k * phi[n]) / sum_k d_k[n] m_k[n]`` with
    ``m_k[n] = 1`` if ``k * f0[n] < sample_rate / 2`` else 0: harmonics at or above Nyquist
    are silenced sample by sample and the distribution is renormalised over the rest.
    f0 is upsampled linearly; amplitude and distribution with a Hann crossfade.

    The work is done in chunks of frames, each a batched matrix product of the chunk's
    ``sin(k*phi)`` with the two neighbouring frames' distributions, so the ``[n_samples,
    n_harmonics]`` sinusoids never exist for the whole signal at once.

    Args:
        f0_hz: [batch, n_frames, 1] fundamental frequency in Hz, >= 0.
        amplitude: [batch, n_frames, 1] total amplitude (linear, >= 0).
        harmonic_distribution: [batch, n_frames, n_harmonics] non-negative weights of
            harmonics 1..n_harmonics (normalised here).
        sample_rate: Hz.
        hop: samples per frame.
        initial_phase: [batch, 1] phase of the fundamental at sample 0 (radians).
        lookahead: the last frame is only the interpolation target of the one before it
            (block-wise synthesis, where it is the first frame of the next block): the output
            has ``(n_frames - 1) * hop`` samples and the phase returned is at that sample.

    Returns:
        audio: [batch, n_frames * hop] (``(n_frames - 1) * hop`` with lookahead), dtype of
            ``amplitude``.
        final_phase: [batch, 1] float64 phase for the next block.
    """
    _check_f0(f0_hz, sample_rate)
    check_positive_int(hop, "hop")
    check_tensor(amplitude, "amplitude", rank=3)
    check_tensor(harmonic_distribution, "harmonic_distribution", rank=3)
    batch, n_frames, _ = f0_hz.shape
    check_frames(amplitude, "amplitude", batch, n_frames)
    check_frames(harmonic_distribution, "harmonic_distribution", batch, n_frames)
    if amplitude.shape[2] != 1:
        raise ValueError(f"amplitude must be [batch, n_frames, 1], got {tuple(amplitude.shape)}")
    check_finite(amplitude, "amplitude")
    check_finite(harmonic_distribution, "harmonic_distribution")
    phase0 = _initial_phase(initial_phase, batch, f0_hz.device)
    if lookahead:
        if n_frames < 2:
            raise ValueError("lookahead needs at least 2 frames")
    else:
        f0_hz, amplitude, harmonic_distribution = (
            hold_last_frame(f0_hz), hold_last_frame(amplitude),
            hold_last_frame(harmonic_distribution))
    return harmonic_synthesis_blocks(f0_hz, amplitude, harmonic_distribution, sample_rate, hop,
                                     phase0)
