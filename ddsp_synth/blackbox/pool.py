"""Worker processes that run a black-box device, batch items in parallel.

Each worker (a fresh ``python -m ddsp_synth.blackbox.worker`` process with one torch/BLAS
thread, talking over a socket pair) builds its own instance of the device from a picklable
spec. An independent item runs on an instance reset just before it; the calls of one
*stream* (chunked rendering, live playing) run on an instance of their own, kept by the same
worker until the stream ends, so a stream equals one call on the whole signal.

The parent splits a batch into one contiguous chunk per worker (streams go to the worker that
holds them), sends all chunks, then collects the answers, so the workers run at the same
time. Every request carries an id and every answer repeats it: an answer left over from an
interrupted call is recognised and dropped, never taken for the next call's. A worker that
dies (a plugin's segfault) or does not answer within ``timeout_s`` is killed and replaced,
and the call raises a one-line :class:`DeviceError` naming the device: never a hang.

Nothing outlives the pool: workers exit when their parent process ends, however it ends
(they watch it), device commands run in their own process group and are killed as a group,
temporary folders are removed, and a worker whose memory grows past ``max_rss_mb`` (a
leaking callable) is replaced after its answer. Pools close as context managers, on
``close()``, or at interpreter exit.

``n_workers=0`` runs the device in the calling process (no isolation; for quick tests and
for callables that do not pickle).
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from multiprocessing.connection import Connection

import numpy as np

from ..stages.params import DeviceError
from .specs import check_picklable

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
START_TIMEOUT_S = 120.0
POLL_S = 0.05
DEFAULT_MAX_RSS_MB = 4096.0
_live_pools: "weakref.WeakSet[DevicePool]" = weakref.WeakSet()


def _stream_key(stream_id: int, n_workers: int) -> int:
    return stream_id % n_workers


class _Worker:
    def __init__(self, spec, sample_rate: int, max_rss_mb: float):
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        # Read at start-up, before numpy/torch/numba choose a thread count.
        env.update({k: "1" for k in THREAD_ENV})
        # The child imports what the spec pickles by reference (a callable's module).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ddsp_synth.blackbox.worker", str(child_sock.fileno()),
                 str(os.getpid())],
                pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.stderr)
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.conn.send((spec, sample_rate, max_rss_mb))
        self.tmp_dirs: list[str] = []

    def _last_stderr_line(self) -> str:
        try:
            self.stderr.seek(0)
            lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:200]}" if lines else ""

    def crashed(self, name: str, what: str) -> DeviceError:
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        return DeviceError(f"device '{name}': worker crashed while {what} (exit code "
                           f"{self.process.returncode}){self._last_stderr_line()}")

    def wait(self, deadline: float, name: str, what: str, request: int | None = None):
        """The worker's answer to ``request`` (answers to earlier, interrupted requests are
        dropped), or DeviceError if it dies or passes ``deadline``."""
        while True:
            if self.conn.poll(POLL_S):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    raise self.crashed(name, what) from None
                if request is None or msg[1] == request:
                    return msg
                continue
            if self.process.poll() is not None:
                raise self.crashed(name, what)
            if time.monotonic() > deadline:
                self.kill()
                raise DeviceError(f"device '{name}': worker did not answer within the timeout "
                                  f"while {what}; it was stopped")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the worker stops its commands and removes its files
            try:
                self.process.wait(2.0)
            except subprocess.TimeoutExpired:
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
            self.kill()
        self._release()

    def _release(self) -> None:
        import shutil

        for d in self.tmp_dirs:  # what a killed worker could not remove itself
            shutil.rmtree(d, ignore_errors=True)
        for f in (self.conn, self.stderr):
            try:
                f.close()
            except OSError:
                pass


class DevicePool:
    """Runs one black-box device in ``n_workers`` processes.

    Args:
        spec: a picklable spec (:mod:`ddsp_synth.blackbox.specs`).
        sample_rate: Hz.
        n_workers: processes (0 = run in this process).
        timeout_s: longest a call may take per item before the worker is declared hung.
        max_rss_mb: a worker whose resident memory exceeds this is replaced after answering.

    Attributes:
        calls: number of items (device evaluations) processed so far.
        params: what the device declares (a plugin reports its own).
    """

    def __init__(self, spec, sample_rate: int, n_workers: int = 2, timeout_s: float = 60.0,
                 max_rss_mb: float = DEFAULT_MAX_RSS_MB):
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0:
            raise DeviceError(f"n_workers must be an integer >= 0, got {n_workers!r}")
        self.spec, self.name, self.sample_rate = spec, spec.name, sample_rate
        self.n_workers, self.timeout_s, self.max_rss_mb = n_workers, float(timeout_s), max_rss_mb
        self.calls = 0
        self._requests = itertools.count(1)
        self._stream_ids = itertools.count(1)
        self._workers: list[_Worker | None] = []
        self._local = None
        self._local_streams: dict[int, object] = {}
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
                self._workers[i] = _Worker(self.spec, self.sample_rate, self.max_rss_mb)
                fresh.append(i)
        deadline = time.monotonic() + START_TIMEOUT_S
        for n, i in enumerate(fresh):
            try:
                kind, _, payload = self._workers[i].wait(deadline, self.name, "starting")
            except DeviceError:
                self._workers[i] = None
                self._drop(fresh[n + 1 :])
                raise
            if kind != "ready":
                self._workers[i].close()
                self._workers[i] = None
                self._drop(fresh[n + 1 :])
                raise DeviceError(payload if self.name in payload
                                  else f"device '{self.name}' failed to start: {payload}")
            self.params, self._workers[i].tmp_dirs = payload

    def _drop(self, indices) -> None:
        for i in indices:
            if self._workers[i] is not None:
                self._workers[i].kill()
                self._workers[i] = None

    def close(self) -> None:
        """Stop the workers and what they run (idempotent)."""
        for i, w in enumerate(self._workers):
            if w is not None:
                w.close()
                self._workers[i] = None
        self._workers = []
        for proc in [self._local, *self._local_streams.values()]:
            if proc is not None:
                proc.close()
        self._local, self._local_streams = None, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- streams ----------------------------------------------------------------------
    def open_streams(self, n: int) -> list[int]:
        """Ids of ``n`` new streams: each gets its own instance of the device, from rest, kept
        from call to call until :meth:`end_streams`."""
        return [next(self._stream_ids) for _ in range(n)]

    def end_streams(self, ids) -> None:
        """Forget the instances of these streams (a later stream starts from rest)."""
        ids = list(ids)
        for sid in ids:
            proc = self._local_streams.pop(sid, None)
            if proc is not None:
                proc.close()
        for i, w in enumerate(self._workers):
            mine = [s for s in ids if _stream_key(s, len(self._workers)) == i]
            if w is not None and mine and w.process.poll() is None:
                try:
                    w.conn.send(("end", 0, mine))
                except OSError:
                    pass

    # -- processing -------------------------------------------------------------------
    def process(self, audio: np.ndarray, params: np.ndarray, hop: int | None = None,
                streams: list[int] | None = None,
                return_intermediates: bool = False) -> np.ndarray:
        """Run the device on every batch item.

        Args:
            audio: [batch, n_samples] (or [n_samples]) float32.
            params: natural units, [batch, P] (or [P]) one setting per item, or
                [batch, n_frames, P] per frame (with ``hop``); one row for all items or one
                per item.
            hop: samples per parameter frame.
            streams: one stream id per item (:meth:`open_streams`): the item continues its
                stream's state; None: every item starts from rest.
            return_intermediates: also return each stage's output (chains).

        Returns:
            [batch, n_samples] float32, or [batch, n_stages, n_samples] with intermediates.
        """
        audio, params, single = self._check(audio, params)
        if self._local is not None:
            result = np.stack([self._local_item(x, p, hop, None if streams is None else s,
                                                return_intermediates)
                               for x, p, s in zip(audio, params, streams or [None] * len(audio))])
        else:
            result = self._run_workers(audio, params, hop, streams, return_intermediates)
        self.calls += audio.shape[0]
        if not np.all(np.isfinite(result)):
            raise DeviceError(f"device '{self.name}' returned NaN or infinite samples")
        result = result if return_intermediates else result[:, 0]
        return result[0] if single else result

    def _check(self, audio, params):
        """float32 audio [batch, n] and float64 params [batch, P] or [batch, n_frames, P];
        whether one item without a batch axis was given."""
        audio = np.asarray(audio, np.float32)
        params = np.asarray(params, np.float64)
        single = audio.ndim == 1
        if single:
            audio = audio[None]
        if params.ndim == 1 or (single and params.ndim == 2):  # one item: [P] or [F, P]
            params = params[None]
        if params.shape[0] == 1 and audio.shape[0] > 1:
            params = np.repeat(params, audio.shape[0], 0)
        n_params = len(self.params)
        if audio.ndim != 2 or params.ndim not in (2, 3) or params.shape[0] != audio.shape[0] \
                or params.shape[-1] != n_params:
            raise DeviceError(f"device '{self.name}': expected audio [batch, n] and params "
                              f"[batch, {n_params}] or [batch, n_frames, {n_params}], got "
                              f"{audio.shape} and {params.shape}")
        if not np.all(np.isfinite(params)):
            raise DeviceError(f"device '{self.name}': parameters contain NaN or infinity")
        return audio, params, single

    def _local_item(self, x, p, hop, stream, return_all):
        if stream is None:
            proc = self._local
            proc.reset()
        else:
            if stream not in self._local_streams:
                self._local_streams[stream] = self.spec.build(self.sample_rate)
            proc = self._local_streams[stream]
        ys = proc.process_all(x, p, hop) if return_all else [proc.process(x, p, hop)]
        return np.stack(ys)

    def _assign(self, batch: int, streams) -> list[np.ndarray]:
        """Item indices per worker: contiguous chunks, or each stream's own worker."""
        n = len(self._workers)
        if streams is None:
            return np.array_split(np.arange(batch), n)
        keys = np.array([_stream_key(s, n) for s in streams])
        return [np.nonzero(keys == i)[0] for i in range(n)]

    def _run_workers(self, audio, params, hop, streams, return_all):
        if not self._workers:
            raise DeviceError(f"device '{self.name}': the pool is closed")
        self._start_missing()
        request = next(self._requests)
        busy, error = [], None
        chunks = self._assign(audio.shape[0], streams)
        for i, (w, idx) in enumerate(zip(self._workers, chunks)):
            if not len(idx):
                continue
            ids = None if streams is None else [streams[j] for j in idx]
            try:
                w.conn.send(("process", request, audio[idx], params[idx], hop, ids, return_all))
                busy.append((w, idx))
            except OSError:  # died after the liveness check
                error = error or w.crashed(self.name, "receiving audio")
                w.kill()
                self._workers[i] = None
        deadline = time.monotonic() + self.timeout_s * max(len(c) for c in chunks)
        results = [None] * audio.shape[0]
        for w, idx in busy:
            error = self._collect(w, idx, request, deadline, results) or error
        if error is not None:
            raise error
        return np.stack(results)

    def _collect(self, w: _Worker, idx, request: int, deadline: float, results: list):
        """Store one worker's answer into ``results``; the error, if any."""
        try:
            kind, _, payload = w.wait(deadline, self.name, "processing", request)
        except DeviceError as err:
            self._replace(w)
            return err
        if kind == "recycle":  # answered, then exited to be replaced (memory)
            self._replace(w)
            kind = "ok"
        if kind != "ok":
            return DeviceError(payload if self.name in payload
                               else f"device '{self.name}' failed: {payload}")
        for j, y in zip(idx, payload):
            results[j] = y
        return None

    def _replace(self, w: _Worker) -> None:
        i = self._workers.index(w)
        w.kill()
        self._workers[i] = None


@atexit.register
def _close_all() -> None:
    for pool in list(_live_pools):
        try:
            pool.close()
        except Exception:
            pass
