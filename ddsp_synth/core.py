"""Pure, batched, differentiable DSP functions.

Conventions used throughout:

* Frame-rate controls are ``[batch, n_frames, channels]``; audio is ``[batch, n_samples]``.
* Frame ``t`` describes the signal *at* sample ``t * hop`` (the centre of the analysis window
  used for features, as in ``torch.stft(center=True)`` and ``torchcrepe`` with padding).
  Upsampling therefore interpolates from frame ``t`` to frame ``t + 1`` over the samples
  ``[t * hop, (t + 1) * hop)``; the last frame is held for its block, so ``n_frames`` frames
  always give exactly ``n_frames * hop`` samples.
* Phase is accumulated in float64 and wrapped to ``[0, 2*pi)``; everything else is float32
  unless the inputs are float64 (used by ``gradcheck``).

Nothing here holds parameters; :mod:`ddsp_synth.processors` wraps these in modules.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

TWO_PI = 2.0 * math.pi

# Elements (samples x harmonics) synthesised per chunk: keeps the working set of the
# oscillator bank in cache and bounds peak memory for long signals (60 s x 100 harmonics
# would otherwise be 384 MB per float32 tensor).
_HARMONIC_CHUNK_ELEMENTS = 1 << 21


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------
def _check_tensor(x, name: str, rank: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if rank is not None and x.dim() != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_positive_int(value, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_frames(x: torch.Tensor, name: str, batch: int, n_frames: int) -> None:
    if x.shape[0] != batch or x.shape[1] != n_frames:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, expected [batch={batch}, "
            f"n_frames={n_frames}, ...] to match f0_hz"
        )


# --------------------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------------------
def exp_sigmoid(
    x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0, threshold: float = 1e-7
) -> torch.Tensor:
    """DDSP's scaled sigmoid for amplitudes and magnitudes.

    ``max_value * sigmoid(x) ** ln(exponent) + threshold``: positive, saturating at
    ``max_value``, with a gradient that does not vanish for small outputs the way a plain
    sigmoid's does. Any shape.
    """
    _check_tensor(x, "x")
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold


# --------------------------------------------------------------------------------------
# Unit conversions
# --------------------------------------------------------------------------------------
MIDI_0_HZ = 8.175798915643707  # MIDI note 0; lower frequencies map to it
CENTS_REF_HZ = 10.0  # CREPE's cents scale is relative to 10 Hz


def hz_to_midi(f_hz):
    """MIDI note number (69 = A4 = 440 Hz) of a frequency; 0 Hz and anything below MIDI 0
    (8.18 Hz) map to 0. numpy arrays and torch tensors alike."""
    if isinstance(f_hz, torch.Tensor):
        return 69.0 + 12.0 * torch.log2(f_hz.clamp_min(MIDI_0_HZ) / 440.0)
    return 69.0 + 12.0 * np.log2(np.maximum(np.asarray(f_hz, np.float64), MIDI_0_HZ) / 440.0)


def midi_to_hz(midi):
    """Frequency in Hz of a (fractional) MIDI note number; numpy or torch."""
    if not isinstance(midi, torch.Tensor):
        midi = np.asarray(midi, np.float64)
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def hz_to_cents(f_hz):
    """Cents above 10 Hz (CREPE's pitch scale); frequencies are floored at 1e-6 Hz."""
    if isinstance(f_hz, torch.Tensor):
        return 1200.0 * torch.log2(f_hz.clamp_min(1e-6) / CENTS_REF_HZ)
    return 1200.0 * np.log2(np.maximum(f_hz, 1e-6) / CENTS_REF_HZ)


def cents_to_hz(cents):
    """Inverse of :func:`hz_to_cents`."""
    return CENTS_REF_HZ * 2.0 ** (cents / 1200.0)


# --------------------------------------------------------------------------------------
# Per-block kernels: one math path for whole-signal, chunked and one-hop streaming
# synthesis. They hold no checks and no data-dependent control flow, so the streaming
# step that calls them exports to ONNX / TorchScript.
# --------------------------------------------------------------------------------------
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


def partitioned_convolution_step(block: torch.Tensor, previous_block: torch.Tensor,
                                 input_spectra: torch.Tensor, kernel_spectra: torch.Tensor,
                                 dft: torch.Tensor, idft: torch.Tensor):
    """One block of a uniformly partitioned overlap-save convolution, with DFTs as matrix
    products (no FFT, exportable). Exact linear convolution, one block of work per block.

    Args:
        block, previous_block: [batch, n] this and the previous input block.
        input_spectra: [batch, P, 2 (n + 1)] (real, imaginary) spectra of the last ``P``
            input blocks, newest first: the frequency-domain delay line.
        kernel_spectra: [1, P, 2 (n + 1)] spectra of the kernel's ``P`` partitions
            (:func:`partition_kernel`).
        dft, idft: matrices from :func:`real_dft_matrices`.

    Returns:
        output [batch, n] and the new delay line.
    """
    spec = torch.matmul(torch.cat([previous_block, block], dim=1), dft)  # [B, 2(n+1)]
    spectra = torch.cat([spec[:, None], input_spectra[:, :-1]], dim=1)
    f = spec.shape[1] // 2
    xr, xi = spectra[..., :f], spectra[..., f:]
    hr, hi = kernel_spectra[..., :f], kernel_spectra[..., f:]
    yr = (xr * hr - xi * hi).sum(dim=1)
    yi = (xr * hi + xi * hr).sum(dim=1)
    return torch.matmul(torch.cat([yr, yi], dim=1), idft), spectra


def real_dft_matrices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DFT of ``2 n`` real samples as a matrix ``[2n, 2 (n + 1)]`` (x @ dft = [re, im]) and
    the inverse ``[2 (n + 1), n]`` that returns only the last ``n`` (alias-free) samples of
    an overlap-save block. float32."""
    t_idx = torch.arange(2 * n, dtype=torch.float64)
    f_idx = torch.arange(n + 1, dtype=torch.float64)
    ang = TWO_PI * t_idx[:, None] * f_idx[None, :] / (2 * n)
    dft = torch.cat([torch.cos(ang), -torch.sin(ang)], dim=1)
    scale = torch.full((n + 1,), 2.0, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0
    out_t = torch.arange(n, 2 * n, dtype=torch.float64)
    ang_i = TWO_PI * f_idx[:, None] * out_t[None, :] / (2 * n)
    idft = torch.cat([scale[:, None] * torch.cos(ang_i),
                      -scale[:, None] * torch.sin(ang_i)], dim=0) / (2 * n)
    return dft.float(), idft.float()


def partition_kernel(kernel: torch.Tensor, n: int, dft: torch.Tensor) -> torch.Tensor:
    """Spectra [1, P, 2 (n + 1)] of a kernel [kernel_size] cut into ``P = ceil(size / n)``
    partitions of ``n`` taps, each zero-padded to ``2 n``."""
    n_parts = -(-kernel.shape[0] // n)
    padded = F.pad(kernel.double(), (0, n_parts * n - kernel.shape[0]))
    parts = F.pad(padded.reshape(n_parts, n), (0, n))
    return (parts @ dft.double()).float()[None]


# --------------------------------------------------------------------------------------
# Upsampling and oscillators (checked, whole-signal entry points)
# --------------------------------------------------------------------------------------
def upsample(x: torch.Tensor, hop: int, kind: str = "linear") -> torch.Tensor:
    """Upsample frame-rate controls to audio rate (the last frame is held for its block).

    Args:
        x: [batch, n_frames, channels] controls.
        hop: samples per frame.
        kind: ``"linear"`` (used for f0) or ``"hann"`` (Hann-window overlap-add, a smooth
            raised-cosine crossfade, used for amplitudes).

    Returns:
        [batch, n_frames * hop, channels].
    """
    _check_tensor(x, "x", rank=3)
    _check_positive_int(hop, "hop")
    return interpolate_blocks(hold_last_frame(x), interp_weights(hop, kind, x.dtype, x.device))


def hold_last_frame(x: torch.Tensor) -> torch.Tensor:
    """[batch, n_frames, C] -> [batch, n_frames + 1, C]: the last frame repeated, so that
    block-wise rendering (block t from frame t to t + 1) holds it for its own block."""
    return torch.cat([x, x[:, -1:]], dim=1)


def oscillator_phase(
    f0_hz: torch.Tensor,
    sample_rate: float,
    hop: int,
    initial_phase: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Instantaneous phase of an oscillator following frame-rate f0.

    Sample ``n`` has phase ``initial_phase + 2*pi * sum_{m<n} f0[m] / sample_rate`` (so a
    constant f0 gives exactly ``2*pi*f0*n/sample_rate``), accumulated in float64 block by
    block and wrapped to ``[0, 2*pi)``, so the error does not grow with the signal length.

    Args:
        f0_hz: [batch, n_frames, 1] fundamental frequency in Hz (linearly upsampled).
        sample_rate: Hz.
        hop: samples per frame.
        initial_phase: [batch, 1] phase of sample 0 in radians (default 0).

    Returns:
        phase: [batch, n_frames * hop] float64 in [0, 2*pi).
        final_phase: [batch, 1] float64, the phase of the sample after the last one; pass it
            as ``initial_phase`` of the next block to continue seamlessly.
    """
    _check_f0(f0_hz, sample_rate)
    _check_positive_int(hop, "hop")
    phase0 = _initial_phase(initial_phase, f0_hz.shape[0], f0_hz.device)
    f0_up = upsample(f0_hz.to(torch.float64), hop, "linear")[..., 0]  # [B, N]
    span = max(1, 65536 // hop) * hop
    phases = []
    for i in range(0, f0_up.shape[1], span):
        ph, phase0 = phase_ramp(f0_up[:, i : i + span], sample_rate, phase0)
        phases.append(ph)
    return torch.cat(phases, dim=1), phase0


def _check_f0(f0_hz, sample_rate) -> None:
    _check_tensor(f0_hz, "f0_hz", rank=3)
    if f0_hz.shape[2] != 1:
        raise ValueError(f"f0_hz must be [batch, n_frames, 1], got {tuple(f0_hz.shape)}")
    _check_finite(f0_hz, "f0_hz")
    if bool((f0_hz < 0).any()):
        raise ValueError("f0_hz must be non-negative")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")


def _initial_phase(initial_phase, batch: int, device) -> torch.Tensor:
    if initial_phase is None:
        return torch.zeros(batch, 1, dtype=torch.float64, device=device)
    _check_tensor(initial_phase, "initial_phase", rank=2)
    if tuple(initial_phase.shape) != (batch, 1):
        raise ValueError(
            f"initial_phase must be [batch={batch}, 1], got {tuple(initial_phase.shape)}"
        )
    _check_finite(initial_phase, "initial_phase")
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
    _check_positive_int(hop, "hop")
    _check_tensor(amplitude, "amplitude", rank=3)
    _check_tensor(harmonic_distribution, "harmonic_distribution", rank=3)
    batch, n_frames, _ = f0_hz.shape
    _check_frames(amplitude, "amplitude", batch, n_frames)
    _check_frames(harmonic_distribution, "harmonic_distribution", batch, n_frames)
    if amplitude.shape[2] != 1:
        raise ValueError(f"amplitude must be [batch, n_frames, 1], got {tuple(amplitude.shape)}")
    _check_finite(amplitude, "amplitude")
    _check_finite(harmonic_distribution, "harmonic_distribution")
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


# --------------------------------------------------------------------------------------
# FIR design and convolution
# --------------------------------------------------------------------------------------
def fft_convolve(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Full linear convolution by FFT.

    Args:
        signal: [batch, n_samples].
        kernel: [batch or 1, kernel_size].

    Returns:
        [batch, n_samples + kernel_size - 1].
    """
    _check_tensor(signal, "signal", rank=2)
    _check_tensor(kernel, "kernel", rank=2)
    if kernel.shape[0] not in (1, signal.shape[0]):
        raise ValueError(
            f"kernel batch {kernel.shape[0]} must be 1 or match signal batch {signal.shape[0]}"
        )
    n_out = signal.shape[1] + kernel.shape[1] - 1
    n_fft = 1 << (n_out - 1).bit_length()
    spec = torch.fft.rfft(signal, n_fft) * torch.fft.rfft(kernel, n_fft)
    return torch.fft.irfft(spec, n_fft)[:, :n_out]


def frequency_sampling_fir(magnitudes: torch.Tensor) -> torch.Tensor:
    """Linear-phase FIR filters from band magnitudes (frequency-sampling design).

    Magnitudes are taken as a zero-phase response at ``n_bands`` equally spaced frequencies
    from 0 Hz to Nyquist; the inverse real FFT gives a zero-phase impulse response of
    ``ir_size = 2 * (n_bands - 1)`` taps, which is Hann-windowed and shifted to be causal,
    i.e. linear phase with a delay of ``ir_size // 2`` samples.

    Args:
        magnitudes: [..., n_bands] non-negative linear magnitudes, n_bands >= 2.

    Returns:
        [..., ir_size] impulse responses.
    """
    _check_tensor(magnitudes, "magnitudes")
    n_bands = magnitudes.shape[-1]
    if n_bands < 2:
        raise ValueError(f"magnitudes needs at least 2 bands, got {n_bands}")
    ir_size = 2 * (n_bands - 1)
    ir = torch.fft.irfft(magnitudes.to(torch.complex64 if magnitudes.dtype == torch.float32
                                       else torch.complex128), n=ir_size)
    # ir is zero-phase (centred at index 0); window it with a Hann window centred there too,
    # then rotate so the peak sits at ir_size // 2.
    window = torch.hann_window(ir_size, periodic=True, dtype=ir.dtype, device=ir.device)
    window = torch.roll(window, ir_size // 2)
    return torch.roll(ir * window, ir_size // 2, dims=-1)


def time_varying_fir(signal: torch.Tensor, irs: torch.Tensor, hop: int) -> torch.Tensor:
    """Filter each hop-long block of ``signal`` with its own FIR and overlap-add the tails.

    Block ``t`` (samples ``[t*hop, (t+1)*hop)``) is convolved with ``irs[:, t]`` by FFT; its
    full result, ``hop + ir_size - 1`` samples, is added starting at ``t*hop``, so every
    filter tail spills into the following blocks instead of being cut off.

    Args:
        signal: [batch, n_frames * hop].
        irs: [batch, n_frames, ir_size].
        hop: samples per frame.

    Returns:
        [batch, n_frames * hop + ir_size - 1]: the output including the final tail.
    """
    _check_tensor(signal, "signal", rank=2)
    _check_tensor(irs, "irs", rank=3)
    _check_positive_int(hop, "hop")
    batch, n_frames, ir_size = irs.shape
    if signal.shape[0] != batch:
        raise ValueError(f"signal batch {signal.shape[0]} does not match irs batch {batch}")
    if signal.shape[1] != n_frames * hop:
        raise ValueError(
            f"signal has {signal.shape[1]} samples, expected n_frames * hop = "
            f"{n_frames} * {hop} = {n_frames * hop}"
        )
    conv_len = hop + ir_size - 1
    n_fft = 1 << (conv_len - 1).bit_length()
    blocks = signal.reshape(batch, n_frames, hop)
    spec = torch.fft.rfft(blocks, n_fft) * torch.fft.rfft(irs, n_fft)
    filtered = torch.fft.irfft(spec, n_fft)[..., :conv_len]  # [B, T, conv_len]
    # Overlap-add: split each block's output into hop-long pieces and add piece j to
    # block t + j.
    n_pieces = -(-conv_len // hop)
    filtered = F.pad(filtered, (0, n_pieces * hop - conv_len))
    pieces = filtered.reshape(batch, n_frames, n_pieces, hop)
    out = signal.new_zeros(batch, n_frames + n_pieces - 1, hop)
    for j in range(n_pieces):
        out = out + F.pad(pieces[:, :, j], (0, 0, j, n_pieces - 1 - j))
    return out.reshape(batch, -1)[:, : n_frames * hop + ir_size - 1]


def filtered_noise(
    magnitudes: torch.Tensor,
    hop: int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_tail: bool = False,
) -> torch.Tensor:
    """Uniform white noise shaped per frame by a linear-phase FIR.

    Args:
        magnitudes: [batch, n_frames, n_bands] linear band magnitudes, 0 Hz..Nyquist.
        hop: samples per frame.
        noise: optional [batch, n_frames * hop] excitation; default uniform in [-1, 1).
        generator: random generator for the default noise.
        return_tail: if True, return ``n_frames*hop + ir_size - 1`` samples (the filter tail
            after the last frame, for streaming); else exactly ``n_frames * hop``.

    Returns:
        [batch, n_frames * hop] (or longer with ``return_tail``). The filters are causal with
        a group delay of ``n_bands - 1`` samples.
    """
    _check_tensor(magnitudes, "magnitudes", rank=3)
    _check_positive_int(hop, "hop")
    _check_finite(magnitudes, "magnitudes")
    batch, n_frames, _ = magnitudes.shape
    n_samples = n_frames * hop
    if noise is None:
        noise = torch.rand(batch, n_samples, generator=generator, dtype=magnitudes.dtype,
                           device=magnitudes.device) * 2.0 - 1.0
    irs = frequency_sampling_fir(magnitudes)
    out = time_varying_fir(noise, irs, hop)
    return out if return_tail else out[:, :n_samples]


# --------------------------------------------------------------------------------------
# Reverb
# --------------------------------------------------------------------------------------
def exp_decay_ir(
    noise: torch.Tensor, gain: torch.Tensor, decay_s: torch.Tensor, sample_rate: float
) -> torch.Tensor:
    """Exponentially decaying noise impulse response.

    ``ir[n] = gain * noise[n] * exp(-n / (decay_s * sample_rate))``.

    Args:
        noise: [batch or 1, ir_size] excitation.
        gain: scalar or [batch or 1, 1] linear gain.
        decay_s: scalar or [batch or 1, 1] time constant in seconds (> 0).
        sample_rate: Hz.

    Returns:
        [batch or 1, ir_size].
    """
    _check_tensor(noise, "noise", rank=2)
    t = torch.arange(noise.shape[1], dtype=noise.dtype, device=noise.device) / sample_rate
    return gain * noise * torch.exp(-t / decay_s)


def reverb(
    audio: torch.Tensor, ir: torch.Tensor, mix: float | torch.Tensor = 1.0, keep_tail: bool = False
) -> torch.Tensor:
    """Convolution reverb with a wet/dry mix.

    ``out = (1 - mix) * audio + mix * (audio * ir)``, so a unit-impulse ``ir`` returns the
    input for every ``mix``. The wet tail (``ir_size - 1`` samples after the input ends) is
    cropped unless ``keep_tail`` is True, in which case the dry part is zero-padded and the
    output is ``n_samples + ir_size - 1`` long; the streaming engine keeps the tail and adds
    it to the following blocks.

    Args:
        audio: [batch, n_samples].
        ir: [batch or 1, ir_size] impulse response (tap 0 is the direct path).
        mix: scalar or [batch, 1] in [0, 1].
        keep_tail: see above.

    Returns:
        [batch, n_samples] or [batch, n_samples + ir_size - 1].
    """
    _check_tensor(audio, "audio", rank=2)
    _check_tensor(ir, "ir", rank=2)
    _check_finite(audio, "audio")
    wet = fft_convolve(audio, ir)
    n = audio.shape[1]
    if keep_tail:
        dry = F.pad(audio, (0, wet.shape[1] - n))
    else:
        wet, dry = wet[:, :n], audio
    return (1.0 - mix) * dry + mix * wet


# --------------------------------------------------------------------------------------
# Spectra and loudness
# --------------------------------------------------------------------------------------
def n_frames_for(n_samples: int, hop: int) -> int:
    """Number of frames covering ``n_samples`` on the shared feature grid: ceil(n/hop)."""
    return -(-int(n_samples) // int(hop))


class _StftMagnitude(torch.autograd.Function):
    """|STFT| of zero-padded centred frames with a direct backward.

    The values are ``torch.stft(..., center=True, pad_mode="constant").abs()``. Autograd
    through ``torch.stft`` zero-fills every one-sided gradient spectrum to full length and
    runs a complex FFT over it; the adjoint of the real FFT is a real inverse FFT with the
    interior bins halved, then the window and an overlap-add (``fold``): about 2x less work
    in backward, which the training loss runs 14 times per step.
    """

    @staticmethod
    def forward(ctx, audio, n_fft, hop, window):
        frames = F.pad(audio, (n_fft // 2, n_fft // 2)).unfold(1, n_fft, hop)  # [B, T, n]
        spec = torch.fft.rfft(frames.transpose(1, 2) * window[:, None], dim=1)  # [B, F, T]
        re_im = torch.view_as_real(spec)
        mag = torch.hypot(re_im[..., 0], re_im[..., 1])  # = spec.abs(), about 2x faster
        ctx.save_for_backward(spec, mag, window)
        ctx.config = (n_fft, hop, audio.shape[1])
        return mag

    @staticmethod
    def backward(ctx, grad):
        spec, mag, window = ctx.saved_tensors
        n_fft, hop, n_samples = ctx.config
        # d|X|/dX = X / |X|, 0 where the spectrum is exactly zero (as abs' subgradient); real
        # arithmetic on (re, im) pairs, which is far faster than complex division here.
        scale = torch.where(mag > 0, grad / mag.clamp_min(1e-30), 0.0)
        scale[:, 1 : (n_fft + 1) // 2] *= 0.5  # the adjoint of rfft counts interior bins twice
        g = torch.view_as_complex(torch.view_as_real(spec) * scale[..., None])
        d_frames = torch.fft.irfft(g, n_fft, dim=1) * (n_fft * window[:, None])  # [B, n, T]
        batch, _, n_frames = d_frames.shape
        if n_fft % hop == 0:  # overlap-add as n_fft / hop shifted sums of hop-long pieces
            pieces = d_frames.view(batch, n_fft // hop, hop, n_frames)
            d_pad = d_frames.new_zeros(batch, hop, n_frames + n_fft // hop - 1)
            for j in range(n_fft // hop):
                d_pad[:, :, j : j + n_frames] += pieces[:, j]
            d_pad = d_pad.transpose(1, 2).reshape(batch, -1)
        else:
            padded = (n_frames - 1) * hop + n_fft
            d_pad = F.fold(d_frames, (1, padded), (1, n_fft), stride=(1, hop))[:, 0, 0]
        return d_pad[:, n_fft // 2 : n_fft // 2 + n_samples], None, None, None


def magnitude_spectrogram(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT| with a periodic Hann window, zero-padded centred frames (as
    ``torch.stft(center=True, pad_mode="constant").abs()``, with a faster backward).

    Args:
        audio: [batch, n_samples].

    Returns:
        [batch, n_fft // 2 + 1, 1 + n_samples // hop] linear magnitudes.
    """
    _check_tensor(audio, "audio", rank=2)
    window = torch.hann_window(n_fft, dtype=audio.dtype, device=audio.device)
    return _StftMagnitude.apply(audio, n_fft, hop, window)


def a_weighting_db(frequencies_hz: np.ndarray | torch.Tensor, min_db: float = -120.0):
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz), clipped below at ``min_db``."""
    f = frequencies_hz
    lib = torch if isinstance(f, torch.Tensor) else np
    f2 = f * f
    c1, c2, c3, c4 = 20.598997**2, 107.65265**2, 737.86223**2, 12194.217**2
    ra = (c4 * f2 * f2) / ((f2 + c1) * lib.sqrt((f2 + c2) * (f2 + c3)) * (f2 + c4))
    db = 20.0 * lib.log10(lib.clip(ra, 1e-30, None) if lib is np else ra.clamp_min(1e-30))
    db = db + 2.0
    return lib.clip(db, min_db, None) if lib is np else db.clamp_min(min_db)


@functools.lru_cache(maxsize=16)
def _a_weights(sample_rate: float, n_fft: int) -> tuple[torch.Tensor, float]:
    """A-weighting power gains of the rfft bins [n_fft // 2 + 1] (float64), and the one-sided
    power of a full-scale sine through a Hann window of ``n_fft``: ``n_fft * sum(w^2) / 4``.
    Cached: the streaming front end asks for them every 10 ms."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return 10.0 ** (a_weighting_db(freqs) / 10.0), float(n_fft * window.square().sum() / 4.0)


def a_weighted_loudness(
    audio: torch.Tensor,
    sample_rate: float,
    hop: int,
    n_fft: int,
    floor_db: float = -120.0,
) -> torch.Tensor:
    """A-weighted loudness in dB per frame, on the shared frame grid.

    Frame ``t`` is a Hann-windowed FFT centred on sample ``t * hop``; its A-weighted power
    (sum over bins of ``|X|^2 * 10^(A(f)/10)``) is expressed in dB relative to a full-scale
    1 kHz sine, so a sine of amplitude ``a`` at 1 kHz reads ``20*log10(a)`` dB. The level is
    floored smoothly at ``floor_db`` (``10*log10(p + 10^(floor/10))``), which keeps it finite
    and differentiable on silence, so the same function serves as a feature and inside a loss.

    Args:
        audio: [batch, n_samples].
        sample_rate: Hz.
        hop: samples per frame.
        n_fft: window length in samples.

    Returns:
        [batch, ceil(n_samples / hop), 1] loudness in dB.
    """
    _check_tensor(audio, "audio", rank=2)
    _check_positive_int(hop, "hop")
    _check_positive_int(n_fft, "n_fft")
    _check_finite(audio, "audio")
    n_frames = n_frames_for(audio.shape[1], hop)
    mag = magnitude_spectrogram(audio, n_fft, hop)[..., :n_frames]  # [B, F, T]
    weight, ref_power = _a_weights(float(sample_rate), n_fft)
    weight = weight.to(audio.dtype).to(audio.device)
    power = (mag.square() * weight[None, :, None]).sum(dim=1) / ref_power  # [B, T]
    loudness = 10.0 * torch.log10(power + 10.0 ** (floor_db / 10.0))
    return loudness[..., None]
