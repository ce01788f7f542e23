"""Black boxes: the worker pool (parallel items, reset, streams, per-frame automation, crash,
hang, request ids, cleanup), device files, command devices, and the black box as a stage.

Worker processes import this module to find the test callables (``_gain_fn``...), so its
module-level imports stay light: torch and the stage code are imported by the tests that use
them (a torch import costs a worker seconds on a busy machine).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ddsp_synth.blackbox.device_files import load_device_file
from ddsp_synth.blackbox.pool import DevicePool
from ddsp_synth.blackbox.specs import CallableSpec, PedalboardSpec
from ddsp_synth.stages.params import DeviceError, Param

SR = 16000


def _noise(n, seed=0, batch=1, scale=0.3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n)) * scale
    x[:, n // 4 : n // 2] *= 0.05  # a quiet stretch: compressor release, filter ringing
    return x


def _pool(entry: str, n_workers: int = 1):
    from ddsp_synth.blackbox.pool import DevicePool
    from ddsp_synth.stages.registry import make_device

    device = make_device(entry, SR)
    return DevicePool(device.spec, SR, n_workers)


def _gain_fn(audio, params, sample_rate):
    return audio * 10 ** (params["gain_db"] / 20)


def _crash_fn(audio, params, sample_rate):
    os._exit(3)


def _hang_fn(audio, params, sample_rate):
    time.sleep(120)
    return audio


GAIN_PARAMS = (Param("gain_db", "dB", -24, 24, 0),)


def test_pool_runs_batch_items_in_parallel_workers_like_in_process():
    spec = CallableSpec("pygain", _gain_fn, GAIN_PARAMS)
    x = _noise(1000, seed=16, batch=5).astype(np.float32)
    params = np.array([[-6.0], [0.0], [3.0], [6.0], [12.0]])
    with DevicePool(spec, SR, n_workers=2) as pool:
        y = pool.process(x, params)
        assert pool.calls == 5
    np.testing.assert_allclose(y, x * 10 ** (params / 20), rtol=1e-6)
    local = DevicePool(spec, SR, n_workers=0).process(x, params)
    np.testing.assert_allclose(local, y)


@pytest.mark.parametrize("class_name,params,values", [
    ("Reverb", (Param("room_size", "", 0.0, 1.0, 0.9),), [0.95]),
    ("Compressor", (Param("threshold_db", "dB", -60, 0, -24), Param("ratio", "", 1, 20, 4),
                    Param("attack_ms", "ms", 0.1, 100, 10), Param("release_ms", "ms", 5, 1000,
                                                                    100)),
     [-40.0, 10.0, 1.0, 1000.0]),
])
def test_worker_resets_device_between_calls(class_name, params, values):
    pb = pytest.importorskip("pedalboard")
    burst = np.zeros(SR // 2, np.float32)
    burst[:2000] = 0.8 * np.random.default_rng(0).standard_normal(2000)
    probe = np.zeros(SR // 2, np.float32)
    probe[-1000:] = 0.01  # quiet: a leaking compressor envelope would still attenuate it
    # Control: without a reset the same pedalboard object leaks the first call into the next.
    plugin = getattr(pb, class_name)(**{p.name: v for p, v in zip(params, values)})
    plugin(burst[None], SR, reset=False)
    leaked = plugin(probe[None], SR, reset=False)[0]
    fresh = getattr(pb, class_name)(**{p.name: v for p, v in zip(params, values)})(probe[None],
                                                                                   SR)[0]
    assert np.abs(leaked - fresh).max() > 1e-4
    spec = PedalboardSpec(class_name.lower(), class_name, params)
    with DevicePool(spec, SR, n_workers=1) as pool:
        pool.process(burst, np.array(values))
        y = pool.process(probe, np.array(values))
    np.testing.assert_allclose(y, fresh, atol=1e-7)


def test_crashed_worker_gives_one_line_error_and_pool_recovers():
    with DevicePool(CallableSpec("crasher", _crash_fn, GAIN_PARAMS), SR, n_workers=1) as pool:
        with pytest.raises(DeviceError, match=r"device 'crasher': worker crashed .*exit code 3"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))
    spec = CallableSpec("pygain", _gain_fn, GAIN_PARAMS)
    with DevicePool(spec, SR, n_workers=1) as pool:
        dead = pool._workers[0].process
        dead.kill()  # dies between calls: replaced before the next one
        dead.wait()
        np.testing.assert_allclose(pool.process(np.ones(10, np.float32), np.array([6.0])),
                                   10 ** (6 / 20), rtol=1e-6)
        assert pool._workers[0].process is not dead


def test_hung_worker_times_out_with_clear_error():
    t0 = time.monotonic()
    with DevicePool(CallableSpec("sleeper", _hang_fn, GAIN_PARAMS), SR, n_workers=1,
                    timeout_s=1.0) as pool:
        with pytest.raises(DeviceError, match="'sleeper': worker did not answer within the "
                                              "timeout"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))
        assert pool._workers[0] is None  # killed, replaced on the next call
    assert time.monotonic() - t0 < 30


def test_unpicklable_callable_is_refused():
    spec = CallableSpec("lam", lambda a, p, s: a, GAIN_PARAMS)
    with pytest.raises(DeviceError, match="cannot be sent to a worker process"):
        DevicePool(spec, SR, n_workers=1)
    assert DevicePool(spec, SR, n_workers=0).process(np.ones(4, np.float32),
                                                     np.array([0.0])).sum() == 4


def _write_device_file(tmp_path, command, params=None, name="pygain"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({
        "name": name, "command": command,
        "params": params or [{"name": "gain_db", "unit": "dB", "min": -24, "max": 24,
                              "default": 0}]}))
    return path


GAIN_SCRIPT = ("import sys, soundfile as sf; x, sr = sf.read(sys.argv[1], dtype='float32'); "
               "sf.write(sys.argv[2], x * 10 ** (float(sys.argv[3]) / 20), sr, subtype='FLOAT')")


def test_command_device_from_json_file(tmp_path):
    path = _write_device_file(tmp_path, [sys.executable, "-c", GAIN_SCRIPT, "{input}", "{output}",
                                         "{gain_db:.4f}"])
    from ddsp_synth.stages.registry import make_device

    device = make_device(str(path), SR)
    assert device.name == "pygain" and device.twin is None
    x = _noise(800, seed=17, batch=2).astype(np.float32)
    with DevicePool(device.spec, SR, n_workers=2) as pool:
        y = pool.process(x, np.array([[6.0], [-6.0]]))
    np.testing.assert_allclose(y, x * 10 ** (np.array([[6.0], [-6.0]]) / 20), rtol=1e-4)


def test_command_device_errors(tmp_path):
    bad = _write_device_file(tmp_path, ["cp", "{input}", "{output}", "{drive}"], name="bad")
    with pytest.raises(DeviceError, match=r"unknown parameter '\{drive\}'"):
        load_device_file(bad)
    noout = _write_device_file(tmp_path, ["cp", "{input}"], name="noout")
    with pytest.raises(DeviceError, match=r"must contain '\{output\}'"):
        load_device_file(noout)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DeviceError, match="damaged device file"):
        load_device_file(tmp_path / "broken.json")
    failing = _write_device_file(tmp_path, [sys.executable, "-c",
                                            "import sys; sys.exit('boom: no luck')", "{input}",
                                            "{output}", "{gain_db}"], name="failing")
    with _pool(str(failing)) as pool:
        with pytest.raises(DeviceError, match="'failing': command exited with 1: boom: no luck"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))


@pytest.mark.skipif(not any(os.access(os.path.join(d, "sox"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="sox not installed")
def test_sox_command_device(tmp_path):
    path = _write_device_file(tmp_path, ["sox", "{input}", "{output}", "gain", "{gain_db:.3f}"],
                              name="soxgain")
    x = _noise(1600, seed=18).astype(np.float32) * 0.1
    with _pool(str(path)) as pool:
        y = pool.process(x, np.array([[-6.0]]))
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), atol=2e-4)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "devices"
CALF_COMPRESSOR = "http://calf.sourceforge.net/plugins/MonoCompressor"


def _run_directly(tmp_path, x, argv_fn):
    """The command run by hand on ``x`` (float WAV in, WAV out): the reference."""
    import soundfile as sf

    sf.write(tmp_path / "in.wav", x, SR, subtype="FLOAT")
    subprocess.run(argv_fn(str(tmp_path / "in.wav"), str(tmp_path / "out.wav")), check=True,
                   capture_output=True)
    return sf.read(tmp_path / "out.wav", dtype="float32")[0]


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_example_sox_device_equals_sox_run_by_hand(tmp_path):
    x = (_noise(16000, seed=19)[0] * 0.5).astype(np.float32)
    with _pool(str(EXAMPLES / "sox_overdrive.json")) as pool:
        y = pool.process(x, np.array([18.0, 35.0]))
    ref = _run_directly(tmp_path, x, lambda i, o: ["sox", i, "-e", "floating-point", o,
                                                   "overdrive", "18.00", "35.0"])
    np.testing.assert_allclose(y, ref[: len(x)], atol=1e-6)
    assert np.abs(y - x).max() > 0.1  # it distorts


def _has_lv2_plugin(uri: str) -> bool:
    if shutil.which("lv2file") is None:
        return False
    listing = subprocess.run(["lv2file", "--list"], capture_output=True, text=True).stdout
    return uri in listing.split()


@pytest.mark.skipif(not _has_lv2_plugin(CALF_COMPRESSOR),
                    reason="lv2file or the Calf LV2 plugins not installed (make system)")
def test_example_lv2_device_equals_lv2file_run_by_hand(tmp_path):
    """An LV2 plugin (Calf's mono compressor) as a black box through lv2file."""
    x = (_noise(16000, seed=20)[0] * 0.5).astype(np.float32)
    with _pool(str(EXAMPLES / "calf_compressor.json")) as pool:
        y = pool.process(x, np.array([0.05, 6.0, 5.0, 100.0]))
    ref = _run_directly(tmp_path, x, lambda i, o: [
        "lv2file", "-i", i, "-o", o, "-p", "threshold:0.050000", "-p", "ratio:6.0000", "-p",
        "attack:5.000", "-p", "release:100.00", "-p", "makeup:1", CALF_COMPRESSOR])
    np.testing.assert_allclose(y, ref[: len(x)], atol=1e-6)
    loud, quiet = slice(12000, 16000), slice(5000, 7000)  # _noise: a quiet stretch at 1/4-1/2
    gain_loud = np.std(y[loud]) / np.std(x[loud])
    gain_quiet = np.std(y[quiet]) / np.std(x[quiet])
    assert gain_loud < 0.5 * gain_quiet  # it compresses: loud parts turned down more


def test_missing_pedalboard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pedalboard", None)
    spec = PedalboardSpec("peak", "PeakFilter", (Param("gain_db", "dB", -24, 24, 0),))
    with pytest.raises(DeviceError, match=r"optional 'effects' extra \(GPL-3.0\)"):
        DevicePool(spec, SR, n_workers=0)


# --------------------------------------------------------------------------------------
# Streams, per-frame automation, the black box as a stage
# --------------------------------------------------------------------------------------
def test_a_stream_in_chunks_equals_the_whole_signal():
    pytest.importorskip("pedalboard")
    values = np.array([-35.0, 8.0, 2.0, 300.0])  # a slow release: state crosses the chunks
    x = _noise(SR, seed=30, batch=2).astype(np.float32) * 2
    with _pool("compressor", n_workers=2) as pool:
        whole = pool.process(x, values)
        ids = pool.open_streams(2)
        chunks = [pool.process(x[:, a:b], values, streams=ids)
                  for a, b in ((0, 1), (1, 3000), (3000, 9000), (9000, SR))]
        pool.end_streams(ids)
        fresh = pool.process(x[:, 9000:], values)  # an independent item starts from rest
    np.testing.assert_allclose(np.concatenate(chunks, 1), whole, atol=1e-6)
    assert np.abs(fresh - whole[:, 9000:]).max() > 1e-3


def test_per_frame_settings_run_as_automation_block_by_block():
    from ddsp_synth.stages.params import Param

    spec = CallableSpec("pygain", _gain_fn, GAIN_PARAMS)
    hop, n_frames = 100, 10
    x = np.ones(hop * n_frames, np.float32)
    gains = np.linspace(-12, 6, n_frames + 1)[:, None]  # n_blocks + 1 frames
    with pytest.raises(DeviceError, match="takes one setting per call"):
        DevicePool(spec, SR, n_workers=0).process(x, gains, hop=hop)
    pb = pytest.importorskip("pedalboard")
    gain_spec = PedalboardSpec("gain", "Gain", (Param("gain_db", "dB", -24, 24, 0),))
    with DevicePool(gain_spec, SR, n_workers=1) as pool:
        y = pool.process(x, gains, hop=hop)
    mid = 0.5 * (gains[:-1, 0] + gains[1:, 0])  # block t: the mean of frames t and t + 1
    np.testing.assert_allclose(y.reshape(n_frames, hop)[:, -1], 10 ** (mid / 20), rtol=1e-5)
    assert pb is not None


def test_black_box_stage_streams_and_refuses_what_cannot_stream(tmp_path):
    pytest.importorskip("pedalboard")
    import torch

    from ddsp_synth.gradients.methods import real_stage
    from ddsp_synth.stages.registry import make_device

    stage = real_stage([make_device("compressor", SR), make_device("peak", SR)], hop=160,
                       n_workers=1)
    params = torch.tensor([[-35.0, 8.0, 2.0, 300.0, 1000.0, 6.0, 1.0]])
    x = torch.tensor(_noise(8000, seed=31), dtype=torch.float32) * 2
    with stage:
        whole, none = stage(x, params)
        state = stage.initial_state(1)
        a, state = stage(x[:, :3200], params, state)
        b, state = stage(x[:, 3200:], params, state)
        stage.end_state(state)
    assert none is None and stage._pool is None  # closed with the context
    torch.testing.assert_close(torch.cat([a, b], 1), whole, atol=1e-6, rtol=0)
    path = _write_device_file(tmp_path, [sys.executable, "-c", GAIN_SCRIPT, "{input}", "{output}",
                                         "{gain_db:.4f}"])
    with real_stage([make_device(str(path), SR)], hop=160, n_workers=0) as command:
        with pytest.raises(DeviceError, match="cannot continue from one chunk to the next"):
            command.initial_state(1)


def _slow_gain_fn(audio, params, sample_rate):
    time.sleep(3.0)  # the Ctrl-C at 0.2 s must land inside the call, even on a busy machine
    return audio * 10 ** (params["gain_db"] / 20)


def test_an_interrupted_call_leaves_no_stale_answer():
    """KeyboardInterrupt while the pool waits: the next call gets its own answer, not the
    interrupted one's."""
    import signal
    import threading

    spec = CallableSpec("slow", _slow_gain_fn, GAIN_PARAMS)
    x = np.ones(10, np.float32)
    # Python's own Ctrl-C handler, whatever an earlier test in this process left installed
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with DevicePool(spec, SR, n_workers=1) as pool:
            timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                pool.process(x, np.array([20.0]))  # would answer 10x
            timer.join()
            y = pool.process(x, np.array([0.0]))
    finally:
        signal.signal(signal.SIGINT, old)
    np.testing.assert_allclose(y, x, rtol=1e-6)


def _leaky_fn(audio, params, sample_rate, _keep=[]):  # noqa: B006 (the leak is the point)
    _keep.append(np.ones(40 * 2**20 // 8))  # 40 MB per call, never freed
    return audio


def test_a_leaking_worker_is_replaced_past_its_memory_ceiling():
    spec = CallableSpec("leaky", _leaky_fn, GAIN_PARAMS)
    with DevicePool(spec, SR, n_workers=1, max_rss_mb=250) as pool:
        pids = set()
        for _ in range(8):
            pids.add(pool._workers[0].process.pid if pool._workers[0] else None)
            pool.process(np.ones(10, np.float32), np.array([0.0]))
        pids.add(pool._workers[0].process.pid if pool._workers[0] else None)
    assert len(pids - {None}) >= 2  # at least one replacement


# --------------------------------------------------------------------------------------
# Nothing outlives the pool: real processes, real signals, checked with ps
# --------------------------------------------------------------------------------------
PARENT_SCRIPT = """
import sys, numpy as np
from ddsp_synth.blackbox.device_files import load_device_file
from ddsp_synth.blackbox.pool import DevicePool
spec = load_device_file(sys.argv[1])
pool = DevicePool(spec, 16000, n_workers=2, timeout_s=600)
print("busy", flush=True)
pool.process(np.zeros((2, 100), np.float32), np.zeros((2, 1)))
"""


def _processes_with(marker: str) -> list[str]:
    import subprocess

    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_killing_the_parent_leaves_no_worker_command_or_folder(tmp_path, how):
    """A device command that starts children of its own (a shell running ``sleep``) is busy
    in two workers when the parent dies: afterwards no worker, no command, no child and no
    temporary folder is left."""
    import signal
    import subprocess

    marker = f"ddsp_orphan_{how}_{os.getpid()}"
    device = _write_device_file(tmp_path, ["sh", "-c", f"sleep 300 # {marker} {{gain_db}}",
                                           "{input}", "{output}"], name="sleeper")
    private_tmp = tmp_path / "tmp"  # the folders of this run only, whatever else runs
    private_tmp.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT, str(device)],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(private_tmp)})
    assert parent.stdout.readline().strip() == "busy"
    deadline = time.monotonic() + 60
    while len(_processes_with(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # both commands running
    assert len(_processes_with(marker)) >= 2
    parent.send_signal(getattr(signal, how))
    # what is tested is that nothing is left, not how fast: the parent stops each busy worker
    # in turn (a few seconds each), and a full suite on 2 shared cores once took over 30 s
    parent.wait(90)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_processes_with(marker)
                                           or _processes_with("ddsp_synth.blackbox.worker")):
        time.sleep(0.2)
    assert _processes_with(marker) == []
    assert [p for p in _processes_with("ddsp_synth.blackbox.worker")
            if str(parent.pid) in p.split()[-1:]] == []
    assert (tmp_path / "tmp").is_dir() and os.listdir(tmp_path / "tmp") == []


def test_a_command_timeout_kills_the_whole_process_group(tmp_path):
    marker = f"ddsp_timeout_{os.getpid()}"
    device = _write_device_file(tmp_path, ["sh", "-c", f"sleep 300 # {marker} {{gain_db}}",
                                           "{input}", "{output}"], name="slowcmd")
    data = json.loads(device.read_text())
    data["timeout_s"] = 1
    device.write_text(json.dumps(data))
    with DevicePool(load_device_file(device), SR, n_workers=1) as pool:
        with pytest.raises(DeviceError, match="took longer than 1 s"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))
    time.sleep(0.5)
    assert _processes_with(marker) == []


