"""Streaming engine: one-hop step == offline rendering, runtime export, streaming features,
the live engine."""

import numpy as np
import pytest
import torch

from ddsp_synth.dsp.convolution import fft_convolve, frequency_sampling_fir, time_varying_fir
from ddsp_synth.dsp.oscillators import harmonic_synthesis
from ddsp_synth.features import FeatureConfig, compute_f0, compute_loudness
from ddsp_synth.model import load_model, models_dir
from ddsp_synth.streaming import (INPUT_NAMES, LiveEngine, StreamingFeatures, StreamingSynth,
                                  SynthStep, example_inputs, export_runtime, stream_audio)

from conftest import synth_tone

HOP = 160


def curves(n=240, seed=0):
    """f0 with vibrato, a glide to 2.9 kHz (harmonics cross Nyquist) and an unvoiced gap."""
    t = np.arange(n) / 100.0
    f0 = 330.0 * 2 ** (0.3 * np.sin(2 * np.pi * 0.7 * t))
    glide = slice(int(0.6 * n), int(0.8 * n))
    f0[glide] = np.geomspace(300.0, 2900.0, glide.stop - glide.start)
    f0[n // 4 : n // 4 + 10] = 0.0
    loud = -35.0 + 12.0 * np.sin(2 * np.pi * 0.4 * t)
    return f0.astype(np.float32), loud.astype(np.float32)


def offline(model, f0, loud, noise, gains):
    """The whole-signal rendering written out from the dsp functions, with the same noise."""
    with torch.no_grad():
        p, _ = model.controls(torch.from_numpy(f0)[None, :, None],
                              torch.from_numpy(loud)[None, :, None])
        f0_hz, amp, dist, mags = torch.split(p, [1, 1, 100, 65], -1)
        harm, _ = harmonic_synthesis(f0_hz, amp, dist, model.config.synth.sample_rate, HOP)
        nz = time_varying_fir(torch.from_numpy(noise)[None], frequency_sampling_fir(mags),
                              HOP)[:, : len(noise)]
        dry = gains[0] * harm + gains[1] * nz
        wet = fft_convolve(dry, model.synth.reverb.impulse_response())[:, : dry.shape[1]]
        g = model.synth.reverb.dry_level()  # the mix keeps the room's level
        return ((1 - gains[2]) * g * dry + gains[2] * wet)[0].numpy()


def streamed(model, f0, loud, noise, gains, engine="torch"):
    s = StreamingSynth(model, dict(zip(("harmonic", "noise", "reverb"), gains)), engine=engine)
    out = s.process_frames(f0, loud, noise)
    return np.concatenate([out, s.flush(noise[-HOP:])])


@pytest.fixture(scope="module")
def trumpet():
    return load_model(models_dir() / "trumpet")[0]


@pytest.mark.parametrize("gains", [(1.0, 1.0, 1.0), (0.7, 1.6, 0.4)])
def test_streaming_equals_offline_after_one_hop(trumpet, gains):
    f0, loud = curves()
    noise = np.random.default_rng(1).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    ref = offline(trumpet, f0, loud, noise, gains)
    got = streamed(trumpet, f0, loud, noise, gains)
    assert np.all(got[:HOP] == 0.0)  # one hop of algorithmic latency
    assert len(got) == len(ref) + HOP
    err = np.abs(got[HOP:] - ref).max()
    assert err < 1e-4, err
    assert np.abs(ref).max() > 0.05  # a real signal, not two silences


def test_streaming_small_trained_model_and_reset(exported):
    model, _ = load_model(exported)
    f0, loud = curves(120)
    noise = np.random.default_rng(2).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    ref = offline(model, f0, loud, noise, (1.0, 1.0, 1.0))
    s = StreamingSynth(model)
    first = s.process_frames(f0, loud, noise)
    s.reset()  # a fresh stream gives the same audio again
    again = s.process_frames(f0, loud, noise)
    assert np.array_equal(first, again)
    assert np.abs(first[HOP:] - ref[: len(first) - HOP]).max() < 1e-4


def test_step_batch_equals_singles(trumpet):
    step = SynthStep(trumpet).eval()
    args = example_inputs(step, batch=3, seed=4)
    with torch.no_grad():
        state = args[4:]
        for _ in range(3):  # build up a non-trivial state
            out = step(*args[:4], *state)
            state = out[1:]
        batched = step(*args[:4], *state)
        for b in range(3):
            single = step(*[a[b : b + 1] for a in args[:4]], state[0][:, b : b + 1],
                          *[s[b : b + 1] for s in state[1:]])
            assert torch.allclose(single[0], batched[0][b : b + 1], atol=1e-6)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_runtime_equals_pytorch(trumpet, tmp_path, fmt):
    path = export_runtime(trumpet, tmp_path / f"step.{'pt' if fmt == 'torchscript' else 'onnx'}",
                          fmt)
    step = SynthStep(trumpet).eval()
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path))
        run = loaded
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == INPUT_NAMES

        def run(*inputs):
            feed = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)}
            return tuple(torch.from_numpy(o) for o in sess.run(None, feed))
    f0, loud = curves(60)
    gen = torch.Generator().manual_seed(0)
    gains = torch.tensor([[0.9, 1.2, 0.8]])
    s_ref, s_got = step.initial_state(1), step.initial_state(1)
    worst = 0.0
    with torch.no_grad():
        for i in range(len(f0)):
            inputs = (torch.tensor([[f0[i]]]), torch.tensor([[loud[i]]]),
                      torch.rand(1, HOP, generator=gen) * 2 - 1, gains)
            ref = step(*inputs, *s_ref)
            got = run(*inputs, *s_got)  # each runtime carries its own state
            s_ref, s_got = ref[1:], got[1:]
            worst = max(worst, float((ref[0] - got[0]).abs().max()))
    assert worst < 1e-4, worst
    assert float(ref[0].abs().max()) > 1e-3


