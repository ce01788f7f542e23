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
# Upsampling
# --------------------------------------------------------------------------------------
def _interp_weights(hop: int, kind: str, dtype: torch.dtype, device) -> torch.Tensor:
    """Weights of frame ``t + 1`` for the ``hop`` samples of block ``t``: [hop]."""
    frac = torch.arange(hop, dtype=torch.float64, device=device) / hop
    if kind == "linear":
        w = frac
    elif kind == "hann":
        # Overlap-adding Hann windows of length 2*hop centred on the frames is exactly a
        # raised-cosine crossfade between neighbouring frames (the windows sum to one).
        w = 0.5 - 0.5 * torch.cos(math.pi * frac)
    else:
        raise ValueError(f"kind must be 'linear' or 'hann', got {kind!r}")
    return w.to(dtype)


def _next_frames(x: torch.Tensor) -> torch.Tensor:
    """Frame ``t + 1`` for every ``t`` (the last frame is held): same shape as ``x``."""
    return torch.cat([x[:, 1:], x[:, -1:]], dim=1)


def upsample(x: torch.Tensor, hop: int, kind: str = "linear") -> torch.Tensor:
    """Upsample frame-rate controls to audio rate.

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
    w = _interp_weights(hop, kind, x.dtype, x.device)[None, None, :, None]
    y = x[:, :, None, :] * (1.0 - w) + _next_frames(x)[:, :, None, :] * w
    return y.reshape(x.shape[0], x.shape[1] * hop, x.shape[2])


# --------------------------------------------------------------------------------------
# Oscillators
# --------------------------------------------------------------------------------------
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
    _check_tensor(f0_hz, "f0_hz", rank=3)
    _check_positive_int(hop, "hop")
    if f0_hz.shape[2] != 1:
        raise ValueError(f"f0_hz must be [batch, n_frames, 1], got {tuple(f0_hz.shape)}")
    _check_finite(f0_hz, "f0_hz")
    if bool((f0_hz < 0).any()):
        raise ValueError("f0_hz must be non-negative")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    batch, n_frames, _ = f0_hz.shape
    phase0 = _initial_phase(initial_phase, batch, f0_hz.device)

    f0_up = upsample(f0_hz.to(torch.float64), hop, "linear")[..., 0]  # [B, N]
    increments = f0_up * (TWO_PI / sample_rate)
    # Exclusive cumulative sum within blocks of frames, carrying the wrapped phase from one
    # block to the next: the running sum never exceeds one block's worth of radians.
    block = max(1, 65536 // hop) * hop
    phases = []
    start = phase0
    for i in range(0, increments.shape[1], block):
        inc = increments[:, i : i + block]
        csum = torch.cumsum(inc, dim=1)
        phases.append(torch.remainder(start + csum - inc, TWO_PI))
        start = torch.remainder(start + csum[:, -1:], TWO_PI)
    return torch.cat(phases, dim=1), start


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
    _check_tensor(f0_hz, "f0_hz", rank=3)
    _check_tensor(amplitude, "amplitude", rank=3)
    _check_tensor(harmonic_distribution, "harmonic_distribution", rank=3)
    batch, n_frames, _ = f0_hz.shape
    _check_frames(amplitude, "amplitude", batch, n_frames)
    _check_frames(harmonic_distribution, "harmonic_distribution", batch, n_frames)
    if amplitude.shape[2] != 1:
        raise ValueError(f"amplitude must be [batch, n_frames, 1], got {tuple(amplitude.shape)}")
    _check_finite(amplitude, "amplitude")
    _check_finite(harmonic_distribution, "harmonic_distribution")
    phase, final_phase = oscillator_phase(f0_hz, sample_rate, hop, initial_phase)
    if lookahead:
        if n_frames < 2:
            raise ValueError("lookahead needs at least 2 frames")
        final_phase = phase[:, (n_frames - 1) * hop : (n_frames - 1) * hop + 1]

    dtype = amplitude.dtype
    n_harmonics = harmonic_distribution.shape[2]
    device = amplitude.device
    nyquist = sample_rate / 2.0

    # Per-sample count of harmonics strictly below Nyquist: k * f0 < nyquist <=> k < nyq/f0.
    f0_up = upsample(f0_hz.to(torch.float64), hop, "linear")[..., 0]  # [B, N]
    ratio = nyquist / f0_up.clamp_min(1e-12)
    n_below = (torch.ceil(ratio) - 1).clamp(0, n_harmonics).to(torch.long)  # [B, N]

    w_amp = _interp_weights(hop, "hann", dtype, device)  # [hop]
    dist = harmonic_distribution
    dist_next = _next_frames(dist)
    # Cumulative sums over harmonics give sum_{k <= M} d_k for any per-sample count M.
    zeros = torch.zeros(batch, n_frames, 1, dtype=dist.dtype, device=device)
    csum = torch.cat([zeros, torch.cumsum(dist, dim=2)], dim=2)  # [B, T, K+1]
    csum_next = _next_frames(csum)
    amp_up = upsample(amplitude, hop, "hann")[..., 0]  # [B, N]

    k = torch.arange(1, n_harmonics + 1, device=device)
    # The count of harmonics below Nyquist is monotonic within a block (f0 is linear there).
    # Where it is constant, masking the two frames' distributions is exact and cheap; only
    # blocks where a harmonic crosses Nyquist mid-block need the per-sample mask.
    n_below_blocks = n_below.reshape(batch, n_frames, hop)
    n_max = n_below_blocks.amax(dim=2, keepdim=True)  # [B, T, 1]
    crossing = n_below_blocks.amin(dim=2, keepdim=True) != n_max
    frame_mask = (k <= n_max).to(dtype)  # [B, T, K]
    chunk_frames = max(1, _HARMONIC_CHUNK_ELEMENTS // (hop * n_harmonics * batch))
    out = []
    for t0 in range(0, n_frames, chunk_frames):
        t1 = min(n_frames, t0 + chunk_frames)
        nt = t1 - t0
        s0, s1 = t0 * hop, t1 * hop
        ph = phase[:, s0:s1].to(dtype).reshape(batch * nt, hop, 1)
        m_idx = n_below_blocks[:, t0:t1]  # [B, nt, hop]
        sines = torch.sin(ph * k.to(dtype))  # [B*nt, hop, K]
        cross = torch.nonzero(crossing[:, t0:t1].reshape(-1), as_tuple=True)[0]
        if cross.numel():
            m_cross = m_idx.reshape(batch * nt, hop, 1)[cross]
            sines[cross] = sines[cross] * (k <= m_cross).to(dtype)
        # Both neighbouring frames' distributions at once: [B*nt, hop, K] @ [B*nt, K, 2].
        fm = frame_mask[:, t0:t1]
        d2 = torch.stack([dist[:, t0:t1] * fm, dist_next[:, t0:t1] * fm], dim=-1)
        mixed = torch.matmul(sines, d2.reshape(batch * nt, n_harmonics, 2)).reshape(
            batch, nt, hop, 2)
        norm0 = torch.gather(csum[:, t0:t1], 2, m_idx)
        norm1 = torch.gather(csum_next[:, t0:t1], 2, m_idx)
        wa = w_amp[None, None, :]
        numer = mixed[..., 0] * (1.0 - wa) + mixed[..., 1] * wa
        denom = norm0 * (1.0 - wa) + norm1 * wa
        chunk = numer / denom.clamp_min(1e-7)
        out.append(chunk.reshape(batch, nt * hop))
    audio = torch.cat(out, dim=1) * amp_up
    if lookahead:
        audio = audio[:, : (n_frames - 1) * hop]
    return audio, final_phase


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


def magnitude_spectrogram(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT| with a periodic Hann window, zero-padded centred frames.

    Args:
        audio: [batch, n_samples].

    Returns:
        [batch, n_fft // 2 + 1, 1 + n_samples // hop] linear magnitudes.
    """
    _check_tensor(audio, "audio", rank=2)
    window = torch.hann_window(n_fft, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(audio, n_fft, hop_length=hop, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    # Complex abs has a zero (not NaN) subgradient where the spectrum is exactly zero.
    return spec.abs()


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
