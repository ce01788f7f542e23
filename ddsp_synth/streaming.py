"""Streaming engine: play a model live, one control frame (one hop, 10 ms at 16 kHz) at a time.

Two parts, both causal and stateful:

* :class:`SynthStep` — the decoder and the harmonic-plus-noise-plus-reverb synthesizer for
  one hop, written as a pure function of its inputs and an explicit state (GRU hidden state,
  oscillator phase, previous frame's controls, noise-filter tail, reverb delay line). The
  reverb is a uniformly partitioned overlap-save convolution whose DFTs are matrix
  products, so the step uses no FFT, no random numbers and no Python control flow on data,
  and the same module is what :func:`export_runtime` writes as TorchScript or ONNX for a C++
  or plugin host. :class:`StreamingSynth` drives it from Python.
* :class:`StreamingFeatures` — f0 (CREPE on a sliding window, decoded by an online Viterbi
  filter: the best-scoring end state, no backtracking) and A-weighted loudness from audio
  arriving block by block.

Alignment and latency. Offline synthesis interpolates block ``t`` between control frames
``t`` and ``t + 1`` (f0 linearly, amplitudes with a raised-cosine crossfade), so block ``t``
can be rendered once frame ``t + 1`` is known: the synthesis path has an algorithmic latency
of exactly one hop, and streaming output sample ``n + hop`` equals offline sample ``n``
(step 0 returns silence). The noise filter's linear-phase delay (``n_bands - 1`` samples) is
part of the instrument's sound in both renderings, not extra latency. Feature extraction
needs half an analysis window of look-ahead (512 samples = 32 ms at 16 kHz) for a frame
centred on the current sample.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import core
from .audio_io import check_input_signal
from .decoder import hz_to_midi
from .features import (CREPE_SAMPLE_RATE, CREPE_WINDOW, FeatureConfig, bin_range,
                       cents_to_hz, crepe_runner, log_observations, normalise_frames,
                       refine_cents, viterbi_advance, viterbi_transitions)

STATE_NAMES = ("gru_state", "prev_controls", "phase", "noise_tail", "reverb_input",
               "reverb_spectra", "valid")


class SynthStep(nn.Module):
    """One hop of a trained model as a pure, exportable step function.

    ``forward(f0_hz, loudness_db, noise, gains, *state) -> (audio, *new_state)``

    Inputs (batch ``B``; ``H`` GRU width, ``K`` harmonics, ``N`` noise bands, ``hop`` samples
    per frame, ``R`` reverb taps, ``I = 2 (N - 1)`` noise-filter taps):
        f0_hz: [B, 1] the new frame's f0 in Hz.
        loudness_db: [B, 1] the new frame's A-weighted loudness in dB.
        noise: [B, hop] white noise in [-1, 1) for this block.
        gains: [B, 3] harmonic gain, noise gain, reverb mix (1 = as trained, 0 = dry).
        gru_state: [1, B, H].
        prev_controls: [B, 2 + K + N] the previous frame's f0, amplitude, harmonic
            distribution and noise magnitudes.
        phase: [B, 1] float64 oscillator phase (radians).
        noise_tail: [B, I - 1] noise-filter ring-out still to be added.
        reverb_input: [B, hop] the previous block's dry signal.
        reverb_spectra: [B, P, 2 (hop + 1)] spectra (real, imaginary) of the last ``P`` input
            blocks, ``P = ceil(R / hop)``: the frequency-domain delay line.
        valid: [B, 1] 0 before the first frame, 1 after (zero state = fresh stream).

    Returns:
        audio: [B, hop] block ``t - 1`` when frame ``t`` was given (zeros at the first step),
        and the new state, same names and shapes.
    """

    def __init__(self, model):
        super().__init__()
        if model.encoder is not None:
            raise ValueError("streaming needs a model without a z encoder")
        cfg = model.config.synth
        self.decoder = model.decoder
        self.synth = model.synth
        self.hop = cfg.hop
        self.sample_rate = float(cfg.sample_rate)
        self.n_harmonics = cfg.n_harmonics
        self.n_bands = cfg.n_noise_bands
        self.hidden = model.config.decoder.hidden
        self.register_buffer("loudness_mean_db", model.loudness_mean_db.detach().clone())
        self.register_buffer("loudness_std_db", model.loudness_std_db.detach().clone())
        with torch.no_grad():
            ir = model.synth.reverb.get_controls()["ir"].detach().float()  # [1, R]
            # The noise FIR is linear in the band magnitudes: taps = magnitudes @ basis.
            basis = core.frequency_sampling_fir(torch.eye(self.n_bands))  # [N, I]
        self.ir_size = ir.shape[1]
        self.fir_size = basis.shape[1]
        # Reverb by uniformly partitioned overlap-save convolution: the response is cut into
        # P blocks of hop taps; each is convolved with the input block of the same age in the
        # frequency domain (2 hop-point DFTs, done as matrix products so that the step has no
        # FFT and exports anywhere). Exact linear convolution, one hop of work per block.
        n = self.hop
        self.n_partitions = -(-self.ir_size // n)
        ir_padded = F.pad(ir[0].double(), (0, self.n_partitions * n - self.ir_size))
        parts = F.pad(ir_padded.reshape(self.n_partitions, n), (0, n))  # [P, 2n]
        t_idx = torch.arange(2 * n, dtype=torch.float64)
        f_idx = torch.arange(n + 1, dtype=torch.float64)
        ang = 2.0 * math.pi * t_idx[:, None] * f_idx[None, :] / (2 * n)  # [2n, n+1]
        dft = torch.cat([torch.cos(ang), -torch.sin(ang)], dim=1)  # x @ dft = [re, im]
        self.register_buffer("dft", dft.float())
        self.register_buffer("ir_spectra", (parts @ dft).float()[None])  # [1, P, 2(n+1)]
        # Inverse real DFT, only the last n output samples (the alias-free half).
        scale = torch.full((n + 1,), 2.0, dtype=torch.float64)
        scale[0] = scale[-1] = 1.0
        out_t = torch.arange(n, 2 * n, dtype=torch.float64)
        ang_i = 2.0 * math.pi * f_idx[:, None] * out_t[None, :] / (2 * n)  # [n+1, n]
        idft = torch.cat([scale[:, None] * torch.cos(ang_i),
                          -scale[:, None] * torch.sin(ang_i)], dim=0) / (2 * n)
        self.register_buffer("idft", idft.float())  # [2(n+1), n]
        self.register_buffer("fir_basis", basis.contiguous())
        self.register_buffer("harmonic_numbers",
                             torch.arange(1, self.n_harmonics + 1, dtype=torch.float32))
        frac = torch.arange(self.hop, dtype=torch.float64) / self.hop
        self.register_buffer("w_linear", frac[None])  # [1, hop] float64 (f0)
        self.register_buffer("w_hann", (0.5 - 0.5 * torch.cos(math.pi * frac)).float()[None])

    # ------------------------------------------------------------------ state
    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """The zero state of a fresh stream, in :data:`STATE_NAMES` order."""
        return (
            torch.zeros(1, batch, self.hidden),
            torch.zeros(batch, 2 + self.n_harmonics + self.n_bands),
            torch.zeros(batch, 1, dtype=torch.float64),
            torch.zeros(batch, self.fir_size - 1),
            torch.zeros(batch, self.hop),
            torch.zeros(batch, self.n_partitions, 2 * (self.hop + 1)),
            torch.zeros(batch, 1),
        )

    def decode(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor,
               gru_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 1] f0 and loudness -> (controls [B, 2 + K + N], new GRU state)."""
        f0 = f0_hz[:, :, None]
        f0_s = hz_to_midi(f0) / 127.0  # as DDSPModel.scale_inputs
        ld_s = (loudness_db[:, :, None] - self.loudness_mean_db) / self.loudness_std_db
        raw, gru_state = self.decoder(f0_s, ld_s, None, gru_state)
        c = self.synth.get_controls(f0, **raw)
        controls = torch.cat([c["f0_hz"], c["amplitude"], c["harmonic_distribution"],
                              c["magnitudes"]], dim=-1)[:, 0]
        return controls, gru_state

    def render_block(self, prev: torch.Tensor, new: torch.Tensor, noise: torch.Tensor,
                     gains: torch.Tensor, phase: torch.Tensor, noise_tail: torch.Tensor,
                     reverb_input: torch.Tensor, reverb_spectra: torch.Tensor,
                     valid: torch.Tensor):
        """Audio between frames ``prev`` and ``new`` ([B, 2 + K + N] controls): the block of
        frame ``prev``. Returns (audio [B, hop], phase, noise_tail, reverb_input,
        reverb_spectra)."""
        k_n = self.n_harmonics
        hop = self.hop
        # Oscillators: f0 linear across the block, phase accumulated in float64.
        w = self.w_linear
        f0_up = prev[:, 0:1].double() * (1.0 - w) + new[:, 0:1].double() * w  # [B, hop]
        inc = f0_up * (2.0 * math.pi / self.sample_rate)
        csum = torch.cumsum(inc, dim=1)
        two_pi = 2.0 * math.pi
        ph = torch.remainder(phase + csum - inc, two_pi)
        final_phase = torch.remainder(phase + csum[:, -1:], two_pi)
        # Harmonics at or above Nyquist are silenced per sample; the rest renormalised.
        n_below = torch.clamp(torch.ceil((self.sample_rate / 2.0) / f0_up.clamp_min(1e-12)) - 1.0,
                              0.0, float(k_n)).float()  # [B, hop]
        mask = (self.harmonic_numbers[None, None, :] <= n_below[:, :, None]).float()
        sines = torch.sin(ph.float()[:, :, None] * self.harmonic_numbers) * mask  # [B, hop, K]
        dists = torch.stack([prev[:, 2 : 2 + k_n], new[:, 2 : 2 + k_n]], dim=-1)  # [B, K, 2]
        mixed = torch.matmul(sines, dists)  # [B, hop, 2]
        norms = torch.matmul(mask, dists)
        wa = self.w_hann
        numer = mixed[..., 0] * (1.0 - wa) + mixed[..., 1] * wa
        denom = norms[..., 0] * (1.0 - wa) + norms[..., 1] * wa
        amp = prev[:, 1:2] * (1.0 - wa) + new[:, 1:2] * wa
        harmonic = numer / denom.clamp_min(1e-7) * amp
        # Filtered noise: this frame's linear-phase FIR, tail overlap-added into later blocks.
        taps = torch.matmul(prev[:, 2 + k_n :], self.fir_basis)  # [B, I]
        batch = noise.shape[0]
        t = self.fir_size - 1
        conv = F.conv1d(F.pad(noise, (t, t))[None], taps.flip(-1)[:, None], groups=batch)[0]
        acc = conv + F.pad(noise_tail, (0, hop))  # [B, hop + I - 1]
        dry = (gains[:, 0:1] * harmonic + gains[:, 1:2] * acc[:, :hop]) * valid
        # Reverb: partitioned overlap-save; newest input spectrum first in the delay line.
        spec = torch.matmul(torch.cat([reverb_input, dry], dim=1), self.dft)  # [B, 2(hop+1)]
        spectra = torch.cat([spec[:, None], reverb_spectra[:, :-1]], dim=1)  # [B, P, 2(hop+1)]
        f = hop + 1
        xr, xi = spectra[..., :f], spectra[..., f:]
        hr, hi = self.ir_spectra[..., :f], self.ir_spectra[..., f:]
        yr = (xr * hr - xi * hi).sum(dim=1)
        yi = (xr * hi + xi * hr).sum(dim=1)
        wet = torch.matmul(torch.cat([yr, yi], dim=1), self.idft)  # [B, hop]
        mix = gains[:, 2:3]
        audio = (1.0 - mix) * dry + mix * wet
        phase = torch.where(valid > 0.5, final_phase, phase)
        return audio, phase, acc[:, hop:] * valid, dry, spectra

    def forward(self, f0_hz, loudness_db, noise, gains, gru_state, prev_controls, phase,
                noise_tail, reverb_input, reverb_spectra, valid):
        controls, gru_state = self.decode(f0_hz, loudness_db, gru_state)
        audio, phase, noise_tail, reverb_input, reverb_spectra = self.render_block(
            prev_controls, controls, noise, gains, phase, noise_tail, reverb_input,
            reverb_spectra, valid)
        return (audio, gru_state, controls, phase, noise_tail, reverb_input, reverb_spectra,
                torch.ones_like(valid))


