"""Controllers: the network, the data, training through every gradient method, the file,
applying to files of any rate and channel count, the rule baseline, BS.1770 loudness, the
commands and their bad inputs. Tiny networks, short clips, a few steps."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ddsp_synth.cli import main
from ddsp_synth.errors import UserError
from ddsp_synth.control import (ControlDataConfig, ControlError, ControllerConfig,
                                ControllerFileError, apply_controller, control_train_config,
                                integrated_loudness, load_controller, rule_baseline,
                                train_controller)
from ddsp_synth.control import encoder as encoder_mod
from ddsp_synth.control.controller import Controller, neutral_values
from ddsp_synth.control.data import PairsSource, StyleSource
from ddsp_synth.control.devices import build_chain, declared_params, render_chain
from ddsp_synth.train import list_checkpoints
from ddsp_synth.train.config import TrainingError

SR = 16000
TINY = ControllerConfig(n_fft=256, n_mels=16, channels=8, dilations=(1, 2), hidden=16,
                        reference=False, min_reference_seconds=0.2)
SHORT = ControlDataConfig(segment_seconds=0.25, reference_seconds=0.25, workers=1)
QUIET = dict(val_every=0, audio_every=0, log_every=1, checkpoint_every=1000, batch_size=2)


def _tone(seconds, sr=SR, f0=220.0, seed=0, level=0.3):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t) ** 2
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8) if k * f0 < sr / 2)
    return (level * env * y / 2 + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def gain_pairs(tmp_path_factory):
    """Five pairs whose target is the input 6 dB louder (the 5th is held out)."""
    root = tmp_path_factory.mktemp("pairs")
    for d in ("in", "out"):
        (root / d).mkdir()
    for i in range(5):
        x = _tone(1.5, f0=150.0 + 60 * i, seed=i, level=0.2)
        sf.write(root / "in" / f"take{i}.wav", x, SR, subtype="FLOAT")
        sf.write(root / "out" / f"take{i}.flac", x * 10 ** (6 / 20), SR, subtype="PCM_24")
    return root


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    for i in range(2):
        sf.write(root / f"rec{i}.wav", _tone(4.0, f0=180.0 + 90 * i, seed=10 + i), SR)
    return root


# ----------------------------------------------------------------------------- network
def test_log_mel_frames_levels_and_chunks(monkeypatch):
    mel = encoder_mod.LogMel(SR, 512, 160, 32)
    x = torch.from_numpy(_tone(1.01))[None]
    whole = mel(x)
    assert whole.shape == (1, 32, 1 + x.shape[1] // 160)
    # +6.02 dB of input is +6.02 / 20 in every band that is above the floor
    louder = mel(2 * x)
    loud = whole > -3  # 60 dB above the floor
    assert torch.allclose((louder - whole)[loud], torch.full_like(whole[loud], 20 * math.log10(2)
                                                                   / 20), atol=1e-4)
    monkeypatch.setattr(encoder_mod, "CHUNK_FRAMES", 7)
    assert torch.allclose(mel(x), whole, atol=1e-4)


def test_controller_starts_neutral_and_is_trainable():
    chain = build_chain("peak,compressor,gain:gain_db=-3", SR, "autodiff")
    declared, fixed, devices = declared_params(chain)
    net = Controller(TINY, declared, fixed, neutral_values(declared, devices))
    x = torch.from_numpy(np.stack([_tone(0.5, seed=s) for s in range(2)]))
    p = net.predict(x)
    names = [q.name for q in declared]
    assert p.shape == (2, len(declared))
    assert torch.all(p[:, names.index("gain.gain_db")] == -3.0)  # fixed
    start = p.detach()[0]
    assert abs(float(start[names.index("peak.gain_db")])) < 2.0  # near 0 dB
    assert float(start[names.index("compressor.ratio")]) < 1.1  # (almost) no compression
    y, _ = chain(x, p)
    y.square().mean().backward()
    grads = [q.grad for q in net.encoder.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_untrained_compressor_settings_receive_a_gradient():
    """The compressor starts where its gradient is alive: under a threshold the signal
    passes. At the old start (threshold 0 dB, ratio 1) a -12 dBFS signal never reached it
    and the seed's controllers never moved their compressors."""
    from ddsp_synth.dsp.spectral import spectral_distance

    chain = build_chain("compressor", SR, "autodiff")
    declared, fixed, devices = declared_params(chain)
    net = Controller(TINY, declared, fixed, neutral_values(declared, devices))
    x = torch.from_numpy(np.stack([_tone(0.5, seed=s) for s in range(2)]))
    x = x * (10 ** (-12 / 20) / x.abs().amax(-1, keepdim=True))  # peaks at -12 dBFS
    target, _ = chain(x, torch.tensor([[-30.0, 4.0, 5.0, 100.0]] * 2))
    raw = net(x)
    raw.retain_grad()
    y, _ = chain(x, net.natural(raw))
    spectral_distance(y, target.detach()).mean().backward()
    names = [q.name for q in declared]
    g = raw.grad.abs().sum(0)
    assert float(g[names.index("compressor.ratio")]) > 1e-4
    values = net.natural(raw).detach()[0]
    assert float(values[names.index("compressor.threshold_db")]) < -20.0


