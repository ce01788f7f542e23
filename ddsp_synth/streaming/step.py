"""The exportable one-hop step of a trained model, its Python driver and its runtime export.

:class:`SynthStep` is the decoder and the model's whole signal chain for one hop (10 ms at
16 kHz), written as a pure function of its inputs and an explicit state: no FFT, no random
numbers (the host supplies the noise) and no Python control flow on data, so the same module
is what :func:`export_runtime` writes as TorchScript or ONNX for a C++ or plugin host. The
chain's stages run their one-hop variants (:meth:`ddsp_synth.stages.base.Stage.make_step`),
which share the offline kernels or sit beside their offline twins with parity tests.

Alignment and latency: offline synthesis interpolates block ``t`` between control frames
``t`` and ``t + 1``, so block ``t`` can be rendered once frame ``t + 1`` is known: one hop of
algorithmic latency, and streaming output sample ``n + hop`` equals offline sample ``n``
(step 0 returns silence). The noise filter's linear-phase delay (``n_bands - 1`` samples) is
part of the instrument's sound in both renderings, not extra latency.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..stages.chain import check_amounts
from .effect_steps import ModelChainStep

#: the state of the default chain (harmonic, noise, reverb), in order; a model's own list is
#: ``SynthStep.state_names``.
STATE_NAMES = ("gru_state", "prev_controls", "phase", "noise_tail", "reverb_input",
               "reverb_spectra", "valid")
INPUT_NAMES = ["f0_hz", "loudness_db", "noise", "gains", *STATE_NAMES]
OUTPUT_NAMES = ["audio", *[f"new_{n}" for n in STATE_NAMES]]


class SynthStep(nn.Module):
    """One hop of a trained model as a pure, exportable step function.

    ``forward(f0_hz, loudness_db, noise, gains, *state) -> (audio, *new_state)``

    Inputs (batch ``B``; ``H`` GRU width, ``C`` the chain's control channels, ``hop``
    samples per frame, ``S`` chain stages):
        f0_hz: [B, 1] the new frame's f0 in Hz.
        loudness_db: [B, 1] the new frame's A-weighted loudness in dB.
        noise: [B, hop] white noise in [-1, 1) for this block.
        gains: [B, S] live amount per stage in chain order; for the default chain
            harmonic gain, noise gain, reverb mix (1 = as trained, 0 = off / dry).
        state, named by :attr:`state_names`: ``gru_state`` [1, B, H]; ``prev_controls``
            [B, C] the previous frame's controls (f0, amplitude, harmonic distribution, noise
            magnitudes for the default chain); the stages' states (default chain: ``phase``
            [B, 1] float64, ``noise_tail`` [B, I - 1] with ``I = 2 (bands - 1)``,
            ``reverb_input`` [B, hop], ``reverb_spectra`` [B, P, 2 (hop + 1)] with
            ``P = ceil(reverb taps / hop)``); ``valid`` [B, 1]: 0 before the first frame,
            1 after (a zero state is a fresh stream).

    Returns:
        audio: [B, hop] block ``t - 1`` when frame ``t`` was given (zeros at the first step),
        and the new state, same names and shapes.
    """

    def __init__(self, model):
        super().__init__()
        if model.encoder is not None:
            raise InputError("streaming needs a model without a z encoder")
        self.model = model
        if model.effects is None:
            self.chain = model.synth.make_step()
        else:
            self.chain = ModelChainStep(model.synth, model.effects.constant_stages())
        self.hop = model.config.synth.hop
        self.sample_rate = float(model.config.synth.sample_rate)
        self.hidden = model.config.decoder.hidden
        self.n_controls = sum(self.chain.sizes)
        self.n_stages = len(self.chain.labels)
        self.state_names = ("gru_state", "prev_controls", *self.chain.state_names, "valid")
        self.input_names = ["f0_hz", "loudness_db", "noise", "gains", *self.state_names]
        self.output_names = ["audio", *[f"new_{n}" for n in self.state_names]]

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """The zero state of a fresh stream, in :attr:`state_names` order."""
        return (torch.zeros(1, batch, self.hidden), torch.zeros(batch, self.n_controls),
                *self.chain.initial_state(batch), torch.zeros(batch, 1))

    def decode(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor,
               gru_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 1] f0 and loudness -> (the chain's parameters [B, C], new GRU state)."""
        params, gru_state = self.model.controls(f0_hz[:, :, None], loudness_db[:, :, None],
                                                state=gru_state)
        if isinstance(params, list):  # constant stages [B, P] beside per-frame ones
            return torch.cat([p[:, 0] if p.dim() == 3 else p for p in params], -1), gru_state
        return params[:, 0], gru_state

    def render_block(self, prev: torch.Tensor, new: torch.Tensor, noise: torch.Tensor,
                     gains: torch.Tensor, chain_state: tuple, valid: torch.Tensor):
        """Audio between flat controls ``prev`` and ``new`` (the block of frame ``prev``) and
        the chain's new state; nothing sounds and no state moves while ``valid`` is 0.

        A chain with effects masks with ``where`` (their settings from the zero controls of
        a fresh stream may be NaN, which a product would let through); one with stages
        that run only in Python does not run them at all before the first frame (a real
        device's stream would hear a hop that was never played)."""
        if not self.chain.exportable:
            if float(valid.min()) < 0.5:
                return torch.zeros_like(noise), chain_state
            return self.chain(prev, new, noise, gains, chain_state)
        audio, new_state = self.chain(prev, new, noise, gains, chain_state)
        keep = valid > 0.5
        new_state = tuple(torch.where(keep.reshape(keep.shape + (1,) * (s.dim() - 2)), s, old)
                          for s, old in zip(new_state, chain_state))
        if self.model.effects is not None:
            return torch.where(keep, audio, torch.zeros_like(audio)), new_state
        return audio * valid, new_state

    def forward(self, f0_hz, loudness_db, noise, gains, gru_state, prev_controls, *rest):
        chain_state, valid = tuple(rest[:-1]), rest[-1]
        controls, gru_state = self.decode(f0_hz, loudness_db, gru_state)
        audio, chain_state = self.render_block(prev_controls, controls, noise, gains,
                                               chain_state, valid)
        return (audio, gru_state, controls, *chain_state, torch.ones_like(valid))


