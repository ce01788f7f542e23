"""Neural proxies: a TCN conditioned on the device parameters (FiLM) that imitates a device.

The proxy learns ``y = h(x, p)`` from the device's own input/output pairs over random
parameters (Steinmetz et al. 2021, 2022): causal dilated 1-D convolutions over the audio,
each block's features scaled and shifted (FiLM) by an MLP of the normalised parameters, and
an output head that predicts a per-sample gain and an additive term, ``y = x * (1 + g) + r``,
zero-initialised so that an untrained proxy is the identity. Devices that only scale each
sample (a compressor: a slowly varying gain; a waveshaper: a gain that depends on the current
sample) use the gain alone, ``y = x * exp(s)``: silence stays silent, which the log-magnitude
part of the loss and of the accuracy measure are very sensitive to.

A proxy directory holds ``proxy.safetensors`` (weights) and ``proxy.json`` (format version,
device, sample rate, declared parameters, architecture, training summary, held-out accuracy,
tensor shapes and the weights' SHA-256): it describes itself and loads without pickle; a
missing, damaged or mismatched file gives a one-line :class:`ProxyFileError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio_io import AudioError, atomic_write_bytes, check_output_folder
from ..effects.params import Param, denormalise
from .metrics import mr_log_distance

PROXY_FORMAT = "ddsp_synth.proxy"
PROXY_FORMAT_VERSION = 1
PROXY_WEIGHTS = "proxy.safetensors"
PROXY_CONFIG = "proxy.json"
MAX_CONFIG_BYTES = 1 << 20
MAX_PROXY_PARAMETERS = 5_000_000
OUTPUT_MODES = ("gain_residual", "gain")
MAX_LOG_GAIN = 8.0  # |log gain| bound of the "gain" output: +-70 dB


class ProxyFileError(Exception):
    """A proxy file is missing, damaged or does not match its description (one line)."""


@dataclass(frozen=True)
class ProxyConfig:
    """Architecture of a proxy TCN.

    Attributes:
        channels: feature channels of every block.
        kernel_size: taps of each dilated convolution.
        dilations: one block per dilation; the receptive field is
            ``1 + (kernel_size - 1) * sum(dilations)`` samples.
        film_hidden: width of the MLP that maps parameters to FiLM scales and shifts.
        output: ``"gain_residual"`` (``y = x * (1 + g) + r``, any device) or ``"gain"``
            (``y = x * exp(s)``: for devices that only scale the signal sample by sample,
            compressors and waveshapers, so silence stays silent and the level is learned in
            the log domain).
        frame_hop: 1 runs the TCN at the sample rate on the waveform. A larger hop (``"gain"``
            output only) runs it on frames of ``frame_hop`` samples, whose peak and RMS levels
            (log) are its input, and interpolates the log gain back to the sample rate: the
            compressor's gain is slow, so this is about ``frame_hop`` times cheaper and its
            gain has no audio-rate ripple (which the log spectrum would show as noise). The
            receptive field is then counted in frames.
    """

    channels: int = 16
    kernel_size: int = 13
    dilations: tuple[int, ...] = (1, 8, 64, 512)
    film_hidden: int = 64
    output: str = "gain_residual"
    frame_hop: int = 1

    def __post_init__(self):
        for name in ("channels", "kernel_size", "film_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                raise ValueError(f"{name} must be an integer in [1, 4096], got {v!r}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}, got {self.output!r}")
        if isinstance(self.frame_hop, bool) or not isinstance(self.frame_hop, int) \
                or not 1 <= self.frame_hop <= 4096:
            raise ValueError(f"frame_hop must be an integer in [1, 4096], got {self.frame_hop!r}")
        if self.frame_hop > 1 and self.output != "gain":
            raise ValueError("frame_hop > 1 needs output='gain'")
        if not self.dilations or len(self.dilations) > 64 or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 16
                for d in self.dilations):
            raise ValueError(f"dilations must be 1 to 64 integers in [1, 65536], got "
                             f"{self.dilations!r}")

    @property
    def receptive_field(self) -> int:
        """In samples."""
        return (1 + (self.kernel_size - 1) * sum(self.dilations)) * self.frame_hop


class _Block(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, h, scale, shift):
        z = self.conv(F.pad(h, (self.pad, 0)))
        z = F.leaky_relu(z * scale[..., None] + shift[..., None], 0.2)
        return h + self.mix(z)


class ProxyTCN(nn.Module):
    """``proxy(audio [batch, n_samples], params01 [batch, P]) -> [batch, n_samples]``.

    Causal when ``frame_hop == 1``: output sample n depends on input samples
    ``n - receptive_field + 1 .. n``, and the start is zero-padded, as a device reset before
    the call sees silence. With ``frame_hop > 1`` the gain of frame t (samples ``t*hop ..
    (t+1)*hop - 1``) is interpolated between frame centres, so a sample may see up to about
    1.5 hops ahead: the proxy can anticipate an attack by that much, the device cannot.
    """

    def __init__(self, n_params: int, config: ProxyConfig = ProxyConfig()):
        super().__init__()
        self.n_params = n_params
        self.config = config
        c = config.channels
        self.inp = nn.Conv1d(1 if config.frame_hop == 1 else 2, c, 1)
        self.blocks = nn.ModuleList(_Block(c, config.kernel_size, d) for d in config.dilations)
        self.film = nn.Sequential(nn.Linear(n_params, config.film_hidden), nn.ReLU(),
                                  nn.Linear(config.film_hidden, 2 * c * len(config.dilations)))
        self.out = nn.Conv1d(c, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, audio: torch.Tensor, params01: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 2 or params01.shape != (audio.shape[0], self.n_params):
            raise ValueError(f"proxy expects audio [batch, n] and params [batch, "
                             f"{self.n_params}], got {tuple(audio.shape)} and "
                             f"{tuple(params01.shape)}")
        c, n_blocks = self.config.channels, len(self.blocks)
        film = self.film(params01).view(audio.shape[0], n_blocks, 2, c)
        hop = self.config.frame_hop
        h = self.inp(audio[:, None] if hop == 1 else self._frame_features(audio))
        for i, block in enumerate(self.blocks):
            h = block(h, 1.0 + film[:, i, 0], film[:, i, 1])
        g, r = self.out(h).unbind(1)
        if hop > 1:
            # Frame t covers samples [t*hop, (t+1)*hop); its gain sits at the frame's centre.
            g = F.interpolate(g[:, None], scale_factor=hop, mode="linear",
                              align_corners=False)[:, 0, : audio.shape[1]]
        if self.config.output == "gain":
            return audio * torch.exp(g.clamp(-MAX_LOG_GAIN, MAX_LOG_GAIN))
        return audio * (1.0 + g) + r

    def _frame_features(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, n] -> [batch, 2, n_frames]: log peak and log RMS level of each frame."""
        hop = self.config.frame_hop
        pad = (-audio.shape[1]) % hop
        frames = F.pad(audio, (0, pad)).reshape(audio.shape[0], -1, hop)
        peak = frames.abs().amax(-1)
        rms = frames.square().mean(-1).sqrt()
        return torch.log(torch.stack([peak, rms], 1) + 1e-5)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class Proxy:
    """A loaded proxy: the network plus what it imitates.

    Attributes:
        model: the :class:`ProxyTCN` (eval mode).
        device_name: the device it imitates.
        sample_rate: Hz it was trained at.
        params: the device's declared parameters, in the order the network takes them.
        meta: everything ``proxy.json`` says (training, accuracy).
    """

    model: ProxyTCN
    device_name: str
    sample_rate: int
    params: tuple[Param, ...]
    meta: dict = field(default_factory=dict)

    def __call__(self, audio: torch.Tensor, params01: torch.Tensor) -> torch.Tensor:
        return self.model(audio, params01)