def test_per_frame_controller_gives_one_frame_per_hop():
    chain = build_chain("gain", SR, "autodiff")
    declared, fixed, _ = declared_params(chain)
    net = Controller(ControllerConfig(**{**TINY.__dict__, "per_frame": True, "reference": True}),
                     declared, fixed)
    x, ref = torch.zeros(2, 3200 + 37), torch.randn(2, 4000) * 0.1
    raw = net(x, ref)
    assert raw.shape == (2, 1 + x.shape[1] // 160, 1)
    y, _ = chain(x, net.natural(raw))
    assert y.shape == x.shape
    with pytest.raises(ValueError, match="needs a reference"):
        net(x)


def _level_net(chain_text, method="autodiff", **config):
    chain = build_chain(chain_text, SR, method)
    declared, fixed, devices = declared_params(chain)
    chain.close()
    cfg = ControllerConfig(**{**TINY.__dict__, "reference": True, "level_match": True, **config})
    torch.manual_seed(0)
    return Controller(cfg, declared, fixed, neutral_values(declared, devices), devices), declared


@pytest.mark.parametrize("per_frame", [False, True])
def test_level_match_starts_the_output_gain_at_the_level_difference(per_frame):
    """An untrained controller sets its output gain to the reference's level minus the
    input's (the seed's controllers learned only 0.4x of it in 200 steps); without the
    level path the gain stays near its neutral 0 dB whatever the levels."""
    x = torch.from_numpy(np.stack([_tone(1.0, seed=s, level=0.05) for s in range(2)]))
    ref = torch.from_numpy(np.stack([_tone(1.0, seed=5 + s, level=0.05) for s in range(2)]))
    for level_match in (True, False):
        net, declared = _level_net("peak,compressor,gain", per_frame=per_frame,
                                   level_match=level_match)
        gain = [q.name for q in declared].index("gain.gain_db")
        for db in (-15.0, 0.0, 12.0):
            r = ref * 10 ** (db / 20)
            p = net.predict(x, r)[..., gain]
            expect = db if level_match else 0.0
            assert torch.all((p - expect).abs() < 1.5), (level_match, db, p)
            # the embedding path (apply, style) gives the same settings
            e = net.embed(r)
            assert torch.allclose(net(x, reference_embedding=e), net(x, r), atol=1e-5)
    # the offset has no gradient of its own but the head's does: trainable as before
    net, _ = _level_net("peak,gain", per_frame=per_frame)
    net(x, ref).sum().backward()
    assert float(net.head[-1].weight.grad.abs().sum()) > 0


def test_level_match_only_with_a_reference_and_a_free_gain():
    assert _level_net("peak,gain")[0].level_index == 3  # the gain's one value
    assert _level_net("gain,peak,gain")[0].level_index == 4  # the last gain
    assert _level_net("peak,gain:gain_db=-3")[0].level_index is None  # fixed
    assert _level_net("peak,compressor")[0].level_index is None  # no gain
    assert _level_net("peak,gain", reference=False)[0].level_index is None
    assert _level_net("peak,gain", level_match=False)[0].level_index is None
    # a chain run as one black box (SPSA) names every parameter 'peak+gain.NAME': the
    # devices, not the names, find the gain
    net, declared = _level_net("peak,gain", "spsa")
    assert [q.name for q in declared].count("peak+gain.gain_db") == 2
    assert net.level_index == 3


def test_level_match_is_off_by_default_and_in_old_files():
    """Off unless asked (it trades spectral error for loudness error: docs/control.md); run
    files and controller files written before the setting read it as off."""
    from ddsp_synth.control.run import RunSettings

    assert ControllerConfig().level_match is False
    assert _level_net("peak,gain", level_match=False)[0].level_index is None
    settings = RunSettings(("gain",), "autodiff", None, ("x",), TINY, SHORT,
                           control_train_config()).to_dict()
    del settings["controller"]["level_match"], settings["loss"]
    old = RunSettings.from_dict(settings)
    assert old.controller.level_match is False and old.loss == "mr"


def test_log_loss_is_the_distance_rel_spec_measures():
    """``loss="log"`` trains on the log-magnitude term alone (the metric's distance); the
    default adds the linear-magnitude term, which weights loud examples and bins."""
    from types import SimpleNamespace

    from ddsp_synth.control.data import Examples
    from ddsp_synth.control.run import RunSettings
    from ddsp_synth.control.train import loss_of
    from ddsp_synth.dsp.spectral import mr_log_distance

    net, declared = _level_net("peak,gain", level_match=False)
    chain = build_chain("peak,gain", SR, "autodiff")
    x = torch.from_numpy(np.stack([_tone(0.5, seed=s, level=0.5) for s in range(2)]))
    batch = Examples(x, 0.5 * x.flip(-1), x, ["a", "b"])
    with torch.no_grad():
        out, _ = chain(x, net.predict(x, x))
        metric = float(mr_log_distance(out, batch.target).mean())
        losses = {}
        for loss in ("log", "mr"):
            settings = RunSettings(("peak", "gain"), "autodiff", None, ("x",), net.config,
                                   SHORT, control_train_config(), loss=loss)
            run = SimpleNamespace(net=net, controller=net, chain=chain, settings=settings)
            losses[loss] = float(loss_of(run, batch))
    assert losses["log"] == pytest.approx(metric, rel=1e-5)
    assert losses["mr"] > losses["log"] + 0.01
    with pytest.raises(ControlError, match="unknown loss 'l2'"):
        RunSettings(("gain",), "autodiff", None, ("x",), TINY, SHORT, control_train_config(),
                    loss="l2")


# ----------------------------------------------------------------------------- loudness
def test_bs1770_reference_values():
    """The K-weighting's 48 kHz coefficients are checked in test_tone (one implementation:
    ddsp_synth.dsp.loudness); here the levels BS.1770 gives for known signals."""
    for sr in (48000, 44100):
        t = np.arange(5 * sr) / sr
        sine = np.sin(2 * np.pi * 997 * t)  # full-scale 997 Hz in one channel: -3.01 LUFS
        assert integrated_loudness(sine, sr) == pytest.approx(-3.01, abs=0.01)
        assert integrated_loudness(0.1 * sine, sr) == pytest.approx(-23.01, abs=0.01)
        # silence is gated out (only the blocks across the sine's end count: ungated, the
        # 8 s would read -25.0); two channels of the same sine add 3 dB
        padded = np.concatenate([0.1 * sine, np.zeros(3 * sr)])
        assert integrated_loudness(padded, sr) == pytest.approx(-23.01, abs=0.2)
        assert integrated_loudness(np.stack([sine, sine]), sr) == pytest.approx(0.0, abs=0.02)


def test_rule_baseline_matches_tone_and_loudness():
    from ddsp_synth.dsp.spectral import mr_log_distance

    rng = np.random.default_rng(0)
    ref = _tone(3.0, seed=1) + 0.02 * rng.standard_normal(3 * SR).astype(np.float32)
    from scipy.signal import butter, lfilter

    b, a = butter(2, 1000 / (SR / 2))
    dull = (0.3 * lfilter(b, a, ref)).astype(np.float32)  # darker and 10 dB quieter
    out = rule_baseline(dull, ref, SR)
    assert out.shape == dull.shape
    assert integrated_loudness(out, SR) == pytest.approx(integrated_loudness(ref, SR), abs=0.1)

    def dist(x):
        return float(mr_log_distance(torch.from_numpy(x)[None], torch.from_numpy(ref)[None]))

    assert dist(out) < 0.5 * dist(dull)


# ----------------------------------------------------------------------------- data
def test_pairs_are_matched_split_and_checked(gain_pairs, tmp_path):
    src = PairsSource(gain_pairs / "in", gain_pairs / "out", SR, SHORT)
    assert src.describe()["held_out"] == ["take4.wav"]
    b = src.batch(np.random.default_rng(0), 3)
    assert b.input.shape == (3, 4000) and b.reference is None
    assert torch.allclose(b.target, b.input * 10 ** (6 / 20), atol=1e-5)  # 24-bit FLAC
    held = src.batch(np.random.default_rng(0), 2, held_out=True)
    assert all(n.startswith("take4.wav@") for n in held.names)
    again = src.batch(np.random.default_rng(0), 3)
    assert torch.equal(again.input, b.input)
    # a file without its partner, and a pair at two rates: one line each
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sf.write(tmp_path / "a" / "x.wav", _tone(0.5), SR)
    sf.write(tmp_path / "a" / "y.wav", _tone(0.5), SR)
    sf.write(tmp_path / "b" / "x.wav", _tone(0.5), 22050)
    with pytest.raises(ControlError, match="y.wav has no partner"):
        PairsSource(tmp_path / "a", tmp_path / "b", SR, SHORT)
    sf.write(tmp_path / "b" / "y.wav", _tone(0.5), SR)
    with pytest.raises(ControlError, match="at 16000 Hz but its target .* at 22050 Hz"):
        PairsSource(tmp_path / "a", tmp_path / "b", SR, SHORT)
    with pytest.raises(ControlError, match="is the input folder: there would be nothing"):
        PairsSource(tmp_path / "a", tmp_path / "a" / ".." / "a", SR, SHORT)


def test_a_run_that_fails_before_its_first_step_leaves_nothing_in_the_way(gain_pairs,
                                                                          tmp_path):
    """Bad pairs stop a new run at once: the folder it made goes, so the corrected command
    runs without --force or --resume (it said 'already holds a run'); a folder that was
    there keeps what it held."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (gain_pairs / "out").iterdir():
        sf.write(bad / f.name, _tone(1.5, 22050), 22050)  # targets at another rate
    run = tmp_path / "run"
    with pytest.raises(ControlError, match="at 22050 Hz"):
        _train(run, pairs=(gain_pairs / "in", bad), steps=2)
    assert not run.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ControlError, match="at 22050 Hz"):
        _train(kept, pairs=(gain_pairs / "in", bad), steps=2)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    summary = _train(run, pairs=(gain_pairs / "in", gain_pairs / "out"), steps=2)
    assert summary["step"] == 2
    # a folder holding another run is refused, and keeps every file of that run
    other = tmp_path / "other"
    other.mkdir()
    for name in ("run.json", "log.jsonl"):
        (other / name).write_text((run / name).read_text())
    (other / "tb").mkdir()
    with pytest.raises(TrainingError, match="already holds a run"):
        _train(other, pairs=(gain_pairs / "in", gain_pairs / "out"), steps=2)
    assert sorted(p.name for p in other.iterdir()) == ["log.jsonl", "run.json", "tb"]
    # a run that has not written its controller yet says so (not "missing controller.json")
    halfway = tmp_path / "halfway"
    halfway.mkdir()
    (halfway / "run.json").write_text((run / "run.json").read_text())
    with pytest.raises(UserError, match="this training run has no controller yet"):
        load_controller(halfway)


def test_style_examples_are_parts_of_one_processed_recording(recordings):
    """Input, target and reference come from one window: with a linear, time-invariant
    chain (gain) the target is the input scaled, and the reference is the rest of the same
    processed window."""
    chain = build_chain("gain", SR, "autodiff")
    declared, fixed, devices = declared_params(chain)
    renderer, kind = render_chain(["gain"], SR, n_workers=0)
    cfg = ControlDataConfig(segment_seconds=0.5, reference_seconds=0.3, held_out_fraction=0.25,
                            workers=0, input_processed=1.0)
    src = StyleSource([recordings], SR, renderer, declared, devices, cfg)
    b = src.batch(np.random.default_rng(3), 4)
    assert kind == "real" and b.input.shape == (4, 8000) and b.reference.shape == (4, 4800)
    ratio = (b.target.abs().sum(1) / b.input.abs().sum(1)).numpy()
    direct = (b.target / torch.where(b.input.abs() > 1e-3, b.input, torch.ones(1)))
    for i in range(4):
        mask = b.input[i].abs() > 1e-3
        assert np.allclose(direct[i][mask].numpy(), ratio[i], rtol=1e-3)
    assert len(set(np.round(ratio, 3))) == 4  # each example its own random settings
    # held-out examples come from the last quarter of each 4 s file
    held = src.batch(np.random.default_rng(0), 6, held_out=True)
    assert all(float(n.split("@")[1]) >= 3.0 - 1e-6 for n in held.names)
    renderer.close()


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_style_inputs_as_recorded_or_processed(recordings, fraction):
    """With ``input_processed`` 0 every input is the recording's part as it was (the
    target is exactly it through the style's settings), with 1 none is, and in between some
    are; the targets and references do not depend on it."""
    chain = build_chain("gain", SR, "autodiff")
    declared, fixed, devices = declared_params(chain)
    renderer, _ = render_chain(["gain"], SR, n_workers=0)
    batches = {}
    for f in (fraction, 1.0):
        cfg = ControlDataConfig(segment_seconds=0.5, reference_seconds=0.3, workers=0,
                                held_out_fraction=0.25, input_processed=f)
        src = StyleSource([recordings], SR, renderer, declared, devices, cfg)
        batches[f] = (src.batch(np.random.default_rng(5), 16), src.last_settings)
    renderer.close()
    b, settings = batches[fraction]
    assert torch.equal(b.target, batches[1.0][0].target)
    assert torch.equal(b.reference, batches[1.0][0].reference)
    style_gain = torch.from_numpy(10.0 ** (settings[16:, 0] / 20.0)).float()
    as_recorded = [bool(torch.allclose(b.input[i] * style_gain[i], b.target[i], atol=1e-5))
                   for i in range(16)]
    assert sum(as_recorded) == {0.0: 16, 1.0: 0}.get(fraction, sum(as_recorded))
    if fraction == 0.5:
        assert 3 <= sum(as_recorded) <= 13


def test_runs_from_before_input_processed_read_as_processed():
    from ddsp_synth.control.run import RunSettings

    d = {"chain": ["gain"], "method": "autodiff", "pairs": None, "style": ["x"],
         "controller": {}, "data": {"workers": 0}, "train": {}}
    assert RunSettings.from_dict(d).data.input_processed == 1.0
    d["data"]["input_processed"] = 0.0
    assert RunSettings.from_dict(d).data.input_processed == 0.0


# ----------------------------------------------------------------------------- training
def _train(run, pairs=None, style=None, chain="gain", method="autodiff", steps=40, lr=3e-2,
           controller=TINY, **kw):
    cfg = control_train_config(steps=steps, learning_rate=lr, warmup_steps=1, **{**QUIET, **kw})
    return train_controller(run, chain, method, pairs=pairs, style=style, controller=controller,
                            data=SHORT, config=cfg, workers=1, show_progress=False)


def _predicted_gain(run, gain_pairs):
    net, _ = load_controller(run)
    x, _ = sf.read(gain_pairs / "in" / "take4.wav", dtype="float32")
    with torch.no_grad():
        return float(net.predict(torch.from_numpy(x)[None])[0, 0])


@pytest.mark.parametrize("method", ["autodiff", "spsa"])
def test_training_learns_a_gain_from_pairs(gain_pairs, tmp_path, method):
    """The target is the input +6 dB: the controller must learn to say +6 dB, on the
    held-out pair, through the twin and through the real device with SPSA estimates."""
    run = tmp_path / method
    summary = _train(run, pairs=(gain_pairs / "in", gain_pairs / "out"), method=method,
                     steps=60, val_every=60, val_examples=2)
    assert summary["step"] == 60
    assert _predicted_gain(run, gain_pairs) == pytest.approx(6.0, abs=1.0)
    assert summary["best"]["val"]["rel_spec"] < 0.3
    meta = json.loads((run / "controller.json").read_text())
    assert meta["chain"][0]["method"] == method and meta["training"]["method"] == method
    assert "6" not in (run / "MODEL_CARD.md").read_text()[:0]  # the card exists and reads
    assert "controller card" in (run / "MODEL_CARD.md").read_text()


def test_resume_is_exact(recordings, tmp_path):
    """Style data rendered by the real devices, SPSA perturbations: 3 + 3 steps resumed
    equal 6 straight."""
    kw = dict(style=[recordings], chain="gain,peak@spsa", controller=ControllerConfig(
        **{**TINY.__dict__, "reference": True}), lr=1e-2, checkpoint_every=3)
    _train(tmp_path / "straight", steps=6, **kw)
    _train(tmp_path / "resumed", steps=3, **kw)
    train_controller(tmp_path / "resumed", config={"steps": 6}, resume=True,
                     show_progress=False)
    a = load_checkpoint_weights(tmp_path / "straight")
    b = load_checkpoint_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = (tmp_path / "straight" / "MODEL_CARD.md").read_text()
    assert "inputs with random processing of their own to undo: 100%" in card
    with pytest.raises(TrainingError, match="already holds a run"):
        _train(tmp_path / "resumed", steps=1, **kw)


def load_checkpoint_weights(run):
    from safetensors.torch import load_file

    last = list_checkpoints(Path(run))[-1]
    assert last.name == "step-0000006"
    return load_file(str(last / "model.safetensors"))


def test_hybrid_and_proxy_train_through_the_compressor_proxy(recordings, tmp_path):
    for method in ("hybrid", "proxy"):
        summary = _train(tmp_path / method, style=[recordings], chain="compressor,gain",
                         method=method, steps=2, controller=ControllerConfig(
                             **{**TINY.__dict__, "reference": True}))
        assert summary["step"] == 2 and math.isfinite(summary["final_loss"])
        meta = json.loads((tmp_path / method / "controller.json").read_text())
        assert [e["method"] for e in meta["chain"]] == [method, method]


HANGING_DEVICE = """
import sys, time, pathlib, soundfile as sf
counter = pathlib.Path(sys.argv[4])
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
if n >= int(sys.argv[5]):
    time.sleep(60)
x, sr = sf.read(sys.argv[1], dtype="float32")
sf.write(sys.argv[2], x * 10 ** (float(sys.argv[3]) / 20), sr, subtype="FLOAT")
"""


def test_a_hanging_device_stops_training_with_its_name_and_keeps_a_checkpoint(gain_pairs,
                                                                              tmp_path):
    script = tmp_path / "dev.py"
    script.write_text(HANGING_DEVICE)
    device = tmp_path / "slowgain.json"
    device.write_text(json.dumps({
        "name": "slowgain", "timeout_s": 3,
        "command": [sys.executable, str(script), "{input}", "{output}", "{gain_db:.3f}",
                    str(tmp_path / "count"), "20"],
        "params": [{"name": "gain_db", "unit": "dB", "min": -12, "max": 12, "default": 0}]}))
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="training stopped at step 3: device 'slowgain'"):
        _train(run, pairs=(gain_pairs / "in", gain_pairs / "out"), chain=str(device),
               method="spsa", steps=10, checkpoint_every=1)
    assert list_checkpoints(run)[-1].name == "step-0000003"


# ----------------------------------------------------------------------------- file + apply
@pytest.fixture(scope="module")
def trained(gain_pairs, tmp_path_factory):
    run = tmp_path_factory.mktemp("ctl") / "run"
    _train(run, pairs=(gain_pairs / "in", gain_pairs / "out"), steps=60, val_every=60,
           val_examples=2)
    return run


def test_controller_file_round_trip_and_damage(trained, tmp_path):
    net, meta = load_controller(trained)
    assert meta["format"] == "ddsp_synth.controller" and meta["sample_rate"] == SR
    x = torch.from_numpy(_tone(0.5))[None]
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("checkpoints", "tb"))
    net2, _ = load_controller(copy)
    assert torch.equal(net.predict(x), net2.predict(x))
    raw = bytearray((copy / "controller.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (copy / "controller.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ControllerFileError, match="checksum"):
        load_controller(copy)
    meta["format_version"] = 99
    (copy / "controller.json").write_text(json.dumps(meta))
    with pytest.raises(ControllerFileError, match="version 99 is not supported"):
        load_controller(copy)
    # a description that disagrees with the network it describes (it loaded all the same)
    meta["format_version"] = 1
    for rate in ("abc", 48000):
        (copy / "controller.json").write_text(json.dumps({**meta, "sample_rate": rate}))
        with pytest.raises(ControllerFileError, match="its description says sample_rate"):
            load_controller(copy)


def test_loaded_style_controller_has_its_level_path(recordings, tmp_path):
    """The file's chain gives the devices back: a loaded controller finds its output gain
    (as trained), through the SPSA black box too."""
    run = tmp_path / "style"
    _train(run, style=[recordings], chain="peak,gain", method="spsa", steps=2, lr=1e-6,
           controller=ControllerConfig(**{**TINY.__dict__, "reference": True,
                                          "level_match": True}))
    net, _ = load_controller(run)
    assert net.level_index == 3  # after the peak's three values
    x = torch.from_numpy(_tone(1.0, level=0.05))[None]
    gains = [float(net.predict(x, x * 10 ** (db / 20))[0, 3]) for db in (-10.0, 10.0)]
    assert gains[1] - gains[0] == pytest.approx(20.0, abs=2.0)


def test_apply_any_rate_stereo_same_settings_and_chunks(trained, monkeypatch):
    from ddsp_synth.control import apply as apply_mod

    sr = 44100
    left, right = _tone(2.0, sr, 300.0, 1), _tone(2.0, sr, 450.0, 2, level=0.1)
    stereo = np.stack([left, right])
    whole = apply_controller(str(trained), stereo, sr)
    g = whole.preset["chain"][0]["params"]["gain_db"]
    assert g == pytest.approx(6.0, abs=1.0)
    assert whole.audio.shape == stereo.shape and whole.rendered_by == "real"
    np.testing.assert_allclose(whole.audio, stereo * 10 ** (g / 20), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(apply_mod, "CHUNK_SECONDS", 0.3)
    chunked = apply_mod.apply_controller(str(trained), stereo, sr)
    np.testing.assert_allclose(chunked.audio, whole.audio, atol=1e-6)
    with pytest.raises(ControlError, match="trained for the chain 'gain', not 'peak'"):
        apply_controller(str(trained), stereo, sr, chain="peak")
    with pytest.raises(ControlError, match="takes no reference"):
        apply_controller(str(trained), stereo, sr, reference=left)


GAIN_COMMAND = """
import sys, soundfile as sf
x, sr = sf.read(sys.argv[1], dtype="float32")
sf.write(sys.argv[2], x * 10 ** (float(sys.argv[3]) / 20), sr, subtype="FLOAT")
"""


def test_a_controller_of_a_command_device_applies_from_any_folder(gain_pairs, tmp_path,
                                                                   monkeypatch):
    """A command-line effect runs once per call from nothing: control apply gives it the
    whole file in one call (it used to refuse: 'cannot continue from one chunk to the
    next'), as fx does. The device file, named relative to the training's working folder
    with a method, is found from any folder, by the controller and by its preset."""
    from ddsp_synth.control.io import apply_file
    from ddsp_synth.rack import read_preset

    work = tmp_path / "work"
    (work / "devs").mkdir(parents=True)
    (work / "devs" / "cmdgain.py").write_text(GAIN_COMMAND)
    (work / "devs" / "cmdgain.json").write_text(json.dumps({
        "name": "cmdgain", "command": [sys.executable, str(work / "devs" / "cmdgain.py"),
                                       "{input}", "{output}", "{gain_db:.4f}"],
        "params": [{"name": "gain_db", "unit": "dB", "min": -12, "max": 12, "default": 0}]}))
    monkeypatch.chdir(work)
    _train(work / "run", pairs=(gain_pairs / "in", gain_pairs / "out"),
           chain="devs/cmdgain.json@spsa", method="spsa", steps=3, val_every=3, val_examples=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    stereo = np.stack([_tone(1.0, SR, 300.0, 1), _tone(1.0, SR, 450.0, 2, level=0.1)])
    applied = apply_controller(str(work / "run"), stereo, SR)
    g = applied.preset["chain"][0]["params"]["gain_db"]
    assert applied.rendered_by == "real"
    np.testing.assert_allclose(applied.audio, stereo * 10 ** (g / 20), rtol=1e-4, atol=1e-6)
    device = (work / "devs" / "cmdgain.json").resolve()
    assert Path(applied.preset["chain"][0]["source"]).resolve() == device  # the file only
    # its preset, saved in a third folder, finds the device file from a fourth
    sf.write(elsewhere / "in.wav", stereo.T, SR)
    preset_out = tmp_path / "presets" / "p.json"
    apply_file(str(work / "run"), elsewhere / "in.wav", tmp_path / "out.wav",
               preset_out=preset_out)
    saved = json.loads(preset_out.read_text())["chain"][0]["source"]
    assert "@" not in saved and (preset_out.parent / saved).resolve() == device
    monkeypatch.chdir(tmp_path / "presets")
    entry = read_preset(preset_out).entries[0]
    assert Path(entry).resolve() == device


def test_chunked_per_frame_rendering_equals_one_pass():
    """Automation through the real compressor in 0.25 s chunks (streams carry its state)
    equals one pass, and a controller's 10 ms frames move onto another rate's grid."""
    from ddsp_synth.control.apply import regrid, render_settings
    from ddsp_synth.stages.params import Param

    sr = 22050
    x = np.stack([_tone(1.0, sr, seed=4, level=0.8)])
    n_frames = -(-x.shape[1] // 220) + 1
    t = np.linspace(0, 1, n_frames)[:, None]
    settings = np.concatenate([-30 + 20 * t, 4 + 0 * t, 5 + 0 * t, 100 + 0 * t], 1)
    one, kind = render_settings(["compressor"], x, sr, settings, n_workers=1,
                                chunk_seconds=10.0)
    parts, _ = render_settings(["compressor"], x, sr, settings, n_workers=1,
                               chunk_seconds=0.25)
    assert kind == "real" and one.shape == x.shape
    np.testing.assert_allclose(parts, one, atol=1e-5)
    declared = (Param("g", "dB", -10, 10, 0), Param("f", "Hz", 20, 8000, 100, "log"))
    curve = np.stack([np.linspace(-10, 10, 11), np.geomspace(20, 8000, 11)], 1)
    moved = regrid(curve, declared, 0.01, 0.005, 21)
    np.testing.assert_allclose(moved[::2], curve, rtol=1e-9)
    assert moved[1, 1] == pytest.approx(math.sqrt(curve[0, 1] * curve[1, 1]))


# ----------------------------------------------------------------------------- commands
def test_control_commands_train_apply_and_refuse(gain_pairs, trained, tmp_path, capsys):
    run = tmp_path / "cli_run"
    assert main(["control", "train", "--chain", "gain", "--pairs", str(gain_pairs / "in"),
                 str(gain_pairs / "out"), "-o", str(run), "--steps", "2", "--quiet",
                 "--segment-seconds", "0.25", "--workers", "1"]) == 0
    assert (run / "controller.json").exists()
    assert main(["control", "train", "-o", str(run), "--resume", "--steps", "3",
                 "--quiet"]) == 0
    assert list_checkpoints(run)[-1].name == "step-0000003"
    wav = tmp_path / "in.wav"
    sf.write(wav, np.stack([_tone(1.0, 48000), _tone(1.0, 48000, seed=5)], 1), 48000)
    out, preset = tmp_path / "out.wav", tmp_path / "p.json"
    capsys.readouterr()
    assert main(["control", "apply", str(trained), str(wav), "-o", str(out),
                 "--preset-out", str(preset)]) == 0
    printed = capsys.readouterr().out
    y, sr = sf.read(out)
    assert sr == 48000 and y.shape == (48000, 2)
    saved = json.loads(preset.read_text())
    assert saved["chain"][0]["device"] == "gain" and '"gain_db"' in printed
    # outputs are not overwritten without --force, and nothing is written on errors
    assert main(["control", "apply", str(trained), str(wav), "-o", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["control", "apply", str(trained), str(wav), "-o", str(trained / "x.wav")]) == 2
    assert "lies inside an input" in capsys.readouterr().err
    assert main(["control", "apply", str(trained), str(wav), "-o", str(tmp_path / "o2.wav"),
                 "--chain", "gain,peak"]) == 2
    err = capsys.readouterr().err
    assert "trained for the chain 'gain'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2.wav").exists()
    bad = tmp_path / "bad"
    (bad / "in").mkdir(parents=True)
    (bad / "out").mkdir()
    sf.write(bad / "in" / "a.wav", _tone(0.5), SR)
    assert main(["control", "train", "--chain", "gain", "--pairs", str(bad / "in"),
                 str(bad / "out"), "-o", str(tmp_path / "r2"), "--steps", "1"]) == 2
    assert "a.wav has no partner" in capsys.readouterr().err


@pytest.fixture(scope="module")
def style_controller():
    from ddsp_synth.control.files import controller_path

    path = controller_path("style")
    if not (path / "controller.json").exists():
        pytest.skip("the shipped style controller is not in this checkout (models/style)")
    return path


def test_style_command_refuses_bad_references(style_controller, tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(song, np.stack([_tone(3.0, 44100), _tone(3.0, 44100, seed=3)], 1), 44100)
    ref = tmp_path / "ref.flac"
    sf.write(ref, _tone(2.0, 24000, 500.0, level=0.05), 24000)
    out = tmp_path / "out.wav"
    assert main(["style", str(song), "--reference", str(ref), "-o", str(out)]) == 0
    y, sr = sf.read(out)
    assert sr == 44100 and y.shape == (3 * 44100, 2) and np.all(np.isfinite(y))
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(silent, np.zeros(48000, np.float32), 48000)
    sf.write(short, _tone(0.1, 48000), 48000)
    for bad, message in ((silent, "the reference is silent"), (short, "the reference is 0.10 s "
                                                                       "long")):
        assert main(["style", str(song), "--reference", str(bad), "-o",
                     str(tmp_path / "x.wav")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x.wav").exists()


def test_shipped_style_controller_describes_itself(style_controller):
    from ddsp_synth.control.files import CARD, read_controller_meta

    meta = read_controller_meta(style_controller)
    assert [e["device"] for e in meta["chain"]] == ["lowshelf", "peak", "peak", "highshelf",
                                                   "compressor", "gain"]
    rows = meta["evaluation"]["rows"]
    rates = [r["sample_rate"] for r in rows]
    assert min(rates) <= 16000 and max(rates) >= 48000
    # measured on held-out material through the real devices: better than doing nothing
    assert all(r["rel_spec"] < 1.0 and r["loudness_lu"] < r["loudness_lu_dry"] for r in rows)
    card = (style_controller / CARD).read_text()
    assert "On material no training saw" in card and "## Rebuild" in card


def test_controllers_are_in_the_package_api():
    import ddsp_synth as ds
    from ddsp_synth import control

    for name in ("train_controller", "apply_controller", "load_controller", "predict_settings",
                 "rule_baseline", "ControllerConfig", "ControlDataConfig"):
        assert getattr(ds, name) is getattr(control, name)
