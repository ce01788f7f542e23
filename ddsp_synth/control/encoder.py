"""The controller's ears: log-mel frames and a small convolutional encoder over time.

Frames sit on the chain's frame grid (frame ``t`` centred on sample ``t * hop``, 10 ms), so
a per-frame controller's outputs are the chain's automation frames one for one. The
log-mel values keep the absolute level (dB re full scale, no per-clip normalisation):
the settings of a compressor or an output gain depend on it.

:class:`Encoder` is a 1x1 projection of the mel bands followed by residual blocks of
dilated, non-causal convolutions over time (each block: channel LayerNorm, GELU, dilated
conv, GELU, 1x1 conv; normalised per frame, never across time, which would remove the
level). :func:`pool` and :func:`pool_mel` turn a clip into one vector (what a per-clip head
and every reference use) over its active frames (:func:`active_frames`): the learned
features' mean and standard deviation, the long-term average spectrum and the mean log-mel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..dsp.spectral import magnitude_spectrogram
from .config import ControllerConfig

POWER_FLOOR = 1e-10  # -100 dB: silence
DB_SCALE = 20.0  # log-mel dB / 20: about [-5, 1] for audio within full scale
GATE_DB = 40.0  # frames this far below a clip's loudest are pauses: not pooled
# signals longer than this are analysed in pieces (the frames are the same; memory is not)
CHUNK_FRAMES = 6000


class LogMel(nn.Module):
    """[batch, n_samples] -> [batch, n_mels, 1 + n_samples // hop] log-mel power / 20 dB.

    Frame ``t`` is a Hann window of ``n_fft`` centred on sample ``t * hop`` (zero-padded at
    the ends); long signals are analysed ``CHUNK_FRAMES`` frames at a time with the same
    result.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        super().__init__()
        import librosa

        self.n_fft, self.hop = n_fft, hop
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=20.0,
                                  fmax=sample_rate / 2)
        # the one-sided power of a full-scale sine through the periodic Hann window (whose
        # sum is n_fft / 2): about 0 dB at full scale
        ref = (n_fft / 2) ** 2 / 4.0
        # from_numpy: a CPU tensor even on the meta device a controller file's shapes are
        # checked on (torch.tensor there imports torch's compiler, about a second)
        self.register_buffer("mel", torch.from_numpy(mel.astype("float32")) / ref,
                             persistent=False)

    def _frames(self, audio: torch.Tensor) -> torch.Tensor:
        mag = magnitude_spectrogram(audio, self.n_fft, self.hop)
        power = torch.matmul(self.mel, mag.square())
        return 10.0 * torch.log10(power + POWER_FLOOR) / DB_SCALE

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_frames = 1 + audio.shape[1] // self.hop
        if n_frames <= CHUNK_FRAMES:
            return self._frames(audio)
        half = self.n_fft // 2
        padded = F.pad(audio, (half, half))
        pieces = []
        for t0 in range(0, n_frames, CHUNK_FRAMES):
            t1 = min(n_frames, t0 + CHUNK_FRAMES)
            # frames t0..t1-1 need padded samples [t0 * hop, (t1 - 1) * hop + n_fft)
            piece = padded[:, t0 * self.hop : (t1 - 1) * self.hop + self.n_fft]
            frames = piece.unfold(1, self.n_fft, self.hop)  # [B, t1 - t0, n_fft]
            window = torch.hann_window(self.n_fft, dtype=audio.dtype, device=audio.device)
            mag = torch.fft.rfft(frames * window, dim=-1).abs().transpose(1, 2)
            pieces.append(10.0 * torch.log10(torch.matmul(self.mel, mag.square())
                                             + POWER_FLOOR) / DB_SCALE)
        return torch.cat(pieces, -1)


class _FrameNorm(nn.LayerNorm):
    """LayerNorm over the channels of each frame ([batch, channels, n_frames]): frames
    are not mixed, so a loud and a quiet passage keep their difference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _Block(nn.Module):
    """Residual block: LayerNorm over channels, GELU, dilated conv, GELU, 1x1 conv."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.norm = _FrameNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(F.gelu(self.norm(x)))))


class Encoder(nn.Module):
    """Audio -> features per frame: the learned ones and the log-mel frames themselves.

    ``forward(audio [batch, n_samples]) -> ([batch, channels, T], [batch, n_mels, T])`` with
    ``T = 1 + n_samples // hop``. The log-mel frames go to the head as they are (levels in
    dB re full scale, the spectral balance): what an EQ and a gain are set from.
    """

    def __init__(self, config: ControllerConfig, hop: int):
        super().__init__()
        self.frontend = LogMel(config.sample_rate, config.n_fft, hop, config.n_mels)
        self.project = nn.Conv1d(config.n_mels, config.channels, 1)
        self.blocks = nn.ModuleList([_Block(config.channels, config.kernel_size, d)
                                     for d in config.dilations])
        self.out_norm = _FrameNorm(config.channels)

    @property
    def receptive_field_frames(self) -> int:
        return 1 + sum((b.conv.kernel_size[0] - 1) * b.conv.dilation[0] for b in self.blocks)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel = self.frontend(audio)
        x = self.project(mel)
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x), mel


def active_frames(mel: torch.Tensor, gate_db: float = GATE_DB) -> torch.Tensor:
    """[batch, n_mels, T] log-mel -> [batch, T] float mask of the frames within ``gate_db`` of
    the clip's loudest (its pauses and silence left out: an input and a reference taken from
    different parts of a recording pause differently, and must still read as one level)."""
    k = DB_SCALE / 10.0 * math.log(10.0)  # log-mel units -> natural log of power
    frame_db = 10.0 / math.log(10.0) * torch.logsumexp(k * mel, 1)  # the bands' power, dB
    loudest = frame_db.max(-1, keepdim=True).values
    return (frame_db > loudest - gate_db).to(mel.dtype)


def pool(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[batch, channels, T] -> [batch, 2 * channels]: mean and standard deviation over the
    frames of ``mask`` ([batch, T], 1 = counted)."""
    w = mask[:, None] / mask.sum(-1).clamp_min(1.0)[:, None, None]
    mean = (features * w).sum(-1)
    var = ((features - mean[..., None]).square() * w).sum(-1)
    return torch.cat([mean, var.add(1e-6).sqrt()], -1)


def pool_mel(mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[batch, n_mels, T] log-mel -> [batch, 2 * n_mels]: the long-term average spectrum
    (power averaged over the active frames, in the log-mel's units) and the mean of the
    log-mel over them (their difference says how much the level moves)."""
    w = mask[:, None] / mask.sum(-1).clamp_min(1.0)[:, None, None]
    k = DB_SCALE / 10.0 * math.log(10.0)  # log-mel units -> natural log of power
    ltas = torch.log((torch.exp(k * mel) * w).sum(-1).clamp_min(POWER_FLOOR)) / k
    return torch.cat([ltas, (mel * w).sum(-1)], -1)