def test_streaming_engines_agree(trumpet):
    f0, loud = curves(80)
    noise = np.random.default_rng(3).uniform(-1, 1, len(f0) * HOP).astype(np.float32)
    eager = streamed(trumpet, f0, loud, noise, (1, 1, 1), "torch")
    for engine in ("torchscript", "onnx"):
        assert np.abs(streamed(trumpet, f0, loud, noise, (1, 1, 1), engine) - eager).max() < 1e-4


def test_streaming_features_match_offline_grid():
    fc = FeatureConfig()
    x = synth_tone(3.0, 16000, 247.0)
    sf_ = StreamingFeatures(fc)
    frames = []
    for i in range(0, len(x), 256):  # blocks that are not a multiple of the hop
        frames += sf_.push(x[i : i + 256])
    frames += sf_.finish()
    loud = compute_loudness(x, fc)
    f0_off, conf = compute_f0(x, fc)
    assert len(frames) == len(loud)
    ld = np.array([f.loudness_db for f in frames])
    assert np.abs(ld - loud).max() < 0.01
    f0 = np.array([f.f0_hz for f in frames])
    voiced = conf > 0.5
    cents = 1200 * np.abs(np.log2(f0[voiced] / f0_off[voiced]))
    assert voiced.sum() > 150 and np.median(cents) < 5.0, (voiced.sum(), np.median(cents))


def test_live_engine_returns_a_hop_per_hop_after_the_lookahead(trumpet):
    x = synth_tone(1.0, 16000, 330.0)
    live = LiveEngine(trumpet, engine="torch")
    sizes, outs = [], []
    for i in range(0, len(x), HOP):
        y = live.process(x[i : i + HOP])
        sizes.append(len(y))
        outs.append(y)
    # frame 0 needs samples up to 512 (half a CREPE window): blocks 0-2 return nothing
    assert sizes[:3] == [0, 0, 0] and set(sizes[3:]) == {HOP}
    assert live.latency_samples == 512 + HOP
    streamed_out, report = stream_audio(trumpet, x, HOP, engine="torch")
    got = np.concatenate(outs)
    assert np.array_equal(streamed_out[: len(got)], got)  # the simulation is the engine
    assert report["blocks"] == len(sizes) and np.abs(got).max() > 0.01


