"""FIR design and convolution: frequency-sampled FIRs, time-varying FIR filtering with
overlap-add, FFT convolution, minimum-phase responses, and the uniformly partitioned
convolution of the streaming step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_positive_int, check_tensor
from .units import TWO_PI


def fft_convolve(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Full linear convolution by FFT.

    Args:
        signal: [batch, n_samples].
        kernel: [batch or 1, kernel_size].

    Returns:
        [batch, n_samples + kernel_size - 1].
    """
    check_tensor(signal, "signal", rank=2)
    check_tensor(kernel, "kernel", rank=2)
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
    check_tensor(magnitudes, "magnitudes")
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
    check_tensor(signal, "signal", rank=2)
    check_tensor(irs, "irs", rank=3)
    check_positive_int(hop, "hop")
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
    check_tensor(noise, "noise", rank=2)
    t = torch.arange(noise.shape[1], dtype=noise.dtype, device=noise.device) / sample_rate
    return gain * noise * torch.exp(-t / decay_s)


def minimum_phase(ir: torch.Tensor, oversample: int = 8, floor_db: float = -120.0
                  ) -> torch.Tensor:
    """The minimum-phase response with the magnitude spectrum of ``ir`` (real-cepstrum
    folding), differentiable.

    Of all causal responses with one magnitude spectrum, the minimum-phase one has its energy
    as early as causality allows: the same colour, without the smear of a mixed-phase
    response. The cepstrum is taken on an FFT ``oversample`` times longer than the response
    (to keep its aliasing small) and the result cut back to the response's length.

    Args:
        ir: [batch, n_taps] impulse responses.
        oversample: FFT length over ``n_taps`` (rounded up to a power of two).
        floor_db: magnitudes are floored this far below each response's peak before the log
            (a spectral zero has no finite log).

    Returns:
        [batch, n_taps].
    """
    check_tensor(ir, "ir", rank=2)
    check_positive_int(oversample, "oversample")
    n_taps = ir.shape[1]
    n_fft = 1 << (oversample * n_taps - 1).bit_length()
    spec = torch.fft.rfft(ir, n_fft)
    power = spec.real.square() + spec.imag.square()
    floor = power.amax(dim=1, keepdim=True).detach() * 10.0 ** (floor_db / 10.0) + 1e-30
    log_magnitude = 0.5 * torch.log(torch.maximum(power, floor))
    cepstrum = torch.fft.irfft(log_magnitude, n_fft)
    # Fold the (even) real cepstrum onto positive quefrencies: the minimum-phase cepstrum.
    fold = torch.zeros(n_fft, dtype=ir.dtype, device=ir.device)
    fold[0] = 1.0
    fold[1 : n_fft // 2] = 2.0
    fold[n_fft // 2] = 1.0
    return torch.fft.irfft(torch.exp(torch.fft.rfft(cepstrum * fold, n_fft)), n_fft)[:, :n_taps]


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