class StreamingSynth:
    """Python driver of :class:`SynthStep`: f0/loudness frames in, audio blocks out.

    ``process_frame`` returns one hop per frame, delayed by one hop (``latency_samples``);
    ``flush`` renders the last frame held, as offline rendering does at the end of a signal.
    """

    ENGINES = ("torch", "torchscript", "onnx")

    def __init__(self, model, harmonic_gain: float = 1.0, noise_gain: float = 1.0,
                 reverb_mix: float = 1.0, seed: int = 0, engine: str = "torch"):
        """``engine``: run the step eagerly (``torch``), traced (``torchscript``) or with
        onnxruntime (``onnx``, one intra-op thread); all three give the same audio."""
        if engine not in self.ENGINES:
            raise ValueError(f"engine must be one of {', '.join(self.ENGINES)}, got {engine!r}")
        self.step = SynthStep(model).eval()
        self.hop = self.step.hop
        self.sample_rate = int(self.step.sample_rate)
        self.latency_samples = self.hop
        self.gains = torch.tensor([[harmonic_gain, noise_gain, reverb_mix]], dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(seed)
        self.engine = engine
        self._run = self.step
        if engine == "torchscript":
            self._run = _trace(self.step)
        elif engine == "onnx":
            self._run = _onnx_runner(model)
        self.reset()

    def reset(self) -> None:
        self.state = self.step.initial_state(1)

    @torch.inference_mode()
    def process_frame(self, f0_hz: float, loudness_db: float,
                      noise: np.ndarray | None = None) -> np.ndarray:
        """One control frame -> [hop] float32 audio (the previous frame's block)."""
        if noise is None:
            noise_t = torch.rand(1, self.hop, generator=self.generator) * 2.0 - 1.0
        else:
            noise_t = torch.as_tensor(np.asarray(noise, np.float32)).reshape(1, self.hop)
        out = self._run(torch.tensor([[float(f0_hz)]]), torch.tensor([[float(loudness_db)]]),
                        noise_t, self.gains, *self.state)
        self.state = out[1:]
        return out[0][0].numpy()

    @torch.inference_mode()
    def flush(self, noise: np.ndarray | None = None) -> np.ndarray:
        """The last frame's block, held (no next frame): [hop] (empty before any frame)."""
        gru, prev, phase, ntail, rin, rspec, valid = self.state
        if float(valid[0, 0]) < 0.5:
            return np.zeros(0, np.float32)
        if noise is None:
            noise_t = torch.rand(1, self.hop, generator=self.generator) * 2.0 - 1.0
        else:
            noise_t = torch.as_tensor(np.asarray(noise, np.float32)).reshape(1, self.hop)
        audio, phase, ntail, rin, rspec = self.step.render_block(
            prev, prev, noise_t, self.gains, phase, ntail, rin, rspec, valid)
        self.state = (gru, prev, phase, ntail, rin, rspec, valid)
        return audio[0].numpy()

    def process_frames(self, f0_hz: np.ndarray, loudness_db: np.ndarray,
                       noise: np.ndarray | None = None) -> np.ndarray:
        """[n] frames -> [n * hop] audio, delayed by one hop (no flush).

        ``noise`` ([>= (n - 1) * hop]), if given, is the excitation of the rendered blocks:
        the call for frame ``i`` renders block ``i - 1`` with ``noise[(i - 1) * hop : i * hop]``
        (the first call renders nothing), so offline noise ``x`` gives offline audio when the
        stream is flushed with ``x[(n - 1) * hop : n * hop]``.
        """
        out = []
        hop = self.hop
        for i in range(len(f0_hz)):
            nz = None if noise is None else (np.zeros(hop, np.float32) if i == 0 else
                                             noise[(i - 1) * hop : i * hop])
            out.append(self.process_frame(f0_hz[i], loudness_db[i], nz))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class Frame:
    """One analysed frame: f0 in Hz, CREPE confidence, A-weighted loudness in dB."""

    f0_hz: float
    confidence: float
    loudness_db: float


class StreamingFeatures:
    """Causal f0 and loudness from audio arriving in blocks.

    Frame ``t`` (centred on sample ``t * hop``, like the offline grid) is emitted as soon as
    sample ``t * hop + window / 2 - 1`` has arrived: a look-ahead of ``latency_samples``.
    Loudness equals the offline :func:`ddsp_synth.features.compute_loudness` frame for
    frame; f0 uses the same CREPE model and bin refinement, decoded by an online Viterbi
    filter (best current end state, no backtracking), so it cannot use the future.

    Only models at 16 kHz (CREPE's rate) are supported here; others raise ValueError.
    """

    def __init__(self, config: FeatureConfig, crepe_model: str | None = None):
        if config.sample_rate != CREPE_SAMPLE_RATE:
            raise ValueError(f"streaming features need a 16 kHz model, this one is "
                             f"{config.sample_rate} Hz")
        self.config = config
        self.hop = config.hop
        self.crepe_model = crepe_model or config.crepe_model
        if config.loudness_n_fft != CREPE_WINDOW:
            raise ValueError("streaming features need loudness_n_fft == 1024")
        self.half = CREPE_WINDOW // 2
        self.latency_samples = self.half
        self.min_bin, self.max_bin = bin_range(config.f0_min_hz, config.f0_max_hz)
        self.offsets, self.trans_to = viterbi_transitions()
        self._crepe = crepe_runner(self.crepe_model, threads=1)  # one core, as live
        self.reset()

    def reset(self) -> None:
        self.buffer = np.zeros(self.half, np.float32)  # zero padding before the start
        self.next_frame = 0
        self.consumed = 0  # samples dropped from the front of the buffer
        self.score = None
        self.total_in = 0

    @torch.inference_mode()
    def _frame(self, window: np.ndarray) -> Frame:
        x = torch.from_numpy(window)[None]
        # The offline loudness, on the one frame centred in this window (frame 1 at hop n/2).
        loud = float(core.a_weighted_loudness(x, self.config.sample_rate, CREPE_WINDOW // 2,
                                              CREPE_WINDOW)[0, 1, 0])
        act = self._crepe(normalise_frames(x).numpy())[0].astype(np.float64)
        log_obs = log_observations(act, self.min_bin, self.max_bin)
        if self.score is None:
            self.score = log_obs.copy()
        else:
            self.score, _ = viterbi_advance(self.score, log_obs, self.offsets, self.trans_to)
            self.score -= np.max(self.score[np.isfinite(self.score)])  # keep it bounded
        b = int(np.argmax(self.score))
        cents = refine_cents(act[None], np.array([b]), self.min_bin, self.max_bin)[0]
        return Frame(float(cents_to_hz(cents)), float(act[b]), loud)

    def push(self, audio: np.ndarray) -> list[Frame]:
        """Append samples; return the frames that became complete (oldest first)."""
        audio = np.asarray(audio, np.float32)
        self.total_in += len(audio)
        self.buffer = np.concatenate([self.buffer, audio])
        frames = []
        while True:
            start = self.next_frame * self.hop - self.consumed  # window start in buffer
            if start + CREPE_WINDOW > len(self.buffer):
                break
            frames.append(self._frame(self.buffer[start : start + CREPE_WINDOW]))
            self.next_frame += 1
        drop = max(0, self.next_frame * self.hop - self.consumed)
        drop = min(drop, len(self.buffer))
        self.buffer = self.buffer[drop:]
        self.consumed += drop
        return frames

    def finish(self) -> list[Frame]:
        """Frames still waiting for look-ahead at the end of a signal (zero padded), so
        that a whole signal gives ``ceil(n_samples / hop)`` frames like offline analysis."""
        n_frames = core.n_frames_for(self.total_in, self.hop)
        first = self.next_frame
        if first >= n_frames:
            return []
        total_in = self.total_in
        frames = self.push(np.zeros(self.half + self.hop, np.float32))
        self.total_in = total_in
        return frames[: n_frames - first]


# ----------------------------------------------------------------------------- export
def example_inputs(step: SynthStep, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Plausible inputs for tracing and for checking an exported step."""
    gen = torch.Generator().manual_seed(seed)
    f0 = 220.0 + 200.0 * torch.rand(batch, 1, generator=gen)
    loud = -30.0 + 10.0 * torch.rand(batch, 1, generator=gen)
    noise = torch.rand(batch, step.hop, generator=gen) * 2 - 1
    gains = torch.tensor([[1.0, 1.0, 1.0]]).repeat(batch, 1)
    return (f0, loud, noise, gains, *step.initial_state(batch))


INPUT_NAMES = ["f0_hz", "loudness_db", "noise", "gains", *STATE_NAMES]
OUTPUT_NAMES = ["audio", *[f"new_{n}" for n in STATE_NAMES]]


def _trace(step: SynthStep):
    """TorchScript of the step (shape checks inside nn.GRU are traced as constants, which is
    right here: a step always has one frame)."""
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(step, example_inputs(step), check_trace=False)


def export_runtime(model, path: str | os.PathLike, fmt: str) -> Path:
    """Write the streaming step of ``model`` as TorchScript (``.pt``) or ONNX (``.onnx``).

    The file takes and returns ``INPUT_NAMES`` / ``OUTPUT_NAMES`` (see :class:`SynthStep`);
    a host keeps the returned state and passes it to the next call. Written atomically.
    """
    from .audio_io import atomic_write_bytes

    step = SynthStep(model).eval()
    args = example_inputs(step)
    path = Path(path)
    if fmt == "torchscript":
        traced = _trace(step)
        atomic_write_bytes(path, lambda tmp: torch.jit.save(traced, tmp))
    elif fmt == "onnx":
        import warnings

        def write(tmp):
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(step, args, tmp, input_names=INPUT_NAMES,
                                  output_names=OUTPUT_NAMES, opset_version=18, dynamo=False)
        atomic_write_bytes(path, write)
    else:
        raise ValueError(f"format must be 'torchscript' or 'onnx', got {fmt!r}")
    return path


def _onnx_runner(model):
    """A callable like :class:`SynthStep` that runs the exported ONNX graph."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_runtime(model, Path(tmp) / "step.onnx", "onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(*inputs):
        feed = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)}
        return tuple(torch.from_numpy(o) for o in session.run(None, feed))

    return run