class StreamingSynth:
    """Python driver of :class:`SynthStep`: f0/loudness frames in, audio blocks out.

    ``process_frame`` returns one hop per frame, delayed by one hop (``latency_samples``);
    ``flush`` renders the last frame held, as offline rendering does at the end of a signal.
    """

    ENGINES = ("torch", "torchscript", "onnx")

    def __init__(self, model, amounts: dict | None = None, seed: int = 0,
                 engine: str = "torch"):
        """``engine``: run the step eagerly (``torch``), traced (``torchscript``) or with
        onnxruntime (``onnx``, one intra-op thread); all three give the same audio.
        ``amounts``: {stage label: live amount} of the model's chain (others play as
        trained)."""
        if engine not in self.ENGINES:
            raise ValueError(f"engine must be one of {', '.join(self.ENGINES)}, got {engine!r}")
        self.step = SynthStep(model).eval()
        if engine != "torch" and not self.step.chain.exportable:
            raise InputError(not_exportable_message(self.step, f"the {engine} engine"))
        self.hop = self.step.hop
        self.sample_rate = int(self.step.sample_rate)
        self.latency_samples = self.hop
        named = check_amounts(amounts or {}, self.step.chain.labels)
        self.gains = torch.tensor([[named.get(n, 1.0) for n in self.step.chain.labels]],
                                  dtype=torch.float32)
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

    def _noise(self, noise) -> torch.Tensor:
        if noise is None:
            return torch.rand(1, self.hop, generator=self.generator) * 2.0 - 1.0
        return torch.as_tensor(np.asarray(noise, np.float32)).reshape(1, self.hop)

    @torch.inference_mode()
    def process_frame(self, f0_hz: float, loudness_db: float,
                      noise: np.ndarray | None = None) -> np.ndarray:
        """One control frame -> [hop] float32 audio (the previous frame's block)."""
        out = self._run(torch.tensor([[float(f0_hz)]]), torch.tensor([[float(loudness_db)]]),
                        self._noise(noise), self.gains, *self.state)
        self.state = out[1:]
        return out[0][0].numpy()

    @torch.inference_mode()
    def flush(self, noise: np.ndarray | None = None) -> np.ndarray:
        """The last frame's block, held (no next frame): [hop] (empty before any frame)."""
        gru, prev, *chain_state, valid = self.state
        if float(valid[0, 0]) < 0.5:
            return np.zeros(0, np.float32)
        audio, chain_state = self.step.render_block(prev, prev, self._noise(noise), self.gains,
                                                    tuple(chain_state), valid)
        self.state = (gru, prev, *chain_state, valid)
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


