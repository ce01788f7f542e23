"""Decoder + chain of stages = the DDSP autoencoder, and its self-describing model file.

A model directory holds ``model.safetensors`` (weights, no pickle) and ``config.json``
(format version, every hyperparameter, sample and frame rate, feature settings and pitch
model, dataset statistics, training summary, tensor shapes), written and read as an
artefact (:mod:`ddsp_synth.artifact`): :func:`load_model` checks all of it and turns any
problem into a one-line :class:`ModelFileError`.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from .artifact import (ArtifactError, ArtifactFormat, load_artifact_tensors,
                       read_artifact_meta, save_artifact)
from .chains import synth_chain
from .config import ConfigError, check_fields, from_dict
from .decoder import Decoder, DecoderConfig, ZEncoder
from .dsp.units import hz_to_midi
from .errors import InputError
from .features import FeatureConfig
from .losses import SpectralLossConfig
from .model_effects import (EffectSettings, EffectsConfig, chain_params, describe_chain,
                            entry_with_method, is_effect, model_chain, synth_raw_size)
from .stages.synth import SYNTH_STAGE_NAMES, SynthConfig


class ModelFileError(ArtifactError):
    """A model file is missing, damaged or does not match its config."""


# Models written before the format tag existed have none: they load all the same.
MODEL_FILES = ArtifactFormat(kind="model", weights="model.safetensors", config="config.json",
                             tag="ddsp_synth.model", version=1, error=ModelFileError,
                             tag_optional=True)
MODEL_WEIGHTS, MODEL_CONFIG = MODEL_FILES.weights, MODEL_FILES.config


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (``effects``: how the effect devices listed in
    ``synth.processors`` get their settings; see :mod:`ddsp_synth.model_effects`)."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    loss: SpectralLossConfig = field(default_factory=SpectralLossConfig)
    effects: EffectsConfig = field(default_factory=EffectsConfig)

    def __post_init__(self):
        check_fields(self)
        self.effects.check(self.synth)
        if self.synth.sample_rate != self.features.sample_rate:
            raise ConfigError(f"synth sample rate {self.synth.sample_rate} != feature sample "
                              f"rate {self.features.sample_rate}")
        if self.synth.hop != self.features.hop:
            raise ConfigError(f"synth hop {self.synth.hop} != feature hop {self.features.hop}")

    @classmethod
    def for_sample_rate(cls, sample_rate: int = 16000, frame_rate_hz: float = 100.0,
                        crepe_model: str = "tiny", **decoder_kwargs) -> "ModelConfig":
        """Defaults scaled to a sample rate: hop for the frame rate, noise bands ~125 Hz
        wide, loudness window ~64 ms and loss FFT sizes scaled by powers of two."""
        features = FeatureConfig.for_sample_rate(sample_rate, frame_rate_hz, crepe_model)
        scale = features.loudness_n_fft // 1024
        n_bands = int(round(64 * sample_rate / 16000)) + 1
        return cls(
            synth=SynthConfig(sample_rate=sample_rate, hop=features.hop, n_noise_bands=n_bands),
            decoder=DecoderConfig(**decoder_kwargs),
            features=features,
            loss=SpectralLossConfig(fft_sizes=tuple(n * scale for n in
                                                    SpectralLossConfig().fft_sizes)),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From :meth:`to_dict` output; sections or fields left out keep their defaults, and
        every value is checked (:mod:`ddsp_synth.config`)."""
        return from_dict(cls, d, "model.")


