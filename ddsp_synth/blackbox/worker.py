"""The worker process of a :class:`~ddsp_synth.blackbox.pool.DevicePool`.

Started as ``python -m ddsp_synth.blackbox.worker FD PARENT_PID`` (not by multiprocessing's
spawn, which would re-run the caller's main script in every worker). It builds the device
from the spec it receives, then answers requests until told to stop, its socket closes, it
is sent SIGTERM, or its parent process goes away (checked twice a second by a watchdog
thread, so a parent killed by SIGKILL leaves no worker behind). On the way out it stops the
commands its devices run (their process groups) and removes their temporary folders.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

import numpy as np

from ..errors import one_line

WATCH_PARENT_S = 0.5


class _Devices:
    """The worker's instances: one reset before each independent item, one per stream."""

    def __init__(self, spec, sample_rate: int):
        self.spec, self.sample_rate = spec, sample_rate
        self.default = spec.build(sample_rate)
        self.streams: dict[int, object] = {}

    def instance(self, stream: int | None):
        if stream is None:
            self.default.reset()
            return self.default
        if stream not in self.streams:
            from ..stages.params import DeviceError

            if not self.default.carries_state:
                raise DeviceError(f"device '{self.spec.name}' runs once per call from nothing: "
                                  "it cannot continue a stream; give it the whole signal")
            self.streams[stream] = self.spec.build(self.sample_rate)
        return self.streams[stream]

    def end(self, ids) -> None:
        for sid in ids:
            proc = self.streams.pop(sid, None)
            if proc is not None:
                proc.close()

    def close(self) -> None:
        for proc in [self.default, *self.streams.values()]:
            try:
                proc.close()
            except Exception:
                pass


def temp_dirs(proc) -> list[str]:
    """Temporary folders a processor (or the parts of a chain) made."""
    found = [proc.tmp] if isinstance(getattr(proc, "tmp", None), str) else []
    for part in getattr(proc, "parts", []):
        found += temp_dirs(part)
    return found


def resident_mb() -> float:
    """This process's resident memory in MB (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _exit_cleanly(devices: _Devices | None) -> None:
    if devices is not None:
        devices.close()
    os._exit(0)


def _watch_parent(parent_pid: int, holder: list) -> None:
    while True:
        time.sleep(WATCH_PARENT_S)
        if os.getppid() != parent_pid:
            _exit_cleanly(holder[0])


def _answer(devices: _Devices, msg, max_rss_mb: float):
    _, request, audio, params, hop, streams, return_all = msg
    out = []
    for i, (x, p) in enumerate(zip(audio, params)):
        proc = devices.instance(None if streams is None else streams[i])
        ys = proc.process_all(x, p, hop) if return_all else [proc.process(x, p, hop)]
        out.append(np.stack([np.asarray(y, np.float32) for y in ys]))
    kind = "recycle" if max_rss_mb and resident_mb() > max_rss_mb else "ok"
    return (kind, request, out)


def main(fd: int, parent_pid: int) -> None:
    conn = Connection(fd)
    holder: list = [None]
    signal.signal(signal.SIGTERM, lambda *_: _exit_cleanly(holder[0]))
    # Ctrl-C reaches the whole foreground process group: the parent handles it and closes
    # the pool; a worker interrupted mid-answer would only garble that answer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid, holder), daemon=True).start()
    try:
        spec, sample_rate, max_rss_mb = conn.recv()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        holder[0] = devices = _Devices(spec, sample_rate)
        params = getattr(devices.default, "params", None) or spec.params
        conn.send(("ready", 0, (params, temp_dirs(devices.default))))
    except BaseException as err:  # report and exit: the parent turns it into one line
        conn.send(("error", 0, one_line(err, with_type=True)))
        _exit_cleanly(holder[0])
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            _exit_cleanly(devices)
        if msg is None:
            _exit_cleanly(devices)
        if msg[0] == "end":
            devices.end(msg[2])
            continue
        try:
            answer = _answer(devices, msg, max_rss_mb)
        except BaseException as err:
            answer = ("error", msg[1], one_line(err, with_type=True))
        conn.send(answer)
        if answer[0] == "recycle":
            _exit_cleanly(devices)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
