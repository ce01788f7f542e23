"""Effect stages inside the instrument model (ddsp_synth.model_effects): settings per frame,
once or fixed; autodiff, SPSA, hybrid and proxy gradients; the model file; chunked and
streamed rendering; runtime export; training through real devices; bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddsp_synth.config import ConfigError
from ddsp_synth.decoder import DecoderConfig
from ddsp_synth.errors import UserError
from ddsp_synth.model import DDSPModel, ModelConfig, load_model, save_model, switch_method
from ddsp_synth.model_effects import EffectsConfig, chain_markdown
from ddsp_synth.stages.params import DeviceError
from ddsp_synth.stages.synth import SynthConfig
from ddsp_synth.stages.twins import Compressor
from ddsp_synth.streaming.step import StreamingSynth, export_runtime
from ddsp_synth.train import TrainConfig, TrainingError, list_checkpoints, train
from ddsp_synth.transfer import TransferOptions, render

HOP = 160
STATS = {"loudness_db_mean": -30.0, "loudness_db_std": 12.0}
CHAIN = ("harmonic", "noise", "reverb", "compressor", "distortion", "highshelf", "peak:q=2")
SOURCES = ("once", "once", "frame", "fixed")
INIT = ("distortion.drive_db=6", "compressor.threshold_db=-30", "compressor.ratio=3")
FAST = dict(batch_size=4, val_every=0, audio_every=0, log_every=1, checkpoint_every=2,
            num_threads=1, learning_rate=3e-2, warmup_steps=1)


def config(chain=CHAIN, sources=SOURCES, init=INIT, hidden=32, **effects):
    return ModelConfig(synth=SynthConfig(reverb_s=0.05, processors=chain),
                       decoder=DecoderConfig(hidden=hidden, mlp_layers=1),
                       effects=EffectsConfig(sources=sources, init=init, **effects))


def real_chain(method, sources=("once", "once", "once")):
    return config(("harmonic", "noise", "reverb", f"compressor@{method}",
                   f"distortion@{method}", f"highshelf:q=0.707@{method}"), sources)


def model_of(cfg, seed=0):
    torch.manual_seed(seed)
    model = DDSPModel(cfg, **{"loudness_mean_db": -30.0, "loudness_std_db": 12.0})
    with torch.no_grad():  # a decoder that plays something
        for p in model.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def curves(n=120):
    t = np.arange(n) / 100.0
    f0 = (220.0 * 2 ** (0.3 * np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)
    loud = (-25.0 + 15.0 * np.sin(2 * np.pi * 0.5 * t)).astype(np.float32)
    return f0, loud


def offline(model, f0, loud, noise):
    """The whole signal in one call, with a given noise excitation."""
    with torch.no_grad():
        params, _ = model.controls(torch.from_numpy(f0)[None, :, None],
                                   torch.from_numpy(loud)[None, :, None])
        y, _ = model.synth(None, params, noise=torch.from_numpy(noise)[None])
    return y[0].numpy()


def streamed(model, f0, loud, noise, engine="torch"):
    s = StreamingSynth(model, engine=engine)
    out = s.process_frames(f0, loud, noise)
    return np.concatenate([out, s.flush(noise[-HOP:])])[HOP:]  # one hop of latency


# ----------------------------------------------------------------------------- settings
def test_config_lists_effects_and_refuses_bad_ones_in_one_line():
    cfg = config()
    assert cfg.synth.effect_entries == ("compressor", "distortion", "highshelf", "peak:q=2")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    bad = [
        (dict(sources=("once",)), "one source .* per effect device"),
        (dict(sources=("once", "once", "sometimes", "fixed")), "must be one of frame, once"),
        (dict(init=("distortion.drive_db=99",)), r"outside \[0, 40\] dB"),
        (dict(init=("chorus.rate_hz=1",)), "no effect device 'chorus'"),
        (dict(init=("distortion=3",)), "DEVICE.PARAM=VALUE"),
        (dict(chain=CHAIN[:3] + ("plate",), sources=("once",)), "'plate' must be one of "
                                                                 "harmonic, noise, reverb"),
        (dict(chain=("compressor",) + CHAIN[:3], sources=("once",)), "start with a source"),
        (dict(chain=CHAIN[:3] + ("peak:q=50",), sources=("once",)), r"q = 50.0 is outside"),
        (dict(chain=CHAIN[:3] + ("peak@cma",), sources=("once",)), "unknown method 'cma'"),
    ]
    for kwargs, message in bad:
        args = {"chain": CHAIN, "sources": SOURCES, "init": (), **kwargs}
        with pytest.raises(ConfigError, match=message) as err:
            config(**args)
        assert "\n" not in str(err.value)


def test_a_model_without_effects_is_the_synthesizer_alone():
    model = DDSPModel(ModelConfig(synth=SynthConfig(reverb_s=0.05)))
    assert model.effects is None and not hasattr(model.decoder, "effect_heads")
    assert not any("effect" in k for k in model.state_dict())


def test_settings_start_where_told_and_come_from_their_source():
    model = DDSPModel(config())
    params, _ = model.controls(torch.full((2, 7, 1), 220.0), torch.full((2, 7, 1), -20.0))
    by_label = dict(zip(model.synth.labels, params))
    # once: constant [batch, P] at the starting values (declared defaults where not told)
    comp = by_label["compressor"]
    assert comp.shape == (2, 4)
    np.testing.assert_allclose(comp[0].detach(), [-30.0, 3.0, 10.0, 100.0], rtol=1e-5)
    np.testing.assert_allclose(by_label["distortion"].detach(), [[6.0]] * 2, rtol=1e-5)
    # frame: the decoder's head [batch, n_frames, P]; it starts at the defaults (zero weights)
    shelf = by_label["highshelf"]
    assert shelf.shape == (2, 7, 3)
    assert shelf.requires_grad
    np.testing.assert_allclose(shelf[0, 0].detach(), [440.0, 0.0, 1 / np.sqrt(2)],
                               rtol=1e-4, atol=1e-3)
    # fixed: the entry's q, the rest at defaults, no gradient
    np.testing.assert_allclose(by_label["peak"][0], [440.0, 0.0, 2.0], rtol=1e-6)
    assert not by_label["peak"].requires_grad
    assert set(model.effects.once) == {"compressor", "distortion"}
    assert set(model.decoder.effect_heads) == {"highshelf"}


def test_learned_once_gradient_matches_finite_differences():
    cfg = config(("harmonic", "noise", "distortion", "highshelf"), ("once", "once"),
                 ("highshelf.gain_db=6", "distortion.drive_db=12"))
    model = model_of(cfg)
    f0, loud = (torch.from_numpy(c)[None, :, None] for c in curves(40))
    noise = torch.zeros(1, 40 * HOP)

    def loss():
        params, _ = model.controls(f0, loud)
        return model.synth(None, params, noise=noise)[0].square().mean()

    loss().backward()
    for label in ("distortion", "highshelf"):
        raw = model.effects.once[label]
        grad = raw.grad.clone()
        for i in range(raw.numel()):
            with torch.no_grad():
                raw[i] += 1e-2
                up = float(loss())
                raw[i] -= 2e-2
                down = float(loss())
                raw[i] += 1e-2
            fd = (up - down) / 2e-2
            assert abs(grad[i] - fd) <= 0.03 * abs(fd) + 1e-7, (label, i, float(grad[i]), fd)
    assert model.effects.once["distortion"].grad.abs().sum() > 0


# ----------------------------------------------------------------------------- model file
@pytest.mark.parametrize("method", ["autodiff", "spsa", "hybrid", "proxy"])
def test_model_file_round_trip_holds_the_chain(method, tmp_path):
    model = model_of(real_chain(method, ("once", "frame", "once")))
    with torch.no_grad():
        model.effects.once["compressor"].add_(0.5)
    save_model(model, tmp_path / "m", STATS)
    loaded, meta = load_model(tmp_path / "m")
    f0, loud = (torch.from_numpy(c)[None, :, None] for c in curves(60))
    with torch.no_grad():
        a = model(f0, loud, generator=torch.Generator().manual_seed(3))
        b = loaded(f0, loud, generator=torch.Generator().manual_seed(3))
    model.close(), loaded.close()
    assert torch.equal(a, b) and float(a.abs().max()) > 0.01
    chain = meta["chain"]
    assert [c.get("device") for c in chain] == [None, None, None, "compressor", "distortion",
                                                "highshelf"]
    comp, dist, shelf = chain[3:]
    assert {comp["method"], dist["method"], shelf["method"]} == {method}
    assert (comp["source"], dist["source"], shelf["params"]["q"]) == ("once", "frame", 0.707)
    assert dist["params"] == {"drive_db": "per frame"}
    expected = float(Compressor(16000).params[0].from_normalised(
        torch.sigmoid(model.effects.once["compressor"][0]).double()))
    assert comp["params"]["threshold_db"] == pytest.approx(expected, abs=1e-4)
    # the card's table lists the chain in order, each device with its method and settings
    table = chain_markdown(chain).splitlines()
    assert len(table) == 2 + len(chain)
    assert table[5].startswith(f"| 4 | {comp['stage']} | compressor | {method} | learned once |")
    assert f"threshold_db {comp['params']['threshold_db']:g}" in table[5]
    assert "drive_db per frame" in table[6] and "q 0.707" in table[7]


def test_switch_method_keeps_weights_and_renders_what_the_real_device_renders():
    spsa = model_of(real_chain("spsa"))
    with torch.no_grad():
        spsa.effects.once["distortion"].add_(1.0)
    twins = switch_method(spsa, "autodiff")
    assert twins.synth.labels[3:] == ["compressor", "distortion", "highshelf"]
    assert spsa.synth.labels[3:] == ["compressor+distortion+highshelf"]
    f0, loud = curves()
    noise = np.random.default_rng(0).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    real, twin = offline(spsa, f0, loud, noise), offline(twins, f0, loud, noise)
    spsa.close()
    # pedalboard against its twins (2e-5 of the peak for the compressor, float32 shelves)
    assert np.abs(real - twin).max() <= 1e-3 * np.abs(real).max()
    assert np.abs(real).max() > 0.05


# ----------------------------------------------------------------------------- rendering
def test_chunked_and_streamed_rendering_equal_offline_for_twins():
    model = model_of(config())
    f0, loud = curves()
    noise = np.random.default_rng(1).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    ref = offline(model, f0, loud, noise)
    assert np.abs(ref).max() > 0.05
    np.testing.assert_allclose(streamed(model, f0, loud, noise), ref, atol=5e-5, rtol=0)
    whole = render(model, f0, loud, TransferOptions(chunk_seconds=100.0))
    chunked = render(model, f0, loud, TransferOptions(chunk_seconds=0.23))
    np.testing.assert_allclose(chunked, whole, atol=5e-5, rtol=0)


@pytest.mark.parametrize("method", ["spsa", "proxy"])
def test_streamed_real_devices_and_proxies_equal_offline(method):
    model = model_of(real_chain(method, ("once", "frame", "once")))
    f0, loud = curves(60)
    noise = np.random.default_rng(2).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    ref = offline(model, f0, loud, noise)
    out = streamed(model, f0, loud, noise)
    model.close()
    np.testing.assert_allclose(out, ref, atol=5e-5, rtol=0)
    assert np.abs(ref).max() > 0.05


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_runtime_export_includes_twins(fmt, tmp_path):
    model = model_of(config(CHAIN[:3] + ("compressor", "highshelf"), ("once", "frame"), ()))
    f0, loud = curves(40)
    noise = np.random.default_rng(3).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    ref = streamed(model, f0, loud, noise)
    out = streamed(model, f0, loud, noise, engine="torchscript" if fmt == "torchscript"
                   else "onnx")
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)
    path = export_runtime(model, tmp_path / f"step.{'pt' if fmt == 'torchscript' else fmt}", fmt)
    contract = json.loads(open(str(path) + ".json").read())
    assert contract["stages"] == ["harmonic", "noise", "reverb", "compressor", "highshelf"]
    assert {"compressor_state0", "highshelf_state0"} <= set(contract["state"])


@pytest.mark.parametrize("method", ["spsa", "hybrid", "proxy"])
def test_runtime_export_refuses_a_black_box_in_one_line(method, tmp_path):
    model = model_of(real_chain(method))
    with pytest.raises(UserError) as err:
        export_runtime(model, tmp_path / "step.onnx", "onnx")
    text = str(err.value)
    assert "\n" not in text and f"({method})" in text and "switch_method" in text
    assert not (tmp_path / "step.onnx").exists()


def test_a_real_device_without_pedalboard_is_one_line(tmp_path, monkeypatch):
    save_model(model_of(real_chain("spsa")), tmp_path / "m", STATS)
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # import pedalboard fails
    with pytest.raises(DeviceError) as err:
        load_model(tmp_path / "m")
    text = str(err.value)
    assert "\n" not in text and "pedalboard is not installed" in text
    assert "'compressor+distortion+highshelf' (spsa)" in text
    # the same model through its twins needs no pedalboard
    save_model(model_of(real_chain("autodiff")), tmp_path / "twins", STATS)
    load_model(tmp_path / "twins")


def test_a_real_device_without_pedalboard_from_the_command_line(tmp_path):
    save_model(model_of(real_chain("hybrid")), tmp_path / "m", STATS)
    code = ("import sys; sys.modules['pedalboard'] = None; from ddsp_synth.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    midi = str(Path(__file__).resolve().parents[1] / "examples" / "ode_to_joy.mid")
    proc = subprocess.run([sys.executable, "-c", code, "render", midi, "--model",
                           str(tmp_path / "m"), "-o", str(tmp_path / "out.wav")],
                          capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(err) == 1, proc.stderr
    assert "pedalboard is not installed" in err[0] and "(hybrid)" in err[0]


# ----------------------------------------------------------------------------- training
def _small(method, sources=("once", "once", "once")):
    return real_chain(method, sources)


@pytest.mark.parametrize("method", ["autodiff", "spsa", "hybrid", "proxy"])
def test_training_moves_the_learned_settings_through_every_method(method, tiny_dataset,
                                                                  tmp_path):
    summary = train(tiny_dataset, tmp_path / "run", _small(method),
                    TrainConfig(steps=4, **FAST), show_progress=False)
    assert summary["step"] == 4
    start = DDSPModel(_small(method)).effects.once
    model, _ = load_model(_export(tmp_path / "run", tmp_path / "m"))
    moved = {k: float((model.effects.once[k] - start[k]).abs().max()) for k in start}
    # every device got a gradient (Adam moves a setting whenever its gradient is not zero;
    # through a proxy's gradient a setting may swing back and forth in four steps)
    assert all(np.isfinite(v) and v > 0 for v in moved.values()), moved
    assert max(moved.values()) > 1e-2, moved
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "log.jsonl")
              if "loss" in line]
    assert len(losses) == 4 and np.all(np.isfinite(losses))
    # the worker pools are closed at the end of the run
    assert _workers() == []


def _export(run, out):
    from ddsp_synth.cli import main

    assert main(["export", str(run), "-o", str(out)]) == 0
    return out


def _workers() -> list[int]:
    """Live worker processes of this test process (its children running a device worker)."""
    import os

    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and state != "Z" and b"ddsp_synth.blackbox.worker" in cmd:
            found.append(int(proc.name))
    return found


def test_a_crashing_real_device_stops_training_in_one_line_with_a_checkpoint(
        tiny_dataset, tmp_path, monkeypatch):
    import os
    import signal

    from ddsp_synth.blackbox import stage as stage_mod

    real_run, calls = stage_mod.BlackBox.run, {"n": 0}

    def crash_on_the_fifth_call(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the device's worker dies under it, mid-call
            worker = self.pool._workers[0]
            os.kill(worker.process.pid, signal.SIGKILL)
            # the pool's own line for a worker that dies while it processes (one found dead
            # before a call is restarted instead)
            raise worker.crashed(self.name, "processing")
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(stage_mod.BlackBox, "run", crash_on_the_fifth_call)
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(tiny_dataset, run, _small("spsa"), TrainConfig(steps=10, **FAST),
              show_progress=False)
    text = str(err.value)
    assert "\n" not in text and "compressor+distortion+highshelf" in text and "crashed" in text
    step = int(re.search(r"training stopped at step (\d+)", text).group(1))
    assert 1 <= step < 5  # the fifth device call falls in the second or a later step
    last = list_checkpoints(run)[-1]
    assert last.name == f"step-{step:07d}" and str(last) in text
    assert json.loads((last / "state.json").read_text())["step"] == step
    assert _workers() == []