class DDSPModel(nn.Module):
    """f0 + loudness (+ z from audio) -> decoder -> chain of stages -> audio.

    A chain with effect devices (:mod:`ddsp_synth.model_effects`) adds ``effects`` (their
    settings: learned-once vectors, fixed values) and one decoder head per device set per
    frame; without them the model is exactly the synthesizer's (``effects`` is None).
    """

    def __init__(self, config: ModelConfig = ModelConfig(), loudness_mean_db: float = -40.0,
                 loudness_std_db: float = 20.0):
        super().__init__()
        self.config = config
        self.effects = None
        if config.synth.effect_entries:
            self.synth = model_chain(config.synth, config.effects)
            self.effects = EffectSettings(self.synth, config.effects)
            self.decoder = Decoder(config.decoder, synth_raw_size(self.synth),
                                   self.effects.head_sizes())
        else:
            self.synth = synth_chain(config.synth)
            self.decoder = Decoder(config.decoder, self.synth.n_raw)
        self.encoder = (ZEncoder(config.decoder, config.synth.sample_rate, config.synth.hop)
                        if config.decoder.z_dims else None)
        # Mixed precision for the decoder's matrix products (training option): bfloat16
        # autocast, weights, synthesis and loss stay float32.
        self.decoder_bf16 = False
        self.register_buffer("loudness_mean_db", torch.tensor(float(loudness_mean_db)))
        self.register_buffer("loudness_std_db", torch.tensor(float(loudness_std_db)))

    def scale_inputs(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor):
        """[B,T,1] f0 in Hz and loudness in dB -> MIDI/127 and standardised loudness."""
        return (hz_to_midi(f0_hz) / 127.0,
                (loudness_db - self.loudness_mean_db) / self.loudness_std_db)

    def controls(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor,
                 audio: torch.Tensor | None = None, state: torch.Tensor | None = None):
        """The chain's parameters for [B,T,1] f0 and loudness, and the GRU state.

        The parameters are [B, T, P] natural units, or, when the chain has stages whose
        settings are constant (effect devices set once or fixed), one tensor per stage
        ([B, T, P_s] or [B, P_s]), which the chain takes as they are.
        """
        f0_s, ld_s = self.scale_inputs(f0_hz, loudness_db)
        z = None
        if self.encoder is not None:
            if audio is None:
                raise InputError("this model has a z encoder and needs the input audio")
            z = self.encoder(audio, f0_hz.shape[1])
        if self.effects is None:
            if self.decoder_bf16:
                with torch.autocast(f0_hz.device.type, dtype=torch.bfloat16):
                    raw, state = self.decoder(f0_s, ld_s, z, state)
                raw, state = raw.float(), state.float()
            else:
                raw, state = self.decoder(f0_s, ld_s, z, state)
            return self.synth.params_from_raw(raw, f0_hz), state
        with torch.autocast(f0_hz.device.type, dtype=torch.bfloat16,
                            enabled=self.decoder_bf16):
            features, state = self.decoder.features(f0_s, ld_s, z, state)
            raw, heads = self.decoder.head(features), self.decoder.extra(features)
        raw, state = raw.float(), state.float()
        heads = {k: v.float() for k, v in heads.items()}
        return chain_params(self, raw, heads, f0_hz), state

    def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor,
                audio: torch.Tensor | None = None, generator: torch.Generator | None = None,
                amounts: dict | None = None) -> torch.Tensor:
        """Audio [batch, n_frames * hop] from f0_hz and loudness_db [batch, n_frames, 1]
        (``amounts``: live amount per chain stage, see :meth:`Chain.forward`)."""
        params, _ = self.controls(f0_hz, loudness_db, audio)
        return self.synth(None, params, amounts=amounts, generator=generator)[0]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def close(self) -> None:
        """Close what the chain holds outside this process (real devices' worker pools)."""
        self.synth.close()


def switch_method(model: DDSPModel, method: str) -> DDSPModel:
    """The same model with every effect device through ``method`` (``"autodiff"``: the
    twins, which render what pedalboard renders and can be exported): the same weights,
    settings and statistics; a new :class:`~ddsp_synth.model.DDSPModel` in eval mode."""
    cfg = model.config
    processors = tuple(p if p in SYNTH_STAGE_NAMES else entry_with_method(p, method)
                       for p in cfg.synth.processors)
    config = replace(cfg, synth=replace(cfg.synth, processors=processors))
    config = ModelConfig.from_dict(config.to_dict())
    new = DDSPModel(config, float(model.loudness_mean_db), float(model.loudness_std_db))
    own = {k: v for k, v in model.state_dict().items() if not _in_effect_stage(model, k)}
    missing, unexpected = new.load_state_dict(own, strict=False)
    left = [k for k in missing if not _in_effect_stage(new, k)]
    if left or unexpected:
        raise RuntimeError(f"switch_method: weights do not carry over ({left or unexpected})")
    new.meta = getattr(model, "meta", None)
    return new.eval()


