"""The running instances of black-box devices (built inside a worker process from a spec).

A processor has ``process(audio [n_samples] float32, params, hop) -> [n_samples]`` with
parameters in natural units: one setting ``[P]``, or one per frame ``[n_frames, P]`` on the
frame grid (frame ``t`` at sample ``t * hop``; ``n_blocks + 1`` frames, or ``n_blocks`` with
the last one held), applied as automation: block ``t`` runs with the mean of frames ``t`` and
``t + 1``. A processor keeps its state from one call to the next until :meth:`reset`: the
pool resets it before every independent item, and keeps it for the calls of one stream.
Commands and callables run once per call from nothing: they take one setting and no
stream.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import tempfile

import numpy as np

from ..errors import one_line
from ..stages.params import DeviceError, Param
from .optional import import_pedalboard

# Only the end of a failing command's error output is kept (a command that prints
# gigabytes must not fill the worker's memory).
STDERR_TAIL_BYTES = 4096


def automation(params: np.ndarray, n_samples: int, hop: int | None):
    """(start, stop, setting [P]) per block: one block for one setting; per frame, block
    ``t`` takes the mean of frames ``t`` and ``t + 1`` (the last frame held)."""
    if params.ndim == 1:
        return [(0, n_samples, params)]
    if hop is None:
        raise DeviceError("per-frame parameters need a hop")
    n_blocks = -(-n_samples // hop)
    if params.shape[0] == n_blocks:
        params = np.concatenate([params, params[-1:]])
    if params.shape[0] != n_blocks + 1:
        raise DeviceError(f"{params.shape[0]} parameter frames for {n_blocks} blocks of "
                          f"{hop} samples")
    mid = 0.5 * (params[:-1] + params[1:])
    return [(t * hop, min(n_samples, (t + 1) * hop), mid[t]) for t in range(n_blocks)]


class Processor:
    """A running device. Subclasses implement :meth:`run` (one setting, continuing the
    state) and, where the device has state, :meth:`reset`."""

    carries_state = True

    def __init__(self, spec, sample_rate: int):
        self.spec = spec
        self.sample_rate = sample_rate
        self.params = spec.params

    def reset(self) -> None:
        pass

    def run(self, audio: np.ndarray, setting: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def process(self, audio: np.ndarray, params: np.ndarray, hop: int | None = None
                ) -> np.ndarray:
        """[n_samples] with ``params`` [P] or [n_frames, P] (natural units)."""
        if params.ndim == 2 and not self.carries_state:
            raise DeviceError(f"device '{self.spec.name}' runs once per call from nothing: it "
                              "takes one setting per call, not one per frame")
        blocks = automation(params, len(audio), hop)
        if len(blocks) == 1:
            return self.run(audio, blocks[0][2])
        return np.concatenate([self.run(audio[a:b], p) for a, b, p in blocks])

    def process_all(self, audio: np.ndarray, params: np.ndarray, hop: int | None = None
                    ) -> list[np.ndarray]:
        """Outputs after each stage (one stage unless a chain)."""
        return [self.process(audio, params, hop)]

    def close(self) -> None:
        pass


# pedalboard prepares a plugin for the longest buffer it has been given so far, and preparing
# it again clears its state: a call longer than every earlier one would restart a stream.
# So every reset is followed by one buffer of this size of silence (the state stays at rest),
# and audio is passed in pieces no longer than it.
PEDALBOARD_BLOCK = 4096


class _PluginRunner(Processor):
    """What pedalboard's built-ins and loaded plugins share: settings by attribute, state
    kept between calls (see :data:`PEDALBOARD_BLOCK`)."""

    plugin = None

    def reset(self):
        self.plugin.reset()
        self.plugin.process(np.zeros((1, PEDALBOARD_BLOCK), np.float32), self.sample_rate,
                            reset=False)

    def run(self, audio, setting):
        for p, v in zip(self.params, setting):
            setattr(self.plugin, p.name, float(v))
        x = audio[None].astype(np.float32)
        pieces = [self.plugin.process(x[:, i : i + PEDALBOARD_BLOCK], self.sample_rate,
                                      reset=False) for i in range(0, x.shape[1], PEDALBOARD_BLOCK)]
        out = np.concatenate(pieces, 1) if len(pieces) != 1 else pieces[0]
        return np.asarray(out, np.float32).mean(0)


class PedalboardProcessor(_PluginRunner):
    def __init__(self, spec, sample_rate: int):
        super().__init__(spec, sample_rate)
        self.plugin = getattr(import_pedalboard(), spec.class_name)()
        self.reset()


def second_order_sos(kind: str, cutoff_hz: float, q: float, sample_rate: int) -> np.ndarray:
    """[1, 6] JUCE ``makeLowPass`` (kind "lowpass2") / ``makeHighPass`` ("highpass2")."""
    t = math.tan(math.pi * cutoff_hz / sample_rate)
    high = kind == "highpass2"
    n = t if high else 1.0 / t
    c1 = 1.0 / (1.0 + n / q + n * n)
    a1 = c1 * 2.0 * ((n * n - 1.0) if high else (1.0 - n * n))
    a2 = c1 * (1.0 - n / q + n * n)
    b1 = -2.0 * c1 if high else 2.0 * c1
    return np.array([[c1, b1, c1, 1.0, a1, a2]])


class ScipyBiquadProcessor(Processor):
    def __init__(self, spec, sample_rate: int):
        super().__init__(spec, sample_rate)
        self.reset()

    def reset(self):
        self.zi = np.zeros((1, 2))

    def run(self, audio, setting):
        import scipy.signal

        sos = second_order_sos(self.spec.name, float(setting[0]), float(setting[1]),
                               self.sample_rate)
        y, self.zi = scipy.signal.sosfilt(sos, audio.astype(np.float64), zi=self.zi)
        return y.astype(np.float32)


def plugin_params(plugin) -> tuple[Param, ...]:
    """Every numeric parameter a loaded plugin reports, as declared Params."""
    out = []
    for name, prm in plugin.parameters.items():
        lo, hi = getattr(prm, "min_value", None), getattr(prm, "max_value", None)
        if isinstance(lo, bool) or not isinstance(lo, (int, float)) \
                or not isinstance(hi, (int, float)) or not lo < hi:
            continue
        value = getattr(plugin, name)
        default = float(value) if isinstance(value, (int, float)) else (lo + hi) / 2
        out.append(Param(name, str(getattr(prm, "units", "") or ""), float(lo), float(hi),
                         min(max(default, lo), hi)))
    return tuple(out)


class PluginProcessor(_PluginRunner):
    def __init__(self, spec, sample_rate: int):
        super().__init__(spec, sample_rate)
        pb = import_pedalboard()
        try:
            self.plugin = pb.load_plugin(spec.path, plugin_name=spec.plugin_name)
        except Exception as err:
            raise DeviceError(f"{spec.path}: cannot load plugin ({plugin_error(err)})") from None
        known = set(self.plugin.parameters)
        for p in spec.params:
            if p.name not in known:
                raise DeviceError(f"{spec.path}: plugin has no parameter '{p.name}'; it has: "
                                  f"{', '.join(sorted(known))}")
        self.params = spec.params or plugin_params(self.plugin)
        self.reset()


def plugin_error(err: Exception) -> str:
    """A plugin loader's message on one line: JUCE lists its reasons on the lines after
    "Errors were:", which would otherwise be cut off."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    return " ".join(lines)[:300]


