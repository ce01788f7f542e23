"""A hand-made control curve rendered through the signal chain: proof of the synth, no model."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from .chains import synth_chain
from .errors import InputError
from .stages.synth import SynthConfig

# (MIDI pitch, duration in seconds) of a short phrase in A major.
_PHRASE = ((69, 0.5), (73, 0.5), (76, 0.5), (81, 1.0), (78, 0.5), (76, 0.5), (73, 0.5))


def demo_controls(seconds: float, config: SynthConfig, seed: int = 0) -> dict:
    """Frame-rate controls of a legato phrase with vibrato, swells and breath noise.

    Returns:
        dict of float32 tensors: ``f0_hz`` [1,T,1], ``amplitude`` [1,T,1],
        ``harmonic_distribution`` [1,T,K], ``magnitudes`` [1,T,n_bands].
    """
    if not seconds > 0:
        raise InputError(f"seconds must be positive, got {seconds}")
    frame_rate = config.frame_rate_hz
    n_frames = int(round(seconds * frame_rate))
    t_s = np.arange(n_frames) / frame_rate
    starts = np.cumsum([0.0] + [d for _, d in _PHRASE])
    scale = seconds / starts[-1]
    midi = np.empty(n_frames)
    env = np.zeros(n_frames)
    for (pitch, dur), start in zip(_PHRASE, starts[:-1]):
        s0, s1 = start * scale, (start + dur) * scale
        on = (t_s >= s0) & (t_s < s1)
        midi[on] = pitch
        local = t_s[on] - s0
        attack = np.minimum(local / 0.06, 1.0)
        release = np.clip((s1 - t_s[on]) / 0.08, 0.0, 1.0)
        env[on] = attack * (0.75 + 0.25 * np.exp(-local / 0.3)) * np.maximum(release, 0.35)
    # Legato: 40 ms glides between notes, then vibrato that fades in.
    glide = max(1, int(0.04 * frame_rate))
    midi = np.convolve(np.pad(midi, (glide, glide), mode="edge"), np.ones(glide) / glide,
                       mode="same")[glide:-glide]
    vibrato = 0.2 * np.sin(2 * np.pi * 5.5 * t_s) * np.minimum(t_s / 0.8, 1.0)
    f0_hz = 440.0 * 2 ** ((midi + vibrato - 69) / 12)
    fade = np.clip((seconds - t_s) / 0.25, 0.0, 1.0)
    amplitude = 0.4 * env * fade

    k = np.arange(1, config.n_harmonics + 1)
    brightness = 6.0 + 24.0 * env[:, None]  # louder = brighter, as in bowed strings
    distribution = k[None, :] ** -1.0 * np.exp(-k[None, :] / brightness)
    distribution[:, 1::2] *= 0.6  # a little hollowness in the even harmonics

    rng = np.random.default_rng(seed)
    band = np.linspace(0.0, 1.0, config.n_noise_bands)
    breath = 0.004 * (0.3 + env[:, None]) * np.exp(-3.0 * band[None, :])
    breath *= 1.0 + 0.1 * rng.standard_normal((n_frames, 1))
    as_tensor = lambda a: torch.tensor(np.asarray(a, np.float32))[None]  # noqa: E731
    return {
        "f0_hz": as_tensor(f0_hz[:, None]),
        "amplitude": as_tensor(amplitude[:, None]),
        "harmonic_distribution": as_tensor(distribution),
        "magnitudes": as_tensor(np.abs(breath)),
    }


def render_demo(seconds: float = 4.0, config: SynthConfig = SynthConfig(), seed: int = 0,
                reverb_gain: float = 0.05, reverb_decay_s: float = 0.25,
                reverb_mix: float = 0.3) -> np.ndarray:
    """Render the demo phrase through the signal chain: harmonics, noise and a room of
    decaying noise (the ``exp_decay`` reverb with a fixed gain and decay time; the direct
    sound stays the loudest part at every frequency of the phrase).

    Returns:
        [n_samples] float32 audio of ``seconds`` plus the reverb's ring-out, peak -1 dBFS.
    """
    controls = demo_controls(seconds, config, seed)
    chain = synth_chain(dataclasses.replace(config, reverb_parameterization="exp_decay",
                                            reverb_seed=seed))
    with torch.no_grad():
        chain.reverb.log_gain.fill_(math.log(reverb_gain))
        chain.reverb.log_decay_s.fill_(math.log(reverb_decay_s))
        # Silent frames after the phrase let the room ring out (ir_size - 1 samples).
        n_samples = controls["f0_hz"].shape[1] * config.hop
        ring_out = config.reverb_samples - 1
        silence = {k: v[:, -1:].expand(-1, -(-ring_out // config.hop), -1)
                   for k, v in controls.items()}
        silence["amplitude"] = torch.zeros_like(silence["amplitude"])
        silence["magnitudes"] = torch.zeros_like(silence["magnitudes"])
        frames = {k: torch.cat([v, silence[k]], dim=1) for k, v in controls.items()}
        params = torch.cat([frames[k] for k in ("f0_hz", "amplitude", "harmonic_distribution",
                                                "magnitudes")], -1)
        audio, _ = chain(None, params, amounts={"reverb": reverb_mix},
                         generator=torch.Generator().manual_seed(seed))
    audio = audio[0, : n_samples + ring_out].numpy()
    return (audio / np.abs(audio).max() * 10 ** (-1 / 20)).astype(np.float32)