@dataclass(frozen=True)
class LiveOptions:
    """Per-frame adjustments that need no look at the whole input (unlike auto-adjust).

    Attributes:
        pitch_shift_semitones: added to every frame's pitch.
        loudness_shift_db: added to every frame's loudness.
        gate_db: frames quieter than this (input loudness, dB) are muted.
        min_confidence: frames with a lower CREPE confidence (breaths, consonants) are muted.
    """

    pitch_shift_semitones: float = 0.0
    loudness_shift_db: float = 0.0
    gate_db: float = -60.0
    min_confidence: float = 0.5


def live_frame(frame: Frame, options: LiveOptions) -> tuple[float, float]:
    """(f0_hz, loudness_db) for the synthesizer from an analysed frame."""
    f0 = frame.f0_hz * 2.0 ** (options.pitch_shift_semitones / 12.0)
    loud = frame.loudness_db + options.loudness_shift_db
    if frame.loudness_db < options.gate_db or frame.confidence < options.min_confidence:
        loud = -120.0
    return f0, loud


class LiveEngine:
    """Audio in, instrument out, block by block: :class:`StreamingFeatures` ->
    :func:`live_frame` -> :class:`StreamingSynth`, every state carried.

    ``process(block)`` returns the audio completed by that block (one hop per new frame:
    exactly ``len(block)`` samples when blocks are whole hops) and records the time spent in
    features and synthesis. Output lags input by ``latency_samples`` (feature look-ahead +
    one hop), plus whatever block buffering the host adds.
    """

    def __init__(self, model, options: LiveOptions = LiveOptions(), engine: str = "onnx",
                 crepe_model: str | None = None, seed: int = 0):
        self.features = StreamingFeatures(model.config.features, crepe_model)
        self.synth = StreamingSynth(model, seed=seed, engine=engine)
        self.options = options
        self.sample_rate = self.synth.sample_rate
        self.latency_samples = self.features.latency_samples + self.synth.latency_samples
        self.times_features: list[float] = []
        self.times_synthesis: list[float] = []

    def reset(self) -> None:
        self.features.reset()
        self.synth.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        frames = self.features.push(block)
        t1 = time.perf_counter()
        out = [self.synth.process_frame(*live_frame(fr, self.options)) for fr in frames]
        t2 = time.perf_counter()
        self.times_features.append(t1 - t0)
        self.times_synthesis.append(t2 - t1)
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def stream_audio(model, audio: np.ndarray, block_samples: int, options: LiveOptions = LiveOptions(),
                 engine: str = "torch", crepe_model: str | None = None, seed: int = 0,
                 progress=None) -> tuple[np.ndarray, dict]:
    """Simulate live use: feed ``audio`` to a :class:`LiveEngine` in blocks, as a sound card
    would, and time each block.

    ``progress`` (e.g. tqdm) is advanced by one per block.

    Returns:
        output audio [len(audio)] (delayed by the total algorithmic latency, as live), and a
        report: per-block compute times (features, synthesis, total; median and p99 in ms),
        the block length and the algorithmic latency of each stage in ms.
    """
    audio = check_input_signal(audio)
    live = LiveEngine(model, options, engine, crepe_model, seed)
    features, synth = live.features, live.synth
    sr = live.sample_rate
    out = []
    for start in range(0, len(audio), block_samples):
        out.append(live.process(audio[start : start + block_samples]))
        if progress is not None:
            progress.update(1)
    y = np.concatenate(out) if out else np.zeros(0, np.float32)
    y = np.pad(y, (0, max(0, len(audio) - len(y))))[: len(audio)]
    t_feat = np.array(live.times_features) * 1e3
    t_synth = np.array(live.times_synthesis) * 1e3
    total = t_feat + t_synth
    block_ms = 1e3 * block_samples / sr

    def stats(x):
        return {"median_ms": float(np.median(x)), "p99_ms": float(np.percentile(x, 99)),
                "max_ms": float(np.max(x))}

    report = {
        "engine": engine,
        "pitch_model": features.crepe_model,
        "blocks": len(total),
        "block_ms": block_ms,
        "hop_ms": 1e3 * synth.hop / sr,
        "compute_features": stats(t_feat),
        "compute_synthesis": stats(t_synth),
        "compute_total": stats(total),
        "late_blocks": int(np.sum(total > block_ms)),
        "latency_ms": {
            "features_lookahead": 1e3 * features.latency_samples / sr,
            "synthesis": 1e3 * synth.latency_samples / sr,
            "block_buffer": block_ms,
        },
    }
    lat = report["latency_ms"]
    lat["total"] = lat["features_lookahead"] + lat["synthesis"] + lat["block_buffer"]
    return y.astype(np.float32), report
