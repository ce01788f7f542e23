"""Playing into the instrument and recording it on a machine without a sound card: a JACK
server with its dummy backend, and a test client that plays audio and MIDI into
``ddsp-synth`` and records ``ddsp-synth:out``, every sample placed on JACK's frame clock.

The tests and ``bench/bench_live.py`` use it: a real audio server, real ports and real
real-time threads, only the hardware is simulated (the dummy backend runs its cycles on the
system clock).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np

from .backends import jack_module


class JackUnavailable(RuntimeError):
    """jackd or JACK-Client is missing, or the server would not start (the reason says)."""


class DummyJackServer:
    """``jackd -n NAME -d dummy -r RATE -p PERIOD`` in a subprocess, under a unique name so
    parallel runs do not meet; a context manager that waits until the server answers and stops
    it (no process left) at the end.

    ``env`` is the environment a client of this server needs (``JACK_DEFAULT_SERVER``).
    """

    def __init__(self, rate: int = 48000, period: int = 256, name: str | None = None):
        self.rate, self.period = rate, period
        self.name = name or f"ddsp-test-{uuid.uuid4().hex[:10]}"
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout_s: float = 15.0) -> "DummyJackServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise JackUnavailable("jackd is not installed (Debian: apt-get install jackd2)")
        if jack_module() is None:
            raise JackUnavailable("JACK-Client is not installed (pip install JACK-Client)")
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [jackd, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise JackUnavailable(f"jackd exited ({self.proc.returncode}): {self.log()}")
            client = self.client("ddsp-probe-ready")
            if client is not None:
                client.close()
                return self
            time.sleep(0.1)
        self.stop()
        raise JackUnavailable(f"jackd did not answer within {timeout_s:g} s: {self.log()}")

    def client(self, name: str):
        """A client of this server, or None while it does not answer."""
        jack = jack_module()
        try:
            return jack.Client(name, no_start_server=True, servername=self.name)
        except jack.JackOpenError:
            return None

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return " ".join(self._log.read().decode(errors="replace").split())[-600:]

    def stop(self) -> None:
        """Stop the server and wait for it (killed after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Loopback:
    """Two clients of ``server``: ``probe-play`` (ports ``out`` and ``midi_out``) and
    ``probe-rec`` (port ``in``), in separate clients so JACK orders them player -> instrument
    -> recorder within one cycle and the recording's delay is the instrument's alone.

    :meth:`play` schedules audio and MIDI at an absolute JACK frame; the recording holds
    every frame from :meth:`start` on, at ``rec_start`` + its index.
    """

    def __init__(self, server: DummyJackServer, max_seconds: float = 120.0):
        self.player = server.client("probe-play")
        self.recorder = server.client("probe-rec")
        if self.player is None or self.recorder is None:
            raise JackUnavailable("the JACK server does not answer")
        self.rate = self.player.samplerate
        self.out = self.player.outports.register("out")
        self.midi_out = self.player.midi_outports.register("midi_out")
        self.rec_in = self.recorder.inports.register("in")
        self.rec = np.zeros(int(max_seconds * self.rate), np.float32)
        self.played = np.zeros_like(self.rec)  # what the player's port carried, same frames
        self.rec_start: int | None = None
        self.rec_end = 0  # frames recorded (from rec_start)
        self.audio = np.zeros(0, np.float32)
        self.audio_start = 0  # JACK frame of audio[0]
        self.events: list[tuple[int, bytes]] = []  # (JACK frame, message), sorted
        self._next_event = 0
        # (client, JACK frame, frames skipped: < 0 if repeated) where a client's cycle did not
        # follow its last one: this loaded machine ran the probe late, its clock broke there
        self.breaks: list[tuple[str, int, int]] = []
        self._expected = {"play": None, "rec": None}
        self.player.set_process_callback(self._play)
        self.recorder.set_process_callback(self._record)

    def _follow(self, who: str, f0: int, frames: int) -> None:
        expected = self._expected[who]
        if expected is not None and f0 != expected:
            self.breaks.append((who, f0, f0 - expected))
        self._expected[who] = f0 + frames

    def breaks_between(self, first_frame: int, last_frame: int) -> list[tuple[str, int, int]]:
        """The breaks of the probe's clock (client, JACK frame, frames skipped) in
        ``[first_frame, last_frame)``."""
        return [b for b in list(self.breaks) if first_frame <= b[1] < last_frame]

    def _play(self, frames: int) -> None:
        f0 = self.player.last_frame_time
        self._follow("play", f0, frames)
        buf = self.out.get_array()
        buf[:] = 0.0
        lo, hi = max(f0, self.audio_start), min(f0 + frames, self.audio_start + len(self.audio))
        if hi > lo:
            buf[lo - f0 : hi - f0] = self.audio[lo - self.audio_start : hi - self.audio_start]
        if self.rec_start is not None and 0 <= f0 - self.rec_start <= len(self.played) - frames:
            self.played[f0 - self.rec_start : f0 - self.rec_start + frames] = buf
        self.midi_out.clear_buffer()
        while self._next_event < len(self.events) and self.events[self._next_event][0] < f0 + frames:
            frame, data = self.events[self._next_event]
            self.midi_out.write_midi_event(max(0, frame - f0), data)
            self._next_event += 1

    def _record(self, frames: int) -> None:
        f0 = self.recorder.last_frame_time
        self._follow("rec", f0, frames)
        if self.rec_start is None:
            self.rec_start = f0
        i = f0 - self.rec_start
        n = max(0, min(frames, len(self.rec) - i))
        if n:
            self.rec[i : i + n] = self.rec_in.get_array()[:n]
            self.rec_end = i + n

    def start(self) -> None:
        self.player.activate()
        self.recorder.activate()

    def connect(self, client: str = "ddsp-synth", audio: bool = True, midi: bool = False) -> None:
        """Wire the probe around the instrument's ports."""
        if audio:
            self.player.connect(self.out.name, f"{client}:in")
        if midi:
            self.player.connect(self.midi_out.name, f"{client}:midi_in")
        self.recorder.connect(f"{client}:out", self.rec_in.name)

    def now(self) -> int:
        return self.player.frame_time

    def play(self, audio: np.ndarray | None = None, events=(), delay_s: float = 0.2) -> int:
        """Play ``audio`` and ``events`` ((sample offset, MIDI bytes)) from ``delay_s`` from
        now; returns the JACK frame of their offset 0."""
        start = self.now() + int(delay_s * self.rate)
        self.events = sorted((start + int(off), bytes(data)) for off, data in events)
        self._next_event = 0
        self.audio_start = start
        if audio is not None:
            self.audio = np.asarray(audio, np.float32)
        return start

    def recording(self, first_frame: int, n: int, played: bool = False) -> np.ndarray:
        """``n`` recorded samples from JACK frame ``first_frame`` (zeros where not recorded);
        ``played``: what the player sent instead (zeros in the cycles JACK dropped it)."""
        out = np.zeros(n, np.float32)
        if self.rec_start is None:
            return out
        src = self.played if played else self.rec
        lo = max(first_frame, self.rec_start)
        hi = min(first_frame + n, self.rec_start + self.rec_end)
        if hi > lo:
            out[lo - first_frame : hi - first_frame] = src[lo - self.rec_start : hi - self.rec_start]
        return out

    def close(self) -> None:
        for c in (self.player, self.recorder):
            try:
                c.deactivate()
                c.close()
            except Exception:  # the server may already be gone at the end of a test
                pass


class LiveProcess:
    """``python -m ddsp_synth live ARGV`` in a subprocess, a client of ``server``: stdout
    read line by line on a thread, so :meth:`header` can wait for playing to begin.

    Args:
        server: the :class:`DummyJackServer` it plays on.
        argv: the command's options.
        env: extra environment (e.g. ``PYTHONPATH``).
    """

    def __init__(self, server: DummyJackServer, *argv: str, env: dict | None = None,
                 cwd: str | os.PathLike | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "ddsp_synth", "live", *argv],
                                     env={**server.env, **(env or {})}, cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def header(self, timeout_s: float = 120.0) -> str:
        """The line printed once it plays; RuntimeError (with stderr) if it ended instead."""
        line = self.lines.get(timeout=timeout_s)
        if line is None or not line.startswith("playing"):
            raise RuntimeError(f"live did not start: {line!r} {self.proc.stderr.read()}")
        return line

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        """Wait for the end: (exit code, stdout after the header, stderr)."""
        err = self.proc.stderr.read()
        self.proc.wait(timeout=timeout_s)
        out = []
        while (line := self.lines.get(timeout=5)) is not None:
            out.append(line)
        return self.proc.returncode, "".join(out), err
