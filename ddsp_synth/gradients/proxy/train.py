"""Training a neural proxy from a device's own input/output pairs, and measuring it.

Every step draws fresh audio segments (random level) and fresh uniform parameters, runs the
real device on them (worker processes), and fits the TCN with Adam (cosine schedule over the
steps or the time budget, whichever ends first). At the end the held-out accuracy
(:func:`evaluate_proxy`) is measured and stored with the proxy, and its card is written.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...audio_io import AudioError, atomic_write_text, check_output_folder
from ...dsp.spectral import mr_log_distance
from ...stages.params import denormalise
from .card import model_card
from .files import PROXY_FILES, ProxyFileError, read_proxy_config, save_proxy
from .net import Proxy, ProxyConfig, ProxyTCN
from .source import AudioSource

PROXY_CARD = "MODEL_CARD.md"


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


def proxy_loss(pred: torch.Tensor, target: torch.Tensor, config: ProxyTrainConfig):
    from ...losses import SpectralLossConfig, multi_resolution_stft_loss

    spec = multi_resolution_stft_loss(pred, target, SpectralLossConfig(fft_sizes=config.fft_sizes))
    return spec + config.waveform_weight * (pred - target).abs().mean()


def _gradient_cosines(proxy: Proxy, twin, real, x, u, rng) -> list[float]:
    """Per example, the cosine between the parameter gradient of a spectral matching loss
    through the proxy and the exact one through the twin (what ``proxy``/``hybrid`` rely
    on); the target is the real device with other parameters."""
    from ...losses import multi_resolution_stft_loss

    u_target = rng.uniform(size=u.shape)
    target = torch.from_numpy(real.run(x, denormalise(proxy.params, u_target)))
    xt, ut = torch.from_numpy(x), torch.from_numpy(u).float()
    cos = []
    for i in range(len(x)):
        grads = []
        for stage in (twin, proxy):
            p = ut[i : i + 1].clone().requires_grad_(True)
            out, _ = stage(xt[i : i + 1], denormalise(proxy.params, p))
            (g,) = torch.autograd.grad(multi_resolution_stft_loss(out, target[i : i + 1]), p)
            grads.append(g.reshape(-1))
        denom = grads[0].norm() * grads[1].norm()
        if denom > 0:
            cos.append(float(grads[0] @ grads[1] / denom))
    return cos


def evaluate_proxy(proxy: Proxy, real, source: AudioSource, config: ProxyTrainConfig,
                   seed: int = 12345, twin=None) -> dict:
    """Accuracy of a proxy against the real device (a
    :class:`~ddsp_synth.blackbox.stage.BlackBox`) on held-out audio and parameters.

    Returns:
        ``rel_spec`` (median of MR log-magnitude distance(proxy, device) / distance(dry,
        device)), ``snr_db`` (median waveform SNR of the proxy against the device), their
        worst cases, and, when the device has a twin, ``grad_cosine``: median cosine between
        the parameter gradient of a spectral matching loss through the proxy and the exact
        one through the twin.
    """
    rng = np.random.default_rng(seed)
    n = int(config.held_out_seconds * proxy.sample_rate)
    k = config.held_out_examples
    x = source.batch(k, n, config.level_db_range, held_out=True, rng=rng)
    u = rng.uniform(size=(k, len(proxy.params)))
    xt, yt = torch.from_numpy(x), torch.from_numpy(real.run(x, denormalise(proxy.params, u)))
    with torch.no_grad():
        yp, _ = proxy(xt, denormalise(proxy.params, torch.from_numpy(u).float()))
        dist, dist_dry = mr_log_distance(yp, yt).numpy(), mr_log_distance(xt, yt).numpy()
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
        cos = _gradient_cosines(proxy, twin, real, x, u, rng)
        report["grad_cosine_median"] = float(np.median(cos)) if cos else float("nan")
        report["grad_cosine_mean"] = float(np.mean(cos)) if cos else float("nan")
    return report


def _check_outputs(out_dir: Path, force: bool) -> None:
    """Refuse, before any training, what would overwrite a proxy or its card."""
    for name in (PROXY_FILES.weights, PROXY_FILES.config, PROXY_CARD):
        if (out_dir / name).exists() and not force:
            raise ProxyFileError(f"{out_dir / name} exists; pass --force to overwrite it")
    try:  # writable, before the training
        check_output_folder(out_dir)
    except AudioError as err:
        raise ProxyFileError(str(err)) from None


def _learning_rate(config: ProxyTrainConfig, frac: float) -> float:
    lo = config.final_lr_fraction
    return config.learning_rate * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _fit(model: ProxyTCN, real, source: AudioSource, config: ProxyTrainConfig, steps, budget_s,
         rng, progress: bool) -> tuple[list[float], float]:
    """The training loop; returns the losses and the minutes spent."""
    from tqdm import tqdm

    params = real.params
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    n = int(config.segment_seconds * real.sample_rate)
    total = steps if steps is not None else 10**9
    losses: list[float] = []
    by_time = steps is None and budget_s is not None  # a bar over the budget's seconds
    if by_time:
        bar = tqdm(total=round(budget_s), disable=not progress, desc=f"proxy {real.name}",
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}"
                              "{postfix}]")
    else:
        bar = tqdm(total=steps, disable=not progress, desc=f"proxy {real.name}", unit="step")
    real.pool  # start the workers now: their start does not count against the budget
    t0 = time.monotonic()
    while len(losses) < total:
        elapsed = time.monotonic() - t0
        if budget_s is not None and elapsed >= budget_s and losses:
            break
        frac = max(len(losses) / total if steps is not None else 0.0,
                   elapsed / budget_s if budget_s else 0.0)
        for g in opt.param_groups:
            g["lr"] = _learning_rate(config, frac)
        x = source.batch(config.batch_size, n, config.level_db_range, rng=rng)
        u = rng.uniform(size=(config.batch_size, len(params)))
        y = real.run(x, denormalise(params, u))
        loss = proxy_loss(model(torch.from_numpy(x), torch.from_numpy(u).float()),
                          torch.from_numpy(y), config)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if by_time:
            bar.update(min(time.monotonic() - t0, budget_s) - bar.n)
        else:
            bar.update(1)
        if len(losses) % 20 == 0:
            bar.set_postfix(step=len(losses), loss=f"{np.mean(losses[-20:]):.4f}")
    bar.close()
    return losses, (time.monotonic() - t0) / 60.0


def _real_device(spec) -> str:
    """What imitated device actually ran, in words (for the card)."""
    kind = type(spec).__name__
    return {"PedalboardSpec": f"pedalboard's {getattr(spec, 'class_name', '')}",
            "ScipyBiquadSpec": "a float64 scipy biquad",
            "CommandSpec": "the command " + " ".join(getattr(spec, "command", ())[:1]),
            "PluginSpec": f"the plugin {getattr(spec, 'path', '')}",
            "CallableSpec": "a Python function"}.get(kind, kind)


def _training_meta(losses, minutes, seed, config, source) -> dict:
    steps = len(losses)
    curve = [[i + 1, float(np.mean(losses[max(0, i - 49) : i + 1]))]
             for i in range(0, steps, max(1, steps // 20))]
    return {
        "steps": steps, "minutes": round(minutes, 2), "seed": seed,
        "batch_size": config.batch_size, "segment_seconds": config.segment_seconds,
        "examples_seen": steps * config.batch_size,
        "audio_seconds_seen": round(steps * config.batch_size * config.segment_seconds, 1),
        "data": source.paths or "synthetic tones and noise",
        "held_out": f"last {AudioSource.HELD_OUT_SECONDS:g} s of each file, parameters drawn "
                    "with another seed",
        "config": asdict(config),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "loss_curve": curve,
        "threads": torch.get_num_threads(),
    }


def train_proxy(device, out_dir: str | os.PathLike, sample_rate: int = 16000,
                steps: int | None = None, max_minutes: float | None = 30.0, seed: int = 0,
                force: bool = False, progress: bool = True,
                architecture: ProxyConfig | None = None, config: ProxyTrainConfig | None = None,
                audio_paths: list[str | os.PathLike] | None = None, n_workers: int = 1) -> dict:
    """Train a proxy of a device from its own input/output pairs and save it with its card.

    Args:
        device: a device name, JSON device file or VST3 path, or a
            :class:`~ddsp_synth.stages.registry.Device`. Fixed parameters are refused (a proxy
            imitates the device over its whole range).
        out_dir: folder for ``proxy.safetensors``, ``proxy.json`` and ``MODEL_CARD.md``.
        steps / max_minutes: training length (whichever ends first; at least one).
        architecture, config: network and training settings (None: the device's recipe in
            ``RECIPES``, else the defaults).
        audio_paths: training recordings (default: the shared data, else synthetic tones).
        n_workers: worker processes running the device.

    Returns:
        Summary dict: out_dir, device, steps, minutes, final training loss, accuracy.
    """
    from ...blackbox.stage import BlackBox
    from ...stages.params import DeviceError
    from ...stages.registry import Device, make_device

    if steps is None and max_minutes is None:
        raise ProxyFileError("give steps or max_minutes")
    out_dir = Path(out_dir)
    _check_outputs(out_dir, force)
    device = device if isinstance(device, Device) else make_device(device, sample_rate)
    if device.fixed:
        raise DeviceError(f"'{device.source}': a proxy imitates the device over its whole "
                          "range; train it without fixed parameters")
    if device.spec is None:
        raise DeviceError(f"device '{device.name}' has no real implementation to imitate")
    recipe = RECIPES.get(device.name, (ProxyConfig(), ProxyTrainConfig()))
    architecture, config = architecture or recipe[0], config or recipe[1]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    source = AudioSource(sample_rate, audio_paths, seed)
    model = ProxyTCN(len(device.params), architecture)
    with BlackBox(device.spec, sample_rate, max(1, sample_rate // 100), n_workers) as real:
        losses, minutes = _fit(model, real, source, config, steps,
                               None if max_minutes is None else 60.0 * max_minutes, rng, progress)
        model.eval()
        proxy = Proxy(model, device.name, sample_rate, device.params)
        twin = device.twin(sample_rate) if device.twin is not None else None
        accuracy = evaluate_proxy(proxy, real, source, config, twin=twin)
    proxy.meta = {"training": _training_meta(losses, minutes, seed, config, source),
                  "accuracy": accuracy, "source": device.source,
                  "real_device": _real_device(device.spec)}
    save_proxy(proxy, out_dir, force=force)
    atomic_write_text(out_dir / PROXY_CARD, model_card(read_proxy_config(out_dir)))
    return {"out_dir": str(out_dir), "device": device.name, "steps": len(losses),
            "minutes": round(minutes, 2), "final_loss": proxy.meta["training"]["final_loss"],
            "accuracy": accuracy}
