"""``ddsp-synth live`` (issue 21): the real-time core without a sound card, then the command
for real through a JACK server with its dummy backend (``jackd -d dummy -r 48000 -p 256``),
a second client playing into ``ddsp-synth:in`` / ``midi_in`` and recording ``ddsp-synth:out``.

What the JACK tests assert: the output follows the input's pitch (the project's own
``compute_f0``); the latency reported is the latency measured from the recording (the lag at
which the recording matches the same input rendered offline by the same path: to the
sample); MIDI notes come out at their pitches, and each note-on's sound starts in the
recording where the engine says it did; no late blocks (with a generous margin: this runs on
a shared 2-core machine; the default margin's figures are ``bench/bench_live.py``'s); bad
setups give one line and a non-zero exit. They skip, saying why, without jackd or
JACK-Client (``make test`` installs both).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from ddsp_synth.cli import main
from ddsp_synth.signals import print_or_drop
from ddsp_synth.soundcard import backends
from ddsp_synth.soundcard.measure import lag_by_reference, pitch_error_cents
from ddsp_synth.soundcard.resample import StreamResampler
from ddsp_synth.soundcard.runner import LiveRunner, Ring, sync_prefill
from ddsp_synth.soundcard.status import NoteLatency, Timings, onset_after

REPO = Path(__file__).resolve().parents[1]
RATE = 48000
CHILD_ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
             "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
ONE_LINE = re.compile(r"^ddsp-synth live: error: [^\n]+\n?$")


# ------------------------------------------------------------------------ the core, no card
def test_resampler_gives_the_same_samples_whatever_the_blocks_and_a_known_delay():
    rng = np.random.default_rng(0)
    for rate_in, rate_out in ((48000, 16000), (16000, 48000), (44100, 16000), (16000, 44100)):
        r = StreamResampler(rate_in, rate_out)
        x = rng.standard_normal(rate_in // 2).astype(np.float32)
        whole = r.push(x)
        assert len(whole) == r.n_out(len(x))
        r.reset()
        parts, i = [], 0
        while i < len(x):
            n = int(rng.integers(0, 700))
            parts.append(r.push(x[i : i + n]))
            i = min(i + n, len(x))
            assert sum(map(len, parts)) == r.n_out(i)
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        # a 1 kHz sine comes out as the same sine, delayed by exactly delay_s
        t = np.arange(rate_in) / rate_in
        r.reset()
        y = r.push(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
        ref = np.sin(2 * np.pi * 1000 * (np.arange(len(y)) / rate_out - r.delay_s))
        assert np.abs(y - ref)[rate_out // 10 : -rate_out // 100].max() < 1e-4
        assert abs(r.delay_s - 0.001) < 1 / rate_in


def test_resampler_keeps_aliases_and_images_out():
    t = np.arange(48000) / 48000
    down = StreamResampler(48000, 16000)
    y = down.push(np.sin(2 * np.pi * 12000 * t).astype(np.float32))  # would alias to 4 kHz
    assert np.sqrt(np.mean(y[1600:] ** 2)) < 1e-4
    up = StreamResampler(16000, 48000)
    y = up.push(np.sin(2 * np.pi * 5000 * np.arange(16000) / 16000).astype(np.float32))
    spec = np.abs(np.fft.rfft(y[4800:4800 + 32768] * np.hanning(32768)))
    f = np.fft.rfftfreq(32768, 1 / 48000)
    image = spec[np.abs(f - 11000) < 200].max()  # 16 kHz - 5 kHz
    assert image < 1e-4 * spec[np.abs(f - 5000) < 200].max()


def test_ring_reads_silence_before_the_start_and_counts_what_is_missing():
    ring = Ring(16)
    out = np.empty(6, np.float32)
    assert ring.read_into(out, -6) == 0 and not out.any()  # before the stream: not late
    ring.write(np.arange(1, 11, dtype=np.float32))
    assert ring.read_into(out, -2) == 0
    np.testing.assert_array_equal(out, [0, 0, 1, 2, 3, 4])
    assert ring.read_into(out, 7) == 3  # samples 10..12 are not written yet
    np.testing.assert_array_equal(out, [8, 9, 10, 0, 0, 0])
    ring.write(np.arange(11, 21, dtype=np.float32))  # wraps around the 16-sample buffer
    assert ring.read_into(out, 12) == 0
    np.testing.assert_array_equal(out, [13, 14, 15, 16, 17, 18])
    np.testing.assert_array_equal(ring.read(15, 20), [16, 17, 18, 19, 20])


def test_sync_prefill_is_the_tightest_delay_a_model_in_the_callback_would_keep():
    hop, block, rate = 480, 128, 48000

    def n_out(n):  # a path that returns one hop once 700 samples past its start are in
        return hop * max(0, (n - 700) // hop + 1)

    p = sync_prefill(n_out, block, rate)

    def late(prefill):
        return [c for c in range(1, 3000) if c * block - n_out(c * block) > prefill]

    assert not late(p) and late(p - 1)


@pytest.fixture(scope="module")
def violin():
    from ddsp_synth.model import load_model

    return load_model("violin")


def test_paths_return_what_n_out_says_and_midi_events_land_in_their_hop(violin):
    from ddsp_synth.soundcard.paths import AudioPath, MidiPath

    model, meta = violin
    path = AudioPath(model, RATE)
    rng = np.random.default_rng(1)
    x = (0.2 * np.sin(2 * np.pi * 330 * np.arange(RATE) / RATE)).astype(np.float32)
    got = i = 0
    while i < len(x):
        n = int(rng.integers(1, 900))
        got += len(path.process(x[i : i + n]))
        i = min(i + n, len(x))
        assert got == path.n_out(i)
    assert path.display()["pitched"] and abs(path.display()["f0_hz"] - 330) < 5

    midi = MidiPath(model, meta, 44100)  # 441 card samples per 10 ms hop
    midi.events.extend([(440, bytes([0x90, 60, 100])), (441, bytes([0x90, 64, 100]))])
    got = 0
    for n in range(0, 44100, 333):
        got += len(midi.process(n))
        assert got == midi.n_out(n)
    assert [(note, hop) for _, note, hop in midi.note_ons] == [(60, 0), (64, 1)]


def _note_on(note):
    return bytes([0x90, note, 100])


def test_midi_engine_starts_a_note_in_its_own_hop_at_its_pitch(violin):
    """Live timing: the block returned by the call that gets a note-on is the note's first,
    and it does not slide from the last note's pitch."""
    import mido

    from ddsp_synth.streaming import MidiLiveEngine

    model, meta = violin
    first = {5: [mido.Message("note_on", note=60, velocity=100)],
             25: [mido.Message("note_off", note=60)]}  # released and silent well before 60
    with_note = {**first, 60: [mido.Message("note_on", note=72, velocity=100)]}

    def play(events, **kw):
        engine = MidiLiveEngine(model, meta, engine="torch", **kw)
        phase = engine.synth.step.state_names.index("phase")
        blocks, phases = [], []
        for h in range(80):
            blocks.append(engine.process(events.get(h, [])))
            phases.append(float(engine.synth.state[phase][0, 0]))
        return np.stack(blocks), phases, engine

    live, phases, engine = play(with_note, attack_on_note_frame=True)
    without, _, _ = play(first, attack_on_note_frame=True)
    assert engine.onset_hops == 0 and engine.n_retuned == 2  # both notes start from silence
    np.testing.assert_array_equal(live[:60], without[:60])
    assert np.any(live[60] != without[60])  # hop 60 returns the note's first block
    # Block 60 (from the silent frame to the note's) runs at the note's pitch throughout: the
    # oscillator's phase advances by exactly one hop of 523.25 Hz (it would slide from 261.6).
    hop, rate = engine.hop, engine.sample_rate
    advance = (phases[60] - phases[59]) % (2 * np.pi)
    expected = (2 * np.pi * 440 * 2 ** ((72 - 69) / 12) * hop / rate) % (2 * np.pi)
    assert abs(advance - expected) < 1e-4  # f0 is a float32 control