# --------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_proxy(proxy: Proxy, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write ``proxy.safetensors`` then ``proxy.json`` atomically into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    for name in (PROXY_WEIGHTS, PROXY_CONFIG):
        if (out_dir / name).exists() and not force:
            raise ProxyFileError(f"{out_dir / name} exists; pass --force to overwrite it")
    tensors = {k: v.detach().cpu().contiguous() for k, v in proxy.model.state_dict().items()}
    atomic_write_bytes(out_dir / PROXY_WEIGHTS, lambda tmp: save_file(tensors, tmp))
    meta = dict(proxy.meta)
    meta.update({
        "format": PROXY_FORMAT,
        "format_version": PROXY_FORMAT_VERSION,
        "device": proxy.device_name,
        "sample_rate": proxy.sample_rate,
        "params": [p.to_dict() for p in proxy.params],
        "architecture": {**asdict(proxy.model.config),
                         "receptive_field_samples": proxy.model.config.receptive_field},
        "n_parameters": proxy.model.n_parameters(),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "weights_sha256": _sha256(out_dir / PROXY_WEIGHTS),
    })
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write_bytes(out_dir / PROXY_CONFIG, lambda tmp: Path(tmp).write_text(text))
    return out_dir


def read_proxy_config(proxy_dir: str | os.PathLike) -> dict:
    """``proxy.json`` of a proxy directory, checked; ProxyFileError (one line) otherwise."""
    proxy_dir = Path(proxy_dir)
    path = proxy_dir / PROXY_CONFIG
    if not proxy_dir.is_dir():
        raise ProxyFileError(f"{proxy_dir}: no such proxy folder")
    if not path.is_file():
        raise ProxyFileError(f"{proxy_dir}: missing {PROXY_CONFIG}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ProxyFileError(f"{path}: larger than 1 MiB, not a proxy description")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ProxyFileError(f"{path}: damaged JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != PROXY_FORMAT:
        raise ProxyFileError(f"{path}: not a ddsp_synth proxy description")
    if meta.get("format_version") != PROXY_FORMAT_VERSION:
        raise ProxyFileError(f"{path}: proxy format version {meta.get('format_version')!r} is "
                             f"not supported (this ddsp_synth reads {PROXY_FORMAT_VERSION})")
    return meta


def load_proxy(proxy_dir: str | os.PathLike) -> Proxy:
    """Load a proxy directory without pickle; every field is checked before allocating."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    proxy_dir = Path(proxy_dir)
    meta = read_proxy_config(proxy_dir)
    path = proxy_dir / PROXY_CONFIG
    try:
        params = tuple(Param.from_dict(p) for p in meta["params"])
        arch = {k: v for k, v in meta["architecture"].items() if k != "receptive_field_samples"}
        config = ProxyConfig(**{**arch, "dilations": tuple(arch["dilations"])})
        sample_rate = meta["sample_rate"]
        device_name = meta["device"]
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) \
                or not 1000 <= sample_rate <= 384000:
            raise ValueError(f"bad sample_rate {sample_rate!r}")
        if not isinstance(device_name, str) or not params:
            raise ValueError("missing device name or parameters")
    except Exception as err:  # KeyError, TypeError, ValueError, DeviceError
        raise ProxyFileError(f"{path}: invalid proxy description ({_one_line(err)})") from None
    c, k, n = config.channels, config.kernel_size, len(config.dilations)
    if config.frame_hop > 1 and config.output != "gain":
        raise ProxyFileError(f"{path}: frame_hop needs the gain output")
    size = n * (c * c * k + c * c + 2 * c) + config.film_hidden * (len(params) + 2 * c * n)
    if size > MAX_PROXY_PARAMETERS:
        raise ProxyFileError(f"{path}: architecture of about {size} parameters exceeds the "
                             f"{MAX_PROXY_PARAMETERS} limit")
    weights = proxy_dir / PROXY_WEIGHTS
    if not weights.is_file():
        raise ProxyFileError(f"{proxy_dir}: missing {PROXY_WEIGHTS}")
    expected_sha = meta.get("weights_sha256")
    if expected_sha and _sha256(weights) != expected_sha:
        raise ProxyFileError(f"{weights}: checksum does not match {PROXY_CONFIG} (damaged file)")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ProxyFileError(f"{weights}: damaged or truncated weights ({_one_line(err)})") \
            from None
    model = ProxyTCN(len(params), config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if set(tensors) != set(expected) or any(tuple(tensors[k].shape) != s
                                            for k, s in expected.items()):
        raise ProxyFileError(f"{weights}: tensors do not match the architecture in "
                             f"{PROXY_CONFIG}")
    model.load_state_dict(tensors)
    model.eval()
    return Proxy(model, device_name, sample_rate, params, meta)


def _one_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def proxies_dir() -> Path:
    """Shipped proxies: $DDSP_SYNTH_PROXIES, else ``models/proxies/`` of the checkout."""
    env = os.environ.get("DDSP_SYNTH_PROXIES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models" / "proxies"


def find_proxy(device_name: str, sample_rate: int,
               extra_dirs: list[str | os.PathLike] = ()) -> Path | None:
    """Folder of a proxy for ``device_name`` at ``sample_rate``: ``DIR/<device_name>/`` in
    ``extra_dirs`` (first), then the shipped ones; a directory that is itself a proxy of that
    device counts too. None when there is none."""
    for root in [Path(d) for d in extra_dirs] + [proxies_dir()]:
        for cand in (root, root / device_name):
            if (cand / PROXY_CONFIG).is_file():
                try:
                    meta = read_proxy_config(cand)
                except ProxyFileError:
                    continue
                if meta.get("device") == device_name and meta.get("sample_rate") == sample_rate:
                    return cand
    return None


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyTrainConfig:
    """How a proxy is trained.

    Attributes:
        segment_seconds: length of each training example.
        batch_size: examples per step (fresh device outputs every step).
        learning_rate: Adam's peak rate, cosine-decayed to ``final_lr_fraction`` of it.
        final_lr_fraction: end of the cosine schedule, relative to ``learning_rate``.
        level_db_range: input peak level drawn uniformly in this range (dBFS), so level-
            dependent devices (compressor, distortion) see every regime.
        held_out_examples: examples of held-out audio and parameters for the accuracy report.
        held_out_seconds: length of each held-out example.
        fft_sizes: FFT sizes of the spectral part of the training loss.
        waveform_weight: weight of the mean absolute waveform error in the loss.
    """

    segment_seconds: float = 0.5
    batch_size: int = 8
    learning_rate: float = 3e-3
    final_lr_fraction: float = 0.03
    level_db_range: tuple[float, float] = (-36.0, 0.0)
    held_out_examples: int = 48
    held_out_seconds: float = 1.0
    fft_sizes: tuple[int, ...] = (1024, 512, 256, 128, 64)
    waveform_weight: float = 10.0


class AudioSource:
    """Random segments of training audio, with a held-out tail of each file.

    Files are the shared recordings (``/work/shared/data/train/*.flac`` next to the checkout)
    unless paths are given; without any, harmonic tones with envelopes and noise bursts are
    synthesised, so training runs anywhere.
    """

    HELD_OUT_SECONDS = 20.0

    def __init__(self, sample_rate: int, paths: list[str | os.PathLike] | None = None,
                 seed: int = 0):
        from ..audio_io import load_audio

        self.sample_rate = sample_rate
        self.rng = np.random.default_rng(seed)
        if paths is None:
            root = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"
            paths = sorted(root.glob("*.flac")) if root.is_dir() else []
        self.paths = [str(p) for p in paths]
        self.train, self.held = [], []
        for p in self.paths:
            audio = load_audio(p, sample_rate)
            cut = max(len(audio) // 2, len(audio) - int(self.HELD_OUT_SECONDS * sample_rate))
            self.train.append(audio[:cut])
            self.held.append(audio[cut:])

    def _synthetic(self, n: int, rng) -> np.ndarray:
        t = np.arange(n) / self.sample_rate
        f0 = rng.uniform(80, 800)
        y = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k ** rng.uniform(0.5, 2)
                for k in range(1, 12) if k * f0 < self.sample_rate / 2)
        y = y + rng.uniform(0, 0.5) * rng.standard_normal(n)
        env = np.interp(t, np.linspace(0, t[-1] + 1e-9, 6), rng.uniform(0, 1, 6) ** 2)
        return (y * env).astype(np.float32)

    def segment(self, n_samples: int, held_out: bool = False, rng=None) -> np.ndarray:
        """[n_samples] float32 segment, peak-normalised to 1 (silence-free where possible)."""
        rng = rng or self.rng
        pool = self.held if held_out else self.train
        for _ in range(20):
            if pool:
                audio = pool[rng.integers(len(pool))]
                if len(audio) <= n_samples:
                    x = np.pad(audio, (0, n_samples - len(audio)))
                else:
                    start = rng.integers(len(audio) - n_samples)
                    x = audio[start : start + n_samples]
            else:
                x = self._synthetic(n_samples, rng)
            peak = float(np.abs(x).max())
            if peak > 1e-3:
                return (x / peak).astype(np.float32)
        return self._synthetic(n_samples, rng) / 1.0

    def batch(self, batch: int, n_samples: int, level_db_range, held_out=False, rng=None):
        """[batch, n_samples] segments at random peak levels (dBFS) in ``level_db_range``."""
        rng = rng or self.rng
        lo, hi = level_db_range
        x = np.stack([self.segment(n_samples, held_out, rng) for _ in range(batch)])
        gains = 10.0 ** (rng.uniform(lo, hi, size=(batch, 1)) / 20.0)
        return (x * gains).astype(np.float32)


def proxy_loss(pred: torch.Tensor, target: torch.Tensor, config: ProxyTrainConfig):
    from ..losses import SpectralLossConfig, multi_resolution_stft_loss

    spec = multi_resolution_stft_loss(pred, target, SpectralLossConfig(fft_sizes=config.fft_sizes))
    return spec + config.waveform_weight * (pred - target).abs().mean()


def evaluate_proxy(proxy: Proxy, pool, source: AudioSource, config: ProxyTrainConfig,
                   seed: int = 12345, twin=None) -> dict:
    """Accuracy of a proxy against the real device on held-out audio and parameters.

    Returns:
        ``rel_spec`` (median of MR log-magnitude distance(proxy, device) / distance(dry,
        device)), ``snr_db`` (median waveform SNR of the proxy against the device), their
        worst cases, and, when the device has a twin, ``grad_cosine``: median cosine between
        the parameter gradient of a spectral matching loss through the proxy and the exact
        one through the twin (what ``proxy``/``hybrid`` matching relies on).
    """
    rng = np.random.default_rng(seed)
    n = int(config.held_out_seconds * proxy.sample_rate)
    k = config.held_out_examples
    x = source.batch(k, n, config.level_db_range, held_out=True, rng=rng)
    u = rng.uniform(size=(k, len(proxy.params)))
    y = pool.process(x, denormalise(proxy.params, u))
    xt, yt, ut = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(u).float()
    with torch.no_grad():
        yp = proxy(xt, ut)
        dist = mr_log_distance(yp, yt).numpy()
        dist_dry = mr_log_distance(xt, yt).numpy()
        err = (yp - yt).square().sum(1)
        snr = (10 * torch.log10(yt.square().sum(1).clamp_min(1e-12) / err.clamp_min(1e-12)))
        snr = snr.numpy()
    report = {
        "held_out_examples": k,
        "held_out_seconds": config.held_out_seconds,
        "spec_distance_median": float(np.median(dist)),
        "spec_distance_worst": float(np.max(dist)),
        "spec_distance_dry_median": float(np.median(dist_dry)),
        "rel_spec": float(np.median(dist) / max(float(np.median(dist_dry)), 1e-8)),
        "snr_db_median": float(np.median(snr)),
        "snr_db_worst": float(np.min(snr)),
    }
    if twin is not None:
        from ..losses import multi_resolution_stft_loss

        # Target with other parameters; compare d loss / d params at u through both models.
        u_target = rng.uniform(size=u.shape)
        target = torch.from_numpy(pool.process(x, denormalise(proxy.params, u_target)))
        cos = []
        for i in range(k):
            grads = []
            for fn in (lambda a, p: twin.forward_normalised(a, p), proxy.model):
                p = ut[i : i + 1].clone().double().float().requires_grad_(True)
                out = fn(xt[i : i + 1], p)
                loss = multi_resolution_stft_loss(out, target[i : i + 1])
                (g,) = torch.autograd.grad(loss, p)
                grads.append(g.reshape(-1))
            denom = grads[0].norm() * grads[1].norm()
            if denom > 0:
                cos.append(float(grads[0] @ grads[1] / denom))
        report["grad_cosine_median"] = float(np.median(cos)) if cos else float("nan")
        report["grad_cosine_mean"] = float(np.mean(cos)) if cos else float("nan")
    return report


# Per-device recipes (used when train_proxy is given no architecture / config). Both devices
# only scale each sample, so their proxies predict a log gain. The compressor needs a long
# receptive field (JUCE's 1000 ms release is a 159 ms time constant) and its gain is slow,
# so its TCN runs on 2 ms frames (receptive field 341 frames, 0.68 s); the waveshaper is
# memoryless: a short sample-rate TCN.
RECIPES = {
    "compressor": (ProxyConfig(channels=24, kernel_size=5, dilations=(1, 4, 16, 64),
                               output="gain", frame_hop=32),
                   ProxyTrainConfig(segment_seconds=1.0, batch_size=16)),
    "distortion": (ProxyConfig(channels=16, kernel_size=5, dilations=(1, 4, 16), output="gain"),
                   ProxyTrainConfig()),
}


def train_proxy(device_name_or_spec, out_dir: str | os.PathLike, sample_rate: int = 16000,
                steps: int | None = None, max_minutes: float | None = 30.0, seed: int = 0,
                force: bool = False, progress: bool = True,
                architecture: ProxyConfig | None = None,
                config: ProxyTrainConfig | None = None,
                audio_paths: list[str | os.PathLike] | None = None,
                n_workers: int = 1) -> dict:
    """Train a proxy of a device from its own input/output pairs and save it.

    Every step draws fresh audio segments (random level) and fresh uniform parameters, runs
    the real device on them (worker processes), and fits the TCN with Adam (cosine schedule
    over ``steps`` or ``max_minutes``, whichever ends first). At the end the held-out
    accuracy (:func:`evaluate_proxy`) is measured and stored in ``proxy.json``.

    Args:
        device_name_or_spec: a device name/file/VST3 path (see
            :func:`ddsp_synth.effects.make_device`) or a :class:`~ddsp_synth.effects.Device`.
        out_dir: folder for ``proxy.safetensors`` + ``proxy.json``.
        sample_rate: Hz.
        steps: optimisation steps (None: until ``max_minutes``).
        max_minutes: wall-clock budget of the training loop (None: until ``steps``).
        seed: seeds the network, the data and the parameters.
        force: overwrite an existing proxy in ``out_dir``.
        progress: tqdm progress bar.
        architecture, config: network and training settings (None: the device's recipe in
            ``RECIPES``, else the defaults).
        audio_paths: training recordings (default: the shared data, else synthetic tones).
        n_workers: worker processes running the device.

    Returns:
        Summary dict: out_dir, steps, minutes, final training loss, accuracy.
    """
    from tqdm import tqdm

    from ..effects.devices import Device, make_device

    if steps is None and max_minutes is None:
        raise ValueError("give steps or max_minutes")
    out_dir = Path(out_dir)
    for name in (PROXY_WEIGHTS, PROXY_CONFIG):
        if (out_dir / name).exists() and not force:
            raise ProxyFileError(f"{out_dir / name} exists; pass --force to overwrite it")
    try:  # writable, before the training
        check_output_folder(out_dir)
    except AudioError as err:
        raise ProxyFileError(str(err)) from None
    device = device_name_or_spec if isinstance(device_name_or_spec, Device) \
        else make_device(device_name_or_spec, sample_rate)
    recipe = RECIPES.get(device.name, (ProxyConfig(), ProxyTrainConfig()))
    architecture = architecture or recipe[0]
    config = config or recipe[1]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    source = AudioSource(sample_rate, audio_paths, seed)
    model = ProxyTCN(len(device.params), architecture)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    n = int(config.segment_seconds * sample_rate)
    budget_s = None if max_minutes is None else 60.0 * max_minutes
    total = steps if steps is not None else 10**9
    losses = []
    bar = tqdm(total=steps, disable=not progress, desc=f"proxy {device.name}", unit="step")
    with device.pool(n_workers) as pool:
        t0 = time.monotonic()  # the budget counts training, not the workers' start
        step = 0
        while step < total:
            elapsed = time.monotonic() - t0
            if budget_s is not None and elapsed >= budget_s and step > 0:
                break
            frac = step / total if steps is not None else 0.0
            if budget_s is not None:
                frac = max(frac, elapsed / budget_s)
            lr = config.learning_rate * (config.final_lr_fraction + (1 - config.final_lr_fraction)
                                         * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
            for g in opt.param_groups:
                g["lr"] = lr
            x = source.batch(config.batch_size, n, config.level_db_range, rng=rng)
            u = rng.uniform(size=(config.batch_size, len(device.params)))
            y = pool.process(x, denormalise(device.params, u))
            pred = model(torch.from_numpy(x), torch.from_numpy(u).float())
            loss = proxy_loss(pred, torch.from_numpy(y), config)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        bar.close()
        minutes = (time.monotonic() - t0) / 60.0
        model.eval()
        proxy = Proxy(model, device.name, sample_rate, device.params)
        accuracy = evaluate_proxy(proxy, pool, source, config, twin=device.twin)
    curve = [[i + 1, float(np.mean(losses[max(0, i - 49) : i + 1]))]
             for i in range(0, len(losses), max(1, len(losses) // 20))]
    proxy.meta = {
        "training": {
            "steps": step,
            "minutes": round(minutes, 2),
            "seed": seed,
            "batch_size": config.batch_size,
            "segment_seconds": config.segment_seconds,
            "examples_seen": step * config.batch_size,
            "audio_seconds_seen": round(step * config.batch_size * config.segment_seconds, 1),
            "data": source.paths or "synthetic tones and noise",
            "held_out": f"last {AudioSource.HELD_OUT_SECONDS:g} s of each file, parameters "
                        f"drawn with another seed",
            "config": asdict(config),
            "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "loss_curve": curve,
            "threads": torch.get_num_threads(),
        },
        "accuracy": accuracy,
    }
    save_proxy(proxy, out_dir, force=force)
    card = model_card(read_proxy_config(out_dir))
    atomic_write_bytes(out_dir / "MODEL_CARD.md", lambda tmp: Path(tmp).write_text(card))
    return {"out_dir": str(out_dir), "device": device.name, "steps": step,
            "minutes": round(minutes, 2), "final_loss": proxy.meta["training"]["final_loss"],
            "accuracy": accuracy}


def model_card(meta: dict) -> str:
    """A MODEL_CARD.md text from a proxy description (``proxy.json``)."""
    tr, acc, arch = meta.get("training", {}), meta.get("accuracy", {}), meta["architecture"]
    final_loss = (f"{tr['final_loss']:.4f}" if isinstance(tr.get("final_loss"), (int, float))
                  else "n/a")
    params = ", ".join(f"{p['name']} {p['min']:g}..{p['max']:g} {p['unit']}".rstrip()
                       + (" (log)" if p["scale"] == "log" else "") for p in meta["params"])
    data = tr.get("data")
    data = ", ".join(Path(d).name for d in data) if isinstance(data, list) else data
    rf = arch["receptive_field_samples"]
    lines = [
        f"# {meta['device']} - neural proxy card",
        "",
        f"A TCN that imitates the `{meta['device']}` device at {meta['sample_rate']} Hz, used by "
        "`--method proxy` (forward and backward) and `--method hybrid` (backward only) of "
        "`ddsp-synth match` and by `ddsp_synth.gradients`.",
        "",
        "| | |",
        "|---|---|",
        f"| device | `{meta['device']}` (the real device: pedalboard where it exists) |",
        f"| parameters (normalised to [0, 1] as network input) | {params} |",
        f"| network | causal TCN, {arch['channels']} channels, kernel {arch['kernel_size']}, "
        f"dilations {arch['dilations']}, FiLM MLP width {arch['film_hidden']}; "
        f"output {'`x * exp(s)`' if arch.get('output') == 'gain' else '`x * (1 + g) + r`'}; "
        f"{meta['n_parameters']:,} weights; receptive field {rf} samples "
        f"({1000 * rf / meta['sample_rate']:.0f} ms) |",
        f"| training data | random {tr.get('segment_seconds')} s segments of {data} (all but "
        f"the last 20 s of each file), peak level uniform in "
        f"{tr.get('config', {}).get('level_db_range')} dBFS, parameters uniform in [0, 1]; "
        f"targets by the real device, fresh every step |",
        f"| training | {tr.get('steps')} steps of batch {tr.get('batch_size')} "
        f"({tr.get('audio_seconds_seen')} s of audio), {tr.get('minutes')} min on CPU, "
        f"{tr.get('threads')} thread(s), seed {tr.get('seed')}; loss = multi-resolution STFT "
        f"+ {tr.get('config', {}).get('waveform_weight')} x waveform L1; final loss "
        f"{final_loss} |",
        "",
        f"## Accuracy against the real device (held out: {tr.get('held_out')})",
        "",
        "| metric | value |",
        "|---|---|",
        f"| examples | {acc.get('held_out_examples')} x {acc.get('held_out_seconds')} s |",
        f"| MR log-magnitude distance proxy vs device (median / worst) | "
        f"{acc.get('spec_distance_median', float('nan')):.3f} / "
        f"{acc.get('spec_distance_worst', float('nan')):.3f} |",
        f"| same for the dry input vs device (how much the device changes the sound) | "
        f"{acc.get('spec_distance_dry_median', float('nan')):.3f} |",
        f"| rel_spec (ratio of the medians; 0 = perfect, 1 = no better than the dry input) | "
        f"{acc.get('rel_spec', float('nan')):.3f} |",
        f"| waveform SNR of the proxy vs the device (median / worst) | "
        f"{acc.get('snr_db_median', float('nan')):.1f} dB / "
        f"{acc.get('snr_db_worst', float('nan')):.1f} dB |",
    ]
    if "grad_cosine_median" in acc:
        lines.append(
            f"| cosine of the proxy's parameter gradient of a spectral matching loss with the "
            f"exact one (twin), median / mean | {acc['grad_cosine_median']:.3f} / "
            f"{acc['grad_cosine_mean']:.3f} |")
    lines += ["", f"Reproduce: `python scripts/train_proxies.py {meta['device']} --steps "
                  f"{tr.get('steps')} --seed {tr.get('seed')} --sample-rate {meta['sample_rate']}` "
                  f"(the shipped run had a time budget of {tr.get('minutes')} min; CPU timing "
                  f"varies with the machine's load).", ""]
    return "\n".join(lines)