def _loud_fn(audio, params, sample_rate):
    return audio


def test_a_command_that_prints_gigabytes_is_not_kept_in_memory(tmp_path):
    flood = ("import sys; w = sys.stdout.buffer.write; [w(b'x' * (1 << 20)) for _ in range(300)];"
             " sys.stderr.write('e' * 3_000_000 + '\\nlast words\\n'); sys.exit(2)")
    device = _write_device_file(tmp_path, [sys.executable, "-c", flood, "{input}", "{output}",
                                           "{gain_db}"], name="flood")
    with DevicePool(load_device_file(device), SR, n_workers=1) as pool:
        with pytest.raises(DeviceError, match="exited with 2: last words"):
            pool.process(np.zeros(100, np.float32), np.array([0.0]))


def test_a_plugin_load_error_keeps_its_reasons_on_one_line():
    from ddsp_synth.blackbox.processors import plugin_error

    err = ValueError("Unable to load plugin /x/fx.vst3: unsupported plugin format or load "
                     "failure. Errors were:\n  Wrong architecture (aarch64)\n\n  libfoo.so: "
                     "cannot open shared object file\n")
    text = plugin_error(err)
    assert "\n" not in text and "Errors were: Wrong architecture (aarch64)" in text
    assert text.endswith("libfoo.so: cannot open shared object file")
    assert plugin_error(ValueError("")) == "ValueError"