def _in_effect_stage(model, key: str) -> bool:
    """Whether a state-dict key belongs to an effect stage of the chain (a proxy's frozen
    weights, which come with the method, not with the model's training)."""
    parts = key.split(".")
    if parts[0] != "synth" or len(parts) < 2:
        return False
    stage = getattr(model.synth, parts[1], None)
    return stage is not None and is_effect(stage)


# ----------------------------------------------------------------------------- model file
def save_model(model: DDSPModel, model_dir: str | os.PathLike, dataset_stats: dict,
               training: dict | None = None, force: bool = False) -> Path:
    """Write ``model.safetensors`` and ``config.json`` atomically into ``model_dir``."""
    cfg = model.config
    meta = {
        "model": cfg.to_dict(),
        "sample_rate": cfg.synth.sample_rate,
        "frame_rate_hz": cfg.synth.frame_rate_hz,
        "hop": cfg.synth.hop,
        "pitch_model": f"crepe-{cfg.features.crepe_model}",
        "n_parameters": model.n_parameters(),
        **({"chain": describe_chain(model)} if model.effects is not None else {}),
        "dataset_stats": dataset_stats,
        "training": training or {},
    }
    return save_artifact(model_dir, MODEL_FILES, model.state_dict(), meta, force)


def read_model_config(model_dir: str | os.PathLike) -> dict:
    """The metadata of a model folder, checked: format version, settings, statistics."""
    meta = read_artifact_meta(model_dir, MODEL_FILES)
    path = Path(model_dir) / MODEL_CONFIG
    if not isinstance(meta.get("model"), dict):
        raise ModelFileError(f"{path}: no model settings")
    if not isinstance(meta.get("dataset_stats", {}), dict):
        raise ModelFileError(f"{path}: dataset_stats must be a JSON object")
    return meta


def load_model(model_dir: str | os.PathLike, device: str = "cpu") -> tuple[DDSPModel, dict]:
    """Load a model folder (or a shipped model by name) without pickle; returns (model in
    eval mode, metadata)."""
    model_dir = resolve_model(model_dir)
    meta = read_model_config(model_dir)
    try:
        config = ModelConfig.from_dict(meta["model"])
    except ConfigError as err:
        raise ModelFileError(f"{model_dir / MODEL_CONFIG}: invalid model settings ({err})") from None
    _check_description(meta, config, model_dir / MODEL_CONFIG)
    # Shapes from the settings on the meta device (nothing allocated) against the file's
    # header, before any tensor is read.
    with torch.device("meta"), warnings.catch_warnings():
        # a proxy inside the chain loads its weights into the meta tensors: a no-op
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        expected = {k: tuple(v.shape) for k, v in DDSPModel(config).state_dict().items()}
    tensors = load_artifact_tensors(model_dir, MODEL_FILES, meta, expected, device)
    model = DDSPModel(config).to(device)
    model.load_state_dict(tensors)
    model.eval()
    model.meta = meta
    return model, meta


def _check_description(meta: dict, config: ModelConfig, path: Path) -> None:
    """The file's description (its top-level ``sample_rate``, ``hop``, ``frame_rate_hz``:
    what a reader, or a host of the exported step, takes the model for) must agree with the
    settings the model is built from; ModelFileError otherwise (it loaded, and played at
    the settings' rate whatever the description said)."""
    synth = config.synth
    for key, value in (("sample_rate", synth.sample_rate), ("hop", synth.hop),
                       ("frame_rate_hz", synth.frame_rate_hz)):
        if key in meta and not (isinstance(meta[key], (int, float))
                                and not isinstance(meta[key], bool)
                                and abs(float(meta[key]) - value) < 1e-6):
            raise ModelFileError(f"{path}: its description says {key} {meta[key]!r:.40}, its "
                                 f"model settings {value:g}")


# Fade applied where a learned reverb tail is cut to a shorter response (s).
REVERB_CUT_FADE_S = 0.01