def test_midi_path_first_output_is_where_a_note_first_changes_the_output(violin):
    """``first_output`` (what the note-on -> sound figures count to) is the first output
    sample a note changes: nothing earlier differs from a performance without it."""
    from ddsp_synth.soundcard.paths import MidiPath

    model, meta = violin
    path = MidiPath(model, meta, RATE)  # 480 card samples per hop

    def play(events):
        path.reset()
        path.events.extend(events)
        return path.process(RATE // 4)

    base = play([(9000, _note_on(60))])  # a last note, long silent by then
    for stamp in (100, 480, 2000, 4321):  # hop 0 (no frame before it), hop starts, mid-hop
        y = play([(stamp, _note_on(72)), (9000, _note_on(60))])
        hop = path.note_ons[0][2]
        assert hop == stamp // 480
        first = path.first_output(hop)
        assert first == path.up.n_out(160 * max(hop, 1))
        np.testing.assert_array_equal(y[:first], base[:first])
        assert np.any(y[first : first + 3] != base[first : first + 3]), stamp


SIMULATED_CARD_ATTEMPTS = 3


def _simulated_card(make_runner, margin_ms, n_blocks, block, play):
    """A card simulated in a thread: ``play(runner, c)`` for block ``c`` at its block period,
    after ``make_runner().start(margin_ms)``; the runner once it stopped. A stall of the
    shared VM longer than the margin makes blocks late (7 at 60 ms, once, in a full suite on a
    fresh VM), which the exact comparisons cannot allow: up to three performances, one of them
    clean, each on a fresh runner."""
    for attempt in range(SIMULATED_CARD_ATTEMPTS):
        runner = make_runner()
        runner.start(margin_ms=margin_ms)

        def card():
            t0 = time.perf_counter()
            for c in range(n_blocks):
                time.sleep(max(0.0, t0 + c * block / RATE - time.perf_counter()))
                play(runner, c)

        thread = threading.Thread(target=card)
        thread.start()
        thread.join()
        runner.stop()
        assert runner.error is None
        if runner.late_blocks == 0:
            return runner
        if attempt < SIMULATED_CARD_ATTEMPTS - 1:
            warnings.warn(f"{runner.late_blocks} late blocks: playing again")
    assert runner.late_blocks == 0
    return runner


def test_runner_plays_midi_exactly_on_its_schedule_with_a_simulated_card(violin):
    """The MIDI path behind the runner: the card's output is the path's offline output for
    the same stamped events delayed by exactly the prefill, so a note-on's first sample at the
    port is ``first_output(hop) + prefill`` (what the note-on -> sound figures use)."""
    from ddsp_synth.soundcard.paths import MidiPath

    model, meta = violin
    block = 128
    n_blocks = RATE // block
    notes = {40: (17, 64), 200: (101, 67)}  # block -> (offset in it, note)
    y = np.zeros(n_blocks * block, np.float32)

    def play(runner, c):
        events = [(notes[c][0], _note_on(notes[c][1]))] if c in notes else []
        runner.process(None, y[c * block : (c + 1) * block], events)

    runner = _simulated_card(lambda: LiveRunner(MidiPath(model, meta, RATE), RATE, block),
                             20.0, n_blocks, block, play)
    stamps = [c * block + off for c, (off, _) in notes.items()]
    assert [s for s, _, _ in runner.path.note_ons] == stamps
    hops = [h for _, _, h in runner.path.note_ons]

    def offline(events):
        path = MidiPath(model, meta, RATE)
        path.events.extend(events)
        return path.process(len(y))

    p = runner.prefill
    reference = offline([(s, _note_on(n)) for s, (_, n) in zip(stamps, notes.values())])
    np.testing.assert_array_equal(y[p:], reference[: len(y) - p])
    # The first note changes nothing before its first sample at the port, which comes at
    # most the prefill after the note-on (less the note's place in its hop).
    silent = offline([])
    port = runner.path.first_output(hops[0]) + p
    np.testing.assert_array_equal(y[p:port], silent[: port - p])
    assert np.any(y[port : port + 3] != silent[port - p : port - p + 3])
    assert p - 480 < port - stamps[0] <= p + 1


def test_runner_latency_is_exact_and_nothing_is_late_with_a_simulated_card(violin):
    """The runner between a card simulated in a thread (one block per block period) and the
    audio path: the output is the offline rendering delayed by exactly the prefill."""
    from ddsp_synth.audio_io import load_audio
    from ddsp_synth.soundcard.paths import AudioPath

    block = 256
    x = load_audio(REPO / "examples" / "singing_scale.flac", RATE)[: 2 * RATE]
    x = np.concatenate([x, np.zeros(RATE // 4, np.float32)])
    x = x[: len(x) // block * block]
    y = np.zeros_like(x)

    def play(runner, c):
        runner.process(x[c * block : (c + 1) * block], y[c * block : (c + 1) * block])

    runner = _simulated_card(lambda: LiveRunner(AudioPath(violin[0], RATE), RATE, block),
                             60.0, len(x) // block, block, play)
    reference = AudioPath(violin[0], RATE).process(x)
    lag, corr = lag_by_reference(y, reference, range(runner.prefill - 200, runner.prefill + 200),
                                 slice(RATE // 2, len(x) - RATE // 4))
    assert lag == runner.prefill and corr > 0.98
    assert runner.latency_s == pytest.approx((runner.prefill + 576) / RATE)  # 2 x 1 ms + 10 ms


def test_a_recording_that_cannot_be_written_to_its_end_keeps_what_it_holds(tmp_path,
                                                                            monkeypatch):
    """A full disk mid-take: the recording keeps its first part under its own name (not a
    hidden temporary file, not deleted), and says why and how much it holds."""
    import soundfile as sf

    from ddsp_synth.soundcard import record

    ring = Ring(1 << 16)
    rec = record.Recorder(tmp_path / "take.wav", ring, 8000)
    calls = {"n": 0}
    drain = record.Recorder._drain

    def drain_until_full(self, f):
        calls["n"] += 1
        if calls["n"] > 3:
            raise sf.LibsndfileError(0, "System error.")  # what libsndfile says on ENOSPC
        drain(self, f)

    monkeypatch.setattr(record.Recorder, "_drain", drain_until_full)
    monkeypatch.setattr(record, "DRAIN_S", 0.01)
    rec.start()
    for _ in range(40):
        ring.write(np.full(400, 0.25, np.float32))
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while rec.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    message = rec.stop()
    assert message is not None and "could not be written to its end (System error." in message
    kept, sr = sf.read(tmp_path / "take.wav", dtype="float32")
    assert sr == 8000 and 0 < len(kept) == rec.pos and np.all(kept == 0.25)
    assert f"it holds the first {len(kept) / 8000:.1f} s" in message
    assert [p.name for p in tmp_path.iterdir()] == ["take.wav"]  # no temporary file left


def test_a_recording_thread_held_up_longer_than_its_ring_writes_silence_and_keeps_time(
        tmp_path):
    """Samples overwritten before the thread copied them become zeros in the take (which stays
    on the card's clock: every later sample at its own index) and are counted."""
    import soundfile as sf

    from ddsp_synth.soundcard import record
    from ddsp_synth.soundcard.status import summary_text

    ring = Ring(1024)
    x = np.arange(1, 3001, dtype=np.float32)
    ring.write(x[:2000])  # the thread has not started: 976 samples are overwritten
    ring.write(x[2000:])
    rec = record.Recorder(tmp_path / "take.wav", ring, 8000)
    rec.start()
    assert rec.stop() is None
    kept, _ = sf.read(tmp_path / "take.wav", dtype="float32")
    assert rec.lost == 3000 - 1024 and len(kept) == 3000
    assert np.all(kept[:1976] == 0) and np.array_equal(kept[1976:], x[1976:])
    rep = {"latency_ms": {"engine": 1.0, "round_trip": 1.0}, "seconds": 1.0, "backend": "jack",
           "sample_rate": 8000, "block_samples": 256, "block_ms": 32.0, "blocks": 1,
           "late_blocks": 0, "late_per_minute": 0.0, "xruns": 0, "margin_blocks": 1,
           "worker_realtime": True, "kind": "audio", "record": "take.wav",
           "compute_per_hop": {"median_ms": 1, "p99_ms": 1, "max_ms": 1},
           "callback": {"median_ms": 1, "p99_ms": 1, "max_ms": 1},
           "record_lost_s": {"take.wav": rec.lost / 8000}}
    assert "take.wav: 0.25 s written as silence" in summary_text(rep)


def test_a_terminal_that_hangs_up_stops_the_status_line_not_the_performance(monkeypatch):
    """After SIGHUP every write to the closed terminal fails with EIO: the status line stops,
    the performance plays to its end, and the summary is dropped instead of raising."""
    import errno
    from types import SimpleNamespace

    from ddsp_synth.soundcard import session as session_mod

    class HungUp:
        writes = 0

        def isatty(self):
            return True

        def write(self, text):
            HungUp.writes += 1
            raise OSError(errno.EIO, "Input/output error")

        def flush(self):
            pass

    runner = SimpleNamespace(rate=1000, n_clock=0)
    ticks = {"n": 0}

    def collect():
        ticks["n"] += 1
        runner.n_clock = 200 * ticks["n"]  # the card plays on: 0.2 s a tick

    fake = SimpleNamespace(
        s=SimpleNamespace(quiet=False, seconds=1.0), runner=runner, _collect=collect,
        problem=lambda: None, backend=SimpleNamespace(check=lambda: None), midi_input=None,
        snapshot=lambda: {})
    monkeypatch.setattr(session_mod, "status_line", lambda snapshot: "status")
    monkeypatch.setattr(session_mod, "TICK_S", 0.001)
    assert session_mod._play(fake, threading.Event(), HungUp()) is None  # played to its end
    assert ticks["n"] >= 5 and HungUp.writes == 1  # one failed write, then no more tries
    print_or_drop("summary", HungUp())  # does not raise


def test_onset_and_timings_helpers():
    rate = 48000
    y = np.concatenate([1e-4 * np.ones(4800), 0.1 * np.ones(4800)]).astype(np.float32)
    assert onset_after(y, 2400, rate) in range(4800, 4800 + 48)
    loud = np.full(9600, 0.3, np.float32)
    assert onset_after(loud, 4800, rate) is None  # sounding before: no onset to measure
    t = Timings()
    values = np.random.default_rng(0).uniform(1.0, 9.0, 10000)
    t.add(values)
    s = t.summary()
    assert s["count"] == 10000 and s["max_ms"] == values.max()
    assert abs(s["median_ms"] / np.median(values) - 1) < 0.011
    assert abs(s["p99_ms"] / np.percentile(values, 99) - 1) < 0.011
    notes = NoteLatency(rate, lambda hop: 5000)
    ring = Ring(1 << 15)
    ring.write(y)
    ring.write(np.zeros(20000, np.float32))
    notes.update([(2400, 60, 0)], ring)
    m = notes.measured[0]
    assert m["first_sample_ms"] == pytest.approx(1e3 * 2600 / rate)
    assert 50 <= m["latency_ms"] <= 51


def test_devices_are_picked_by_number_or_a_unique_part_of_the_name():
    names = ["system:capture_1", "system:capture_2", "probe:out"]
    assert backends.pick(names, "1", "port") == 1
    assert backends.pick(names, "PROBE", "port") == 2
    assert backends.pick(names, "system:capture_1", "port") == 0
    with pytest.raises(backends.LiveError, match="several"):
        backends.pick(names, "capture", "port")
    with pytest.raises(backends.LiveError, match="no port matches 'mic'.*see --list-devices"):
        backends.pick(names, "mic", "port")
    with pytest.raises(backends.LiveError, match="no port number 7"):
        backends.pick(names, "7", "port")


# ------------------------------------------------------------------ bad setups, no server
def _one_line(capsys, code, expected):
    assert code == 2
    err = capsys.readouterr().err
    assert ONE_LINE.match(err), err
    assert expected in err, err


FAKE_DEVICES = [{"name": "USB Mic", "hostapi": 0, "max_input_channels": 1,
                 "max_output_channels": 0, "default_samplerate": 48000.0},
                {"name": "Speakers", "hostapi": 0, "max_input_channels": 0,
                 "max_output_channels": 2, "default_samplerate": 48000.0}]


def test_no_sound_card_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(backends, "portaudio_devices", lambda: [])
    code = main(["live", "--model", "violin", "--backend", "portaudio", "--seconds", "1"])
    _one_line(capsys, code, "no sound card: PortAudio finds no audio device")


def test_unknown_device_is_one_line_listing_the_devices(monkeypatch, capsys):
    pytest.importorskip("sounddevice")
    monkeypatch.setattr(backends, "portaudio_devices", lambda: FAKE_DEVICES)
    monkeypatch.setattr(backends, "device_label", lambda d: d["name"])
    code = main(["live", "--model", "violin", "--backend", "portaudio", "--input", "Focusrite"])
    _one_line(capsys, code, "no input device matches 'Focusrite' (input devices: 0: USB Mic")
    code = main(["live", "--model", "violin", "--backend", "portaudio", "--output", "5"])
    _one_line(capsys, code, "there is no output device number 5 (devices with an output: 1: Speakers)")


def test_missing_model_and_missing_jack_server_are_one_line(monkeypatch, capsys):
    _one_line(capsys, main(["live", "--seconds", "1"]), "name the instrument with --model")
    if backends.jack_module() is None:
        pytest.skip("JACK-Client or libjack is not installed")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "ddsp-test-no-such-server")
    code = main(["live", "--model", "violin", "--backend", "jack", "--seconds", "1"])
    _one_line(capsys, code, "no JACK server is running")


# --------------------------------------------------------------------------- through JACK
@pytest.fixture(scope="module")
def jack_server():
    from ddsp_synth.soundcard.loopback import DummyJackServer, JackUnavailable

    server = DummyJackServer(RATE, 256)
    try:
        server.start()
    except JackUnavailable as err:
        pytest.skip(f"no JACK dummy server for the live tests: {err}")
    yield server
    server.stop()
    assert server.proc.poll() is not None, "jackd is still running"
    left = subprocess.run(["pgrep", "-f", f"jackd -n {server.name}"], capture_output=True)
    assert left.returncode == 1, "a jackd process was left behind"


@pytest.fixture
def probe(jack_server):
    from ddsp_synth.soundcard.loopback import Loopback

    lb = Loopback(jack_server)
    lb.start()
    yield lb
    lb.close()


def Live(server, *argv):
    """``ddsp-synth live ARGV`` in a subprocess on the test server."""
    from ddsp_synth.soundcard.loopback import LiveProcess

    return LiveProcess(server, *argv, env=CHILD_ENV, cwd=REPO)


LIVE_ATTEMPTS = 3


def test_audio_in_through_jack_follows_the_pitch_and_reports_the_latency_it_has(
        jack_server, probe, tmp_path):
    from ddsp_synth.audio_io import load_audio
    from ddsp_synth.model import load_model
    from ddsp_synth.soundcard.paths import AudioPath

    melody = load_audio(REPO / "examples" / "singing_scale.flac", RATE)[: 5 * RATE]
    report, record, got = tmp_path / "live.json", tmp_path / "live.wav", tmp_path / "in.wav"
    # One performance may meet a stall of the shared VM: longer than the 30 ms margin (seen
    # once in a full suite: one late block in 7 s, then three clean runs alone), or one that
    # disturbs the probe's own clock (69 % of the samples equal, once, in CI's full suite); one
    # of three performances must be clean.
    for attempt in range(LIVE_ATTEMPTS):
        for f in (report, record, got):
            f.unlink(missing_ok=True)
        live = Live(jack_server, "--model", "violin", "--backend", "jack", "--seconds", "7",
                    "--input", "probe-play:out", "--output", "probe-rec:in", "--margin-ms",
                    "30", "--report", str(report), "--record", str(record), "--record-input",
                    str(got))
        assert "latency in->out" in live.header()
        start = probe.play(melody, delay_s=0.3)
        code, out, err = live.finish()
        assert code == 0, err
        assert "Traceback" not in err and "played 7.0 s on jack at 48000 Hz" in out
        rep = json.loads(report.read_text())
        assert rep["block_samples"] == 256
        sent, got_in = _read(record), _read(got)  # engine out and engine in, on its own clock
        try:
            assert rep["late_blocks"] == 0, f"late blocks at {rep['late_block_times_s']} s"
            # The engine's clock on JACK's, from samples both sides saw: output (what we sent
            # is what the next client recorded) and input (what the player sent is what we
            # got, but for the cycles in which this loaded machine ran the player late: JACK
            # then repeats its buffer).
            heard, d_out, d_in = _on_jack_clock(probe, rep, sent, got_in)
            break
        except AssertionError as err_:
            if attempt == LIVE_ATTEMPTS - 1:
                raise
            warnings.warn(f"{err_}: playing again")
    assert d_in == d_out  # one callback takes the input and gives the output
    offset = start - d_in  # the melody's first sample on the engine's clock
    # Measured: the lag at which the output is the offline rendering of the same input.
    reference = AudioPath(load_model("violin")[0], RATE).process(got_in)
    prefill = round(rep["latency_ms"]["prefill"] * RATE / 1000)
    lag, corr = lag_by_reference(heard, reference, range(prefill - 960, prefill + 961),
                                 slice(offset + RATE // 2, offset + len(melody)))
    assert corr > 0.98 and lag == prefill
    delay = rep["latency_samples"] - prefill  # the path's own (resampling + one hop)
    assert 1e3 * (lag + delay) / RATE == pytest.approx(rep["latency_ms"]["engine"], abs=0.03)
    # The instrument plays the melody's pitches.
    cents = pitch_error_cents(melody, heard[offset:], RATE, rep["latency_samples"])
    assert len(cents) > 100 and np.median(np.abs(cents)) < 25 and np.mean(np.abs(cents) < 50) > 0.9


def _read(path):
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32")
    assert sr == RATE
    return audio


def _on_jack_clock(probe, rep, sent, got_in=None):
    """The recording from the engine's sample 0, and the JACK frame of the engine's sample 0
    found from its output and (given ``got_in``) from its input."""
    from ddsp_synth.soundcard.measure import offset_by_equality

    lead = 4 * rep["block_samples"]  # JACK's frame time of a late callback may be a period off
    first = rep["first_frame"] - lead
    heard = probe.recording(first, len(sent) + 2 * lead)
    breaks = probe.breaks_between(first, first + len(sent) + 2 * lead)
    d_out, share = offset_by_equality(heard, sent, lead, lead)
    # --record holds what was sent to the card: what the next client got
    assert share > 0.99, f"{share:.1%} of the samples equal; the probe's clock broke: {breaks}"
    d_in = None
    if got_in is not None:
        played = probe.recording(first, len(got_in) + 2 * lead, played=True)
        d_in, share = offset_by_equality(played, got_in, lead, lead)
        assert share > 0.95, f"{share:.1%} of the input equal; the probe's clock broke: {breaks}"
    return (heard[d_out : d_out + len(sent)], first + d_out,
            None if d_in is None else first + d_in)


MIDI_NOTES = (60, 64, 67, 72, 62)  # C4 E4 G4 C5 D4: inside the trumpet's range


def _note_events(gap_s=0.5, length_s=0.3):
    events = []
    for i, note in enumerate(MIDI_NOTES):
        on = int((0.1 + gap_s * i + 0.0037 * i) * RATE)  # a different phase on the 10 ms grid
        events += [(on, bytes([0x90, note, 100])), (on + int(length_s * RATE), bytes([0x80, note, 0]))]
    return events


def _check_midi_performance(rep, heard, sent_frames, engine_zero):
    """Notes at their pitches; every onset where the engine measured it (``heard`` and the
    stamps on the engine's clock, whose sample 0 is JACK frame ``engine_zero``)."""
    notes = rep["note_on_to_sound"]["notes"]
    assert [m["note"] for m in notes] == list(MIDI_NOTES)
    for m, sent in zip(notes, sent_frames):
        stamp = round(m["time_s"] * RATE)
        assert 0 <= stamp - (sent - engine_zero) <= rep["block_samples"]  # JACK delivers per cycle
        onset = onset_after(heard, stamp, RATE)
        assert onset is not None and 1e3 * (onset - stamp) / RATE == pytest.approx(m["latency_ms"], abs=0.05)
        assert m["first_sample_ms"] <= m["latency_ms"]
        # the note sounds in the block of its own 10 ms hop, which the schedule plays the
        # prefill after the hop began: at most the prefill after the note-on
        prefill = rep["latency_ms"]["prefill"]
        assert prefill - 10.0 < m["first_sample_ms"] <= prefill + 0.05
        seg = heard[onset + int(0.08 * RATE) : onset + int(0.25 * RATE)]
        f0 = _pitch(seg)
        assert abs(1200 * np.log2(f0 / (440 * 2 ** ((m["note"] - 69) / 12)))) < 50


def _pitch(seg):
    from ddsp_synth.audio_io import resample_audio
    from ddsp_synth.features import FeatureConfig, compute_f0

    f0, conf = compute_f0(resample_audio(seg, RATE, 16000), FeatureConfig())
    return float(np.median(f0[conf > 0.5]))


MIDI_ATTEMPTS = 3


def test_midi_in_through_jack_plays_the_notes_and_measures_note_on_to_sound(
        jack_server, probe, tmp_path):
    report, record = tmp_path / "midi.json", tmp_path / "midi.wav"
    events = _note_events()
    # As for audio in: a stall of the shared VM may disturb one performance (a block late, or
    # the probe's own recorder missing cycles: 71 % of the samples equal, once, in a full
    # suite; 89 % then 96 %, twice in a row, in another, where alone it passed twice); one of
    # three must be clean.
    for attempt in range(MIDI_ATTEMPTS):
        for f in (report, record):
            f.unlink(missing_ok=True)
        live = Live(jack_server, "--model", "trumpet", "--midi", "probe-play:midi_out",
                    "--seconds", "4", "--output", "probe-rec:in", "--margin-ms", "20",
                    "--report", str(report), "--record", str(record))
        live.header()
        start = probe.play(None, events, delay_s=0.3)
        code, out, err = live.finish()
        assert code == 0, err
        assert "note-on -> sound: 5 notes" in out
        rep = json.loads(report.read_text())
        try:
            assert rep["late_blocks"] == 0, f"late blocks at {rep['late_block_times_s']} s"
            heard, zero, _ = _on_jack_clock(probe, rep, _read(record))
            break
        except AssertionError as err_:
            if attempt == MIDI_ATTEMPTS - 1:
                raise
            warnings.warn(f"{err_}: playing again")
    _check_midi_performance(rep, heard, [start + off for off, d in events if d[0] == 0x90], zero)


def test_portaudio_backend_and_an_rtmidi_virtual_port_through_jack(jack_server, probe, tmp_path):
    """The same command on PortAudio (its JACK host API: ports PortAudio:out_N) with MIDI
    from a virtual port opened through python-rtmidi (its JACK API here: no ALSA sequencer)."""
    pytest.importorskip("sounddevice")
    pytest.importorskip("rtmidi")
    if os.path.exists("/dev/snd/seq"):
        pytest.skip("the ALSA sequencer is here: rtmidi opens its virtual port there, where "
                    "this test's JACK client cannot play into it")
    report = tmp_path / "pa.json"
    live = Live(jack_server, "--model", "trumpet", "--backend", "portaudio", "--midi", "virtual",
                "--seconds", "4", "--margin-ms", "20", "--report", str(report))
    assert "PortAudio system (JACK Audio Connection Kit)" in live.header()
    probe.player.connect("probe-play:midi_out", "ddsp-synth:midi_in")
    probe.recorder.connect("PortAudio:out_0", "probe-rec:in")
    events = _note_events()
    start = probe.play(None, events, delay_s=0.3)
    code, out, err = live.finish()
    assert code == 0, err
    rep = json.loads(report.read_text())
    assert rep["backend"] == "portaudio" and rep["latency_ms"]["device_out"] > 0
    notes = rep["note_on_to_sound"]["notes"]
    assert [m["note"] for m in notes] == list(MIDI_NOTES)
    # rtmidi's messages are stamped on arrival (no JACK frame): check pitch and order only
    heard = probe.recording(start, 4 * RATE)
    for m, (off, _) in zip(notes, [e for e in events if e[1][0] == 0x90]):
        onset = onset_after(heard, off, RATE)
        assert onset is not None and onset - off < 0.2 * RATE
        f0 = _pitch(heard[onset + int(0.08 * RATE) : onset + int(0.25 * RATE)])
        assert abs(1200 * np.log2(f0 / (440 * 2 ** ((m["note"] - 69) / 12)))) < 50


def test_a_midi_port_that_vanishes_ends_the_performance_with_a_summary_and_one_line(
        jack_server, probe):
    live = Live(jack_server, "--model", "trumpet", "--midi", "probe-play:midi_out",
                "--seconds", "30", "--output", "probe-rec:in")
    live.header()
    time.sleep(1.0)
    probe.close()  # the keyboard's program quits
    code, out, err = live.finish(timeout_s=30)
    assert code == 2
    assert "played " in out and "note-on -> sound" in out  # the summary first
    assert err.strip().splitlines()[-1] == \
        "ddsp-synth live: error: the MIDI port probe-play:midi_out vanished"
    assert "Traceback" not in err


def test_the_ports_can_be_connected_as_soon_as_they_appear(jack_server):
    """A patchbay or DAW connects a port when it appears: the ports are registered as the
    client activates, not while the model loads (connecting failed for 2-3 s)."""
    live = Live(jack_server, "--model", "violin", "--seconds", "4")
    client = jack_server.client("probe-early")
    client.activate()
    sink = client.inports.register("in")
    try:
        deadline = time.monotonic() + 120
        while not client.get_ports("ddsp-synth:out") and time.monotonic() < deadline:
            time.sleep(0.002)
        appeared = time.monotonic()
        while True:
            try:
                client.connect("ddsp-synth:out", sink)
                break
            except Exception:  # noqa: BLE001 - jack.JackError: not active yet
                assert time.monotonic() - appeared < 0.2, "the port could not be connected"
                time.sleep(0.002)
        code, out, err = live.finish()
        assert code == 0 and "Traceback" not in err
    finally:
        client.close()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_kill_or_a_closed_terminal_stop_cleanly_and_keep_the_take(jack_server, sig,
                                                                        tmp_path):
    """Ctrl-C, ``kill`` and a closed terminal all end the performance as its end would: the
    summary, the report, the recording under its name, the ports freed."""
    import soundfile as sf

    take, report = tmp_path / "take.wav", tmp_path / "take.json"
    live = Live(jack_server, "--model", "violin", "--connect", "--record", str(take),
                "--report", str(report))
    live.header()
    time.sleep(1.0)
    client = jack_server.client("probe-ports")
    assert {p.name for p in client.get_ports("ddsp-synth")} == {"ddsp-synth:in", "ddsp-synth:out"}
    live.proc.send_signal(getattr(signal, sig))
    code, out, err = live.finish()
    assert code == 0 and "Traceback" not in err
    assert "played " in out and "latency input -> output" in out
    assert client.get_ports("ddsp-synth") == []
    client.close()
    played_s = json.loads(report.read_text())["seconds"]
    kept, sr = sf.read(take)
    assert sr == RATE and played_s > 0.9 and abs(len(kept) / sr - played_s) < 0.2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.json", "take.wav"]


@pytest.mark.parametrize("argv, expected", [
    (["--model", "violin", "--backend", "jack", "--rate", "44100"],
     "the JACK server runs at 48000 Hz, not 44100 Hz"),
    (["--model", "violin", "--block", "128"], "the JACK server's period is 256 samples, not 128"),
    (["--model", "violin", "--input", "microphone"], "no JACK capture port matches 'microphone'"),
    (["--model", "violin", "--midi", "keyboard"], "no MIDI port matches 'keyboard'"),
    (["--model", "no_such_instrument"], "no_such_instrument"),
    (["--model", "violin", "--backend", "portaudio", "--rate", "44100"],
     "refuses 44100 Hz"),
    # options that would do nothing in this mode
    (["--model", "violin", "--transpose", "2"], "--transpose shifts MIDI notes"),
    (["--model", "trumpet", "--midi", "--pitch-shift", "3"],
     "--pitch-shift is for the audio input: there is none with --midi (use --transpose)"),
    (["--model", "violin", "--backend", "portaudio", "--connect"], "--connect connects JACK"),
])
def test_bad_setups_through_jack_are_one_line(jack_server, argv, expected):
    if "portaudio" in argv:
        pytest.importorskip("sounddevice")
    code, out, err = Live(jack_server, *argv, "--seconds", "2").finish(timeout_s=120)
    assert code == 2 and ONE_LINE.match(err), err
    assert expected in err, err


class _SlowOnce:
    """An identity path (output sample n = input sample n) whose worker stalls once: for
    the runner's slip test without a model."""

    kind = "audio"
    delay_s = 0.0

    def __init__(self, stall_at: int, stall_s: float):
        self.stall_at, self.stall_s, self.calls = stall_at, stall_s, 0

    def warm_up(self):
        return [0.1] * 20

    def n_out(self, n_in: int) -> int:
        return n_in

    def process(self, block):
        self.calls += 1
        if self.calls == self.stall_at:
            time.sleep(self.stall_s)
        return np.array(block, np.float32)


def _play_through(runner, x, block):
    y = np.zeros_like(x)
    t0 = time.perf_counter()
    for c in range(len(x) // block):
        time.sleep(max(0.0, t0 + c * block / RATE - time.perf_counter()))
        runner.process(x[c * block : (c + 1) * block], y[c * block : (c + 1) * block])
    runner.stop()
    return y


@pytest.mark.parametrize("fixed", [False, True])
def test_a_late_block_slips_the_schedule_without_skipping_or_repeating_audio(fixed):
    """With the warm-up's margin, a stalled worker's late blocks delay the schedule by the
    samples they missed: every input sample is played once, in order, and the latency grows
    by the silence played; with --margin-ms the schedule stays put and the stall is lost."""
    block = 64
    n = RATE // 2
    x = (np.arange(1, n + 1) / n).astype(np.float32)  # every sample its own value
    runner = LiveRunner(_SlowOnce(stall_at=100, stall_s=0.012), RATE, block)
    runner.start(margin_ms=1.0 if fixed else None)
    start_prefill = runner.prefill
    y = _play_through(runner, x, block)
    assert runner.error is None and runner.late_blocks >= 1
    played = np.rint(y[y != 0] * n).astype(np.int64)
    if fixed:
        assert runner.slips == [] and runner.prefill == start_prefill
        assert np.any(np.diff(played) > 1)  # the stall's samples were never played
        return
    assert len(runner.slips) >= 1 and runner.prefill == start_prefill + runner.slip_samples
    assert runner.slip_samples == runner.late_samples  # each late sample delays the rest
    np.testing.assert_array_equal(np.diff(played), 1)  # none skipped, none repeated
    assert played[0] == 1
    p = runner.prefill  # after the last slip, output n is input n - prefill
    k = np.arange(runner.slips[-1][0] + block, len(y))
    np.testing.assert_array_equal(y[k], x[k - p])
    assert runner.latency_s == pytest.approx(p / RATE)