class CommandProcessor(Processor):
    """Runs a command on temporary WAV files, in its own process group (so that a timeout,
    or the end of the worker, stops it and every child it started)."""

    carries_state = False

    def __init__(self, spec, sample_rate: int):
        super().__init__(spec, sample_rate)
        self.tmp = tempfile.mkdtemp(prefix="ddsp_synth_cmd_")
        self.running: subprocess.Popen | None = None

    def run(self, audio, setting):
        import soundfile as sf

        src, dst = os.path.join(self.tmp, "in.wav"), os.path.join(self.tmp, "out.wav")
        if os.path.exists(dst):
            os.unlink(dst)
        sf.write(src, audio.astype(np.float32), self.sample_rate, subtype="FLOAT")
        values = {p.name: float(v) for p, v in zip(self.spec.params, setting)}
        argv = [part.format(input=src, output=dst, sample_rate=self.sample_rate, **values)
                for part in self.spec.command]
        code, err = self._run_command(argv)
        if code != 0:
            raise DeviceError(f"device '{self.spec.name}': command exited with {code}: "
                              f"{err or '(no message)'}")
        return self._read_output(dst, len(audio))

    def _run_command(self, argv) -> tuple[int, str]:
        """Run ``argv`` with a timeout; (exit code, last line of its error output)."""
        with tempfile.TemporaryFile(dir=self.tmp) as errfile:
            try:
                self.running = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=errfile,
                                                start_new_session=True)
            except FileNotFoundError:
                raise DeviceError(f"device '{self.spec.name}': command not found: "
                                  f"{argv[0]}") from None
            try:
                code = self.running.wait(self.spec.timeout_s)
            except subprocess.TimeoutExpired:
                self.kill_running()
                raise DeviceError(f"device '{self.spec.name}': command took longer than "
                                  f"{self.spec.timeout_s:g} s") from None
            finally:
                self.running = None
            errfile.seek(max(0, os.fstat(errfile.fileno()).st_size - STDERR_TAIL_BYTES))
            lines = errfile.read().decode(errors="replace").strip().splitlines()
        return code, (lines[-1][:200] if lines else "")

    def _read_output(self, dst: str, n: int) -> np.ndarray:
        import soundfile as sf

        try:
            out, sr = sf.read(dst, dtype="float32", always_2d=True)
        except Exception as err:
            raise DeviceError(f"device '{self.spec.name}': command wrote no readable "
                              f"{{output}} ({one_line(err)})") from None
        if sr != self.sample_rate:
            raise DeviceError(f"device '{self.spec.name}': command wrote {sr} Hz, expected "
                              f"{self.sample_rate} Hz")
        out = out.mean(1)
        return np.pad(out[:n], (0, max(0, n - len(out)))).astype(np.float32)

    def kill_running(self) -> None:
        """Stop the running command and everything it started (its process group)."""
        proc = self.running
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()

    def close(self) -> None:
        import shutil

        self.kill_running()
        shutil.rmtree(self.tmp, ignore_errors=True)