def copy_weights(source: DDSPModel, target: DDSPModel) -> None:
    """Start ``target`` from ``source``'s weights (fine-tuning into other settings).

    Tensors of equal shape are copied; a learned reverb tail of another length is cut (with
    a 10 ms fade) or padded with zeros, so a model can be fine-tuned into a shorter or longer
    room. The loudness normalisation stays the target's (its own dataset's). Any other
    difference in shape is a ValueError naming the tensor.
    """
    src = source.state_dict()
    weights = {}
    for name, tensor in target.state_dict().items():
        if name.startswith("loudness_") or name not in src:
            continue
        value = src[name]
        if value.shape != tensor.shape:
            if name != "synth.reverb.tail" or value.shape[0] != tensor.shape[0]:
                raise ModelFileError(f"cannot start from that model: {name} has shape "
                                 f"{tuple(value.shape)}, these settings need {tuple(tensor.shape)}")
            n = tensor.shape[1]
            value = value[:, :n].clone()
            if value.shape[1] < n:
                value = torch.nn.functional.pad(value, (0, n - value.shape[1]))
            else:
                fade = min(n - 1, int(REVERB_CUT_FADE_S * target.config.synth.sample_rate))
                if fade > 0:
                    value[:, n - fade:] *= torch.linspace(1.0, 0.0, fade)
        weights[name] = value
    target.load_state_dict(weights, strict=False)


def with_stats(config: ModelConfig, stats: dict) -> DDSPModel:
    """A fresh model whose loudness normalisation comes from dataset statistics."""
    check_stats(stats, ("loudness_db_mean", "loudness_db_std"))
    return DDSPModel(config, stats["loudness_db_mean"], stats["loudness_db_std"])


def check_stats(stats, keys, use: str = "") -> None:
    """Dataset statistics hold finite numbers (or non-empty lists of them) under ``keys``;
    otherwise a ModelFileError that says what ``use`` needs them."""
    for k in keys:
        v = stats.get(k) if isinstance(stats, dict) else None
        values = v if isinstance(v, list) else [v]
        if not values or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                 and math.isfinite(x) for x in values):
            raise ModelFileError(f"the dataset statistics lack {k!r}{use}")


def models_dir() -> Path:
    """Folder of the shipped models: $DDSP_SYNTH_MODELS, else ``models/`` of the checkout."""
    env = os.environ.get("DDSP_SYNTH_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


# The instruments that ship with ddsp_synth (other folders in the models folder are the
# user's own exports; tenorsax_amp: a tenor sax heard through an effect chain, its effect
# stages learned with it, issue 20).
SHIPPED_MODELS = ("violin", "flute", "trumpet", "altosax", "cello", "tenorsax_amp")


def shipped_models() -> list[str]:
    """The shipped instruments that are installed."""
    return [n for n in SHIPPED_MODELS if (models_dir() / n / MODEL_CONFIG).exists()]


def available_models(extra_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Name -> folder of every model under the shipped models folder (and ``extra_dir``)."""
    found = {}
    for root in [models_dir()] + ([Path(extra_dir)] if extra_dir else []):
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / MODEL_CONFIG).exists():
                    found[d.name] = d
    return found


def resolve_model(name_or_dir: str | os.PathLike) -> Path:
    """A model folder from a path, or the name of a shipped model (``violin``)."""
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise ModelFileError(f"a model is a shipped name or a folder, got "
                             f"{type(name_or_dir).__name__}")
    if not str(name_or_dir).strip():
        raise ModelFileError(f"no model given: name a shipped model "
                             f"({', '.join(available_models()) or 'none installed'}) or a folder")
    p = Path(name_or_dir)
    if p.is_dir():
        return p
    if len(p.parts) > 1 or p.is_absolute() or p.exists():
        raise ModelFileError(f"{p}: no such model folder")
    models = available_models()
    if str(name_or_dir) in models:
        return models[str(name_or_dir)]
    names = ", ".join(models) or "none installed"
    raise ModelFileError(f"no model folder or shipped model named {str(name_or_dir)!r} "
                         f"(shipped: {names})")