def test_midi_live_engine_equals_offline_midi_render(trumpet):
    """MIDI events hop by hop through the live engine give the offline MIDI rendering,
    one hop later (noise off, so both render the same deterministic signal)."""
    from ddsp_synth.midi import midi_to_curves, read_midi
    from ddsp_synth.streaming import MidiLiveEngine
    from ddsp_synth.transfer import TransferOptions, render

    meta = trumpet.meta
    song = models_dir().parent / "examples" / "ode_to_joy.mid"
    fr = trumpet.config.synth.frame_rate_hz
    curves = midi_to_curves(song, meta["dataset_stats"], fr, transpose=-12.0)
    offline = render(trumpet, curves["f0_hz"], curves["loudness_db"],
                     TransferOptions(amounts={"noise": 0.0}))
    live = MidiLiveEngine(trumpet, meta, transpose_semitones=-12.0, engine="torch",
                          amounts={"noise": 0.0})
    events = read_midi(song).parts[0].events
    frames = [round(t * fr) for t, _, _ in events]
    out, e = [], 0
    for i in range(len(curves["f0_hz"])):
        batch = []
        while e < len(events) and frames[e] <= i:
            batch.append(events[e][2])
            e += 1
        out.append(live.process(batch))
    got = np.concatenate(out + [live.synth.flush()])
    assert live.latency_samples == HOP
    assert np.all(got[:HOP] == 0.0) and len(got) == len(offline) + HOP
    assert np.abs(got[HOP:] - offline).max() < 1e-4
    assert np.abs(offline).max() > 0.05


def _gate_run(confidence, f0_hz, **options):
    from ddsp_synth.streaming.features import Frame
    from ddsp_synth.streaming.live import LiveOptions, PitchedGate

    gate = PitchedGate(LiveOptions(**options))
    return np.array([gate(Frame(f0_hz=float(f), confidence=float(c), loudness_db=-20.0))
                     for f, c in zip(f0_hz, confidence)])


def test_pitched_gate_bridges_a_legato_dip_and_mutes_a_long_unpitched_stretch():
    """A note change whose confidence dips for 3 frames while the pitch jumps keeps sounding;
    an unpitched stretch (noise: the pitch jumps about) is muted once it outlasts bridge_ms."""
    rng = np.random.default_rng(0)
    f0 = np.r_[np.full(20, 440.0), np.full(3, 500.0), np.full(20, 494.0),
               rng.uniform(100, 1000, 30), np.full(10, 330.0)]
    conf = np.r_[np.full(20, 0.9), np.full(3, 0.3), np.full(20, 0.9),
                 np.full(30, 0.3), np.full(10, 0.9)]
    sounding = _gate_run(conf, f0, bridge_ms=80.0)
    assert sounding[:43].all()  # the dip at the note change is bridged
    assert sounding[43:51].all() and not sounding[52:73].any()  # 80 ms, then muted
    assert sounding[73:].all()
    # With no bridge the dip is muted, as the engine did before (min_confidence alone).
    assert not _gate_run(conf, f0, bridge_ms=0.0)[20:23].any()


def test_pitched_gate_keeps_a_steady_low_confidence_note():
    """A low reed's note read at confidence 0.3 with a still pitch sounds after STEADY_MS;
    the same confidence with the pitch jumping about stays muted."""
    steady = _gate_run(np.full(40, 0.3), 60.0 * 2 ** (np.arange(40) % 2 * 0.01 / 12),
                       bridge_ms=0.0)
    assert not steady[:5].any() and steady[5:].all()
    jumping = _gate_run(np.full(40, 0.3), np.tile([100.0, 160.0], 20), bridge_ms=0.0)
    assert not jumping.any()


def test_live_engine_plays_through_a_confidence_dip(trumpet):
    """LiveEngine.controls: a dip in confidence inside a note keeps the loudness (not muted)."""
    from ddsp_synth.streaming.features import Frame

    live = LiveEngine(trumpet)
    frames = [Frame(f0_hz=440.0, confidence=c, loudness_db=-25.0)
              for c in [0.9] * 10 + [0.2, 0.25] + [0.9] * 5]
    loud = [live.controls(fr)[1] for fr in frames]
    assert loud == [-25.0] * len(frames)
    live.reset()
    assert live.controls(Frame(f0_hz=440.0, confidence=0.2, loudness_db=-25.0))[1] == -120.0