# ----------------------------------------------------------------------------- export
def example_inputs(step: SynthStep, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Plausible inputs for tracing and for checking an exported step."""
    gen = torch.Generator().manual_seed(seed)
    f0 = 220.0 + 200.0 * torch.rand(batch, 1, generator=gen)
    loud = -30.0 + 10.0 * torch.rand(batch, 1, generator=gen)
    noise = torch.rand(batch, step.hop, generator=gen) * 2 - 1
    gains = torch.ones(batch, step.n_stages)
    return (f0, loud, noise, gains, *step.initial_state(batch))


def not_exportable_message(step: SynthStep, what: str) -> str:
    """One line: which stages keep the step from ``what`` (a trace), and what to do."""
    names = getattr(step.chain, "not_exportable", lambda: [])()
    if not names:
        return f"this model's chain has stages that only run in Python: no {what}"
    stages = dict(zip(step.chain.labels, step.model.synth.stages()))
    described = ", ".join(f"'{n}' ({getattr(stages[n], 'method', 'device')})" for n in names)
    return (f"no {what}: effect stage {described} runs a real device in worker processes or "
            f"a neural proxy, only in Python; switch it to its twin first "
            f"(ddsp_synth.model.switch_method(model, 'autodiff'), then save_model)")


def _trace(step: SynthStep):
    """TorchScript of the step (shape checks inside nn.GRU are traced as constants, which is
    right here: a step always has one frame)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(step, example_inputs(step), check_trace=False)


STEP_FORMAT = "ddsp_synth.step"
STEP_FORMAT_VERSION = 1
_INPUT_MEANINGS = {
    "f0_hz": "the new frame's fundamental in Hz (the input's pitch, e.g. CREPE)",
    "loudness_db": "the new frame's A-weighted loudness in dB re a full-scale 1 kHz sine "
                   "(Hann window of loudness_n_fft samples centred on the frame)",
    "noise": "white noise in [-1, 1) for this block (the host draws it)",
    "gains": "live amount of each stage, in the order of 'stages' (1 = as trained)",
}


def step_contract(step: SynthStep, meta: dict | None = None) -> dict:
    """What a host in another language needs to run the exported step: rates, latency, every
    input and output with its shape and meaning, the state layout (pass each ``new_X`` back
    as ``X``; zeros are a fresh stream), the stages' order, the features the step expects and
    the model's dataset statistics (for a host's own auto-adjust)."""
    example = example_inputs(step)
    fc = step.model.config.features
    tensors = [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                "meaning": _INPUT_MEANINGS.get(n, "state (see 'state')")}
               for n, t in zip(step.input_names, example)]
    return {
        "format": STEP_FORMAT, "format_version": STEP_FORMAT_VERSION,
        "sample_rate": int(step.sample_rate), "hop": step.hop,
        "frame_rate_hz": step.sample_rate / step.hop, "latency_samples": step.hop,
        "inputs": tensors,
        "outputs": [{"name": "audio", "shape": [1, step.hop], "dtype": "float32",
                     "meaning": "the block of the previous frame (zeros at the first call)"}]
        + [{"name": f"new_{t['name']}", "shape": t["shape"], "dtype": t["dtype"]}
           for t in tensors if t["name"] in step.state_names],
        "state": [t["name"] for t in tensors if t["name"] in step.state_names],
        "stages": list(step.chain.labels),
        "features": {"sample_rate": fc.sample_rate, "hop": fc.hop, "crepe_model": fc.crepe_model,
                     "loudness_n_fft": fc.loudness_n_fft},
        "dataset_stats": (meta or {}).get("dataset_stats", {}),
    }


def export_runtime(model, path: str | os.PathLike, fmt: str) -> Path:
    """Write the streaming step of ``model`` as TorchScript (``.pt``) or ONNX (``.onnx``), its
    contract (:func:`step_contract`) inside the file (ONNX metadata ``ddsp_synth``, a
    TorchScript extra file ``ddsp_synth.json``) and beside it (``PATH.json``).

    The file takes and returns ``SynthStep.input_names`` / ``output_names``; a host keeps the
    returned state and passes it to the next call. Written atomically.
    """
    import json

    from ..audio_io import atomic_write_bytes, atomic_write_text

    step = SynthStep(model).eval()
    if not step.chain.exportable:
        raise InputError(not_exportable_message(step, "export"))
    contract = json.dumps(step_contract(step, getattr(model, "meta", None)), indent=2)
    args = example_inputs(step)
    path = Path(path)
    if fmt == "torchscript":
        traced = _trace(step)
        atomic_write_bytes(path, lambda tmp: torch.jit.save(
            traced, tmp, _extra_files={"ddsp_synth.json": contract}))
    elif fmt == "onnx":
        atomic_write_bytes(path, lambda tmp: _write_onnx(step, args, tmp, contract))
    else:
        raise ValueError(f"format must be 'torchscript' or 'onnx', got {fmt!r}")
    atomic_write_text(Path(str(path) + ".json"), contract + "\n")
    return path


def _write_onnx(step: SynthStep, args, path: str, contract: str) -> None:
    import onnx

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, args, path, input_names=step.input_names,
                          output_names=step.output_names, opset_version=18, dynamo=False)
    graph = onnx.load(path)
    entry = graph.metadata_props.add()
    entry.key, entry.value = "ddsp_synth", contract
    graph.doc_string = "ddsp_synth streaming step: see the 'ddsp_synth' metadata (JSON)"
    onnx.save(graph, path)


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
    names = [i.name for i in session.get_inputs()]

    def run(*inputs):
        feed = {n: t.numpy() for n, t in zip(names, inputs)}
        return tuple(torch.from_numpy(o) for o in session.run(None, feed))

    return run