class CallableProcessor(Processor):
    carries_state = False

    def run(self, audio, setting):
        values = {p.name: float(v) for p, v in zip(self.spec.params, setting)}
        out = np.asarray(self.spec.fn(audio, values, self.sample_rate), np.float32)
        if out.shape != audio.shape:
            raise DeviceError(f"device '{self.spec.name}': callable returned shape {out.shape}, "
                              f"expected {audio.shape}")
        return out


class ChainProcessor(Processor):
    def __init__(self, spec, sample_rate: int):
        super().__init__(spec, sample_rate)
        self.parts = [part.build(sample_rate) for part in spec.parts]
        self.sizes = [len(part.params) for part in spec.parts]
        self.params = tuple(p for part in self.parts for p in part.params)
        self.carries_state = all(part.carries_state for part in self.parts)

    def reset(self):
        for part in self.parts:
            part.reset()

    def process(self, audio, params, hop=None):
        return self.process_all(audio, params, hop)[-1]

    def process_all(self, audio, params, hop=None):
        outs, start, y = [], 0, audio
        for part, size in zip(self.parts, self.sizes):
            y = part.process(y, params[..., start : start + size], hop)
            start += size
            outs.append(y)
        return outs

    def close(self) -> None:
        for part in self.parts:
            part.close()