def test_a_registered_python_function_is_a_device_of_any_chain(monkeypatch):
    """ds.register_device: a Python function as a named black box in make_chain, match and
    presets (the README's 'Python callables'), run in worker processes."""
    import ddsp_synth as ds
    from ddsp_synth.match import MatchConfig
    from ddsp_synth.stages import registry

    monkeypatch.setattr(registry, "_REGISTERED", {})
    ds.register_device("pygain", _gain_fn, [{"name": "gain_db", "unit": "dB", "min": -24,
                                              "max": 24, "default": 0}])
    dry = _noise(8000)[0]
    target = dry * 10 ** (-7 / 20)
    result = ds.match(dry, target, SR, "pygain", "cma", steps=12,
                      config=MatchConfig(n_workers=1, search_points=4))
    assert abs(result.preset["chain"][0]["params"]["gain_db"] + 7.0) < 0.3
    assert result.preset["chain"][0]["device"] == "pygain"
    assert "source" not in result.preset["chain"][0]
    chain = ds.make_chain("peak,pygain@spsa", SR)
    assert [p.name for p in chain.params][-1] == "pygain.gain_db"
    chain.close()
    for name, fn, message in (("peak", _gain_fn, "built-in"), ("my gain", _gain_fn, "plain"),
                              ("x", 3, "not callable")):
        with pytest.raises(DeviceError, match=message):
            ds.register_device(name, fn, GAIN_PARAMS)
    with pytest.raises(DeviceError, match="registered here: pygain"):
        ds.make_chain("pygian", SR)
