"""Worker processes that run a black-box device, batch items in parallel.

Each worker (a fresh ``python -m ddsp_synth.effects.pool`` process with one torch/BLAS
thread, talking over a socket pair) builds its own instance of the device
from a picklable spec, resets it before every item, and answers over a pipe. The parent
splits a batch into one contiguous chunk per worker, sends all chunks, then collects the
answers, so the workers run at the same time. A worker that dies (a plugin's segfault) or
does not answer within ``timeout_s`` is killed and replaced, and the call raises a one-line
:class:`DeviceError` naming the device: never a hang. Pools close cleanly as context
managers, on ``close()``, or at interpreter exit.

``n_workers=0`` runs the device in the calling process (no isolation; for quick tests and
for callables that do not pickle).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from multiprocessing.connection import Connection

import numpy as np

from .blackbox import Processor, check_picklable
from .params import DeviceError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
START_TIMEOUT_S = 120.0
POLL_S = 0.05
_live_pools: "weakref.WeakSet[DevicePool]" = weakref.WeakSet()


def _one_line(err) -> str:
    """DeviceError messages as they are (they name the device); others with their type."""
    text = str(err).strip().splitlines()
    if isinstance(err, DeviceError) and text:
        return text[0]
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def worker_main(fd: int) -> None:
    """Worker loop: receive the spec, build the device, answer ("process", ...) messages.

    Started as ``python -m ddsp_synth.effects.pool FD`` (not by multiprocessing's spawn, which
    would re-run the caller's main script in every worker).
    """
    conn = Connection(fd)
    try:
        spec, sample_rate = conn.recv()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        proc = spec.build(sample_rate)
        params = getattr(proc, "params", None) or spec.params
        conn.send(("ready", params))
    except BaseException as err:  # report and exit: the parent turns it into one line
        conn.send(("error", _one_line(err)))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg is None:
            return
        _, audio, params, return_all = msg
        try:
            out = []
            for x, p in zip(audio, params):
                proc.reset()
                ys = proc.process_all(x, p) if return_all else [proc.process(x, p)]
                out.append(np.stack([np.asarray(y, np.float32) for y in ys]))
            conn.send(("ok", out))
        except BaseException as err:
            conn.send(("error", _one_line(err)))


class _Worker:
    def __init__(self, spec, sample_rate: int):
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        # Read at start-up, before numpy/torch/numba choose a thread count.
        env.update({k: "1" for k in THREAD_ENV})
        # The child imports what the spec pickles by reference (a callable's module).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ddsp_synth.effects.pool", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.stderr)
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.conn.send((spec, sample_rate))

    def _last_stderr_line(self) -> str:
        try:
            self.stderr.seek(0)
            lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:200]}" if lines else ""

    def _crashed(self, name: str, what: str) -> DeviceError:
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        return DeviceError(f"device '{name}': worker crashed while {what} (exit code "
                           f"{self.process.returncode}){self._last_stderr_line()}")

    def wait(self, deadline: float, name: str, what: str):
        """The worker's next message, or DeviceError if it dies or passes ``deadline``."""
        while True:
            if self.conn.poll(POLL_S):
                try:
                    return self.conn.recv()
                except (EOFError, OSError):
                    raise self._crashed(name, what) from None
            if self.process.poll() is not None:
                raise self._crashed(name, what)
            if time.monotonic() > deadline:
                self.kill()
                raise DeviceError(f"device '{name}': worker did not answer within the timeout "
                                  f"while {what}; it was stopped")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        self._release()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(2.0)
        self._release()

    def _release(self) -> None:
        for f in (self.conn, self.stderr):
            try:
                f.close()
            except OSError:
                pass


class DevicePool:
    """Runs one black-box device in ``n_workers`` processes.

    Args:
        spec: a picklable spec (:mod:`ddsp_synth.effects.blackbox`).
        sample_rate: Hz.
        n_workers: processes (0 = run in this process).
        timeout_s: longest a call may take per item before the worker is declared hung.

    Attributes:
        calls: number of items (device evaluations) processed so far.
    """

    def __init__(self, spec, sample_rate: int, n_workers: int = 2, timeout_s: float = 60.0):
        if not isinstance(n_workers, int) or n_workers < 0:
            raise DeviceError(f"n_workers must be an integer >= 0, got {n_workers!r}")
        self.spec = spec
        self.name = spec.name
        self.sample_rate = sample_rate
        self.n_workers = n_workers
        self.timeout_s = float(timeout_s)
        self.calls = 0
        self._workers: list[_Worker | None] = []
        self._local: Processor | None = None
        self.params = spec.params
        if n_workers == 0:
            self._local = spec.build(sample_rate)
            self.params = getattr(self._local, "params", None) or spec.params
        else:
            check_picklable(spec)
            self._workers = [None] * n_workers
            self._start_missing()
        _live_pools.add(self)

    # -- lifecycle --------------------------------------------------------------------
    def _start_missing(self) -> None:
        """Start workers that are missing or have exited since the last call."""
        fresh = []
        for i, w in enumerate(self._workers):
            if w is not None and w.process.poll() is not None:
                w.kill()
                self._workers[i] = w = None
            if w is None:
                self._workers[i] = _Worker(self.spec, self.sample_rate)
                fresh.append(i)
        deadline = time.monotonic() + START_TIMEOUT_S
        for n, i in enumerate(fresh):
            try:
                kind, payload = self._workers[i].wait(deadline, self.name, "starting")
            except DeviceError:
                self._workers[i] = None
                self._drop(fresh[n + 1 :])
                raise
            if kind != "ready":
                self._workers[i].close()
                self._workers[i] = None
                # the other fresh workers' "ready" is still unread: stop them, so that a
                # later call starts them again instead of reading it as a reply
                self._drop(fresh[n + 1 :])
                raise DeviceError(payload if self.name in payload
                                  else f"device '{self.name}' failed to start: {payload}")
            self.params = payload

    def _drop(self, indices) -> None:
        for i in indices:
            if self._workers[i] is not None:
                self._workers[i].kill()
                self._workers[i] = None

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for i, w in enumerate(self._workers):
            if w is not None:
                w.close()
                self._workers[i] = None
        self._workers = []
        self._local = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- processing -------------------------------------------------------------------
    def process(self, audio: np.ndarray, params: np.ndarray,
                return_intermediates: bool = False) -> np.ndarray:
        """Run the device on every batch item, each from a freshly reset state.

        Args:
            audio: [batch, n_samples] (or [n_samples]) float32.
            params: [batch, P] (or [P]) natural units; one row per audio row, or one row for
                all.
            return_intermediates: also return each stage's output (chains).

        Returns:
            [batch, n_samples] float32, or [batch, n_stages, n_samples] with intermediates.
        """
        audio = np.asarray(audio, np.float32)
        params = np.asarray(params, np.float64)
        single = audio.ndim == 1
        if single:
            audio = audio[None]
        if params.ndim == 1:
            params = params[None]
        if params.shape[0] == 1 and audio.shape[0] > 1:
            params = np.repeat(params, audio.shape[0], 0)
        n_params = len(self.params)
        if audio.ndim != 2 or params.ndim != 2 or params.shape != (audio.shape[0], n_params):
            raise DeviceError(f"device '{self.name}': expected audio [batch, n] and params "
                              f"[batch, {len(self.params)}], got {audio.shape} and {params.shape}")
        if not np.all(np.isfinite(params)):
            raise DeviceError(f"device '{self.name}': parameters contain NaN or infinity")
        if self._local is not None:
            out = []
            for x, p in zip(audio, params):
                self._local.reset()
                ys = self._local.process_all(x, p) if return_intermediates \
                    else [self._local.process(x, p)]
                out.append(np.stack(ys))
            result = np.stack(out)
        else:
            result = self._run_workers(audio, params, return_intermediates)
        self.calls += audio.shape[0]
        if not np.all(np.isfinite(result)):
            raise DeviceError(f"device '{self.name}' returned NaN or infinite samples")
        result = result if return_intermediates else result[:, 0]
        return result[0] if single else result

    def _run_workers(self, audio, params, return_all):
        if not self._workers:
            raise DeviceError(f"device '{self.name}': the pool is closed")
        self._start_missing()
        chunks = [c for c in np.array_split(np.arange(audio.shape[0]), len(self._workers))
                  if len(c)]
        busy, error = [], None
        for i, (w, idx) in enumerate(zip(self._workers, chunks)):
            try:
                w.conn.send(("process", audio[idx], params[idx], return_all))
                busy.append((w, idx))
            except OSError:  # died after the liveness check
                error = error or w._crashed(self.name, "receiving audio")
                w.kill()
                self._workers[i] = None
        deadline = time.monotonic() + self.timeout_s * max(len(c) for c in chunks)
        results = [None] * audio.shape[0]
        for w, idx in busy:
            try:
                kind, payload = w.wait(deadline, self.name, "processing")
            except DeviceError as err:
                i = self._workers.index(w)
                w.kill()
                self._workers[i] = None
                error = error or err
                continue
            if kind != "ok":
                error = error or DeviceError(payload if self.name in payload
                                             else f"device '{self.name}' failed: {payload}")
                continue
            for j, y in zip(idx, payload):
                results[j] = y
        if error is not None:
            raise error
        return np.stack(results)


@atexit.register
def _close_all() -> None:
    for pool in list(_live_pools):
        try:
            pool.close()
        except Exception:
            pass


if __name__ == "__main__":
    worker_main(int(sys.argv[1]))
