"""``--record`` / ``--record-input``: what was sent to the sound card, or what it gave, written
to a file while playing.

A thread copies one of the runner's rings into the file every 50 ms (the callback
never touches the disk). The file is written under a temporary name beside it and renamed
when playing stops, however it stops (its end, Ctrl-C, SIGTERM or SIGHUP, a problem): a take
is never lost. Only the name is atomic: a file that could not be written to its end (a full
disk) is kept with what it holds, and the error says so. WAV is 32-bit float (the samples
exactly as the card got them), FLAC 24-bit.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import soundfile as sf

from ..audio_io import atomic_write_bytes
from ..errors import one_line
from .runner import HELPER_PRIORITY, set_realtime

DRAIN_S = 0.05


class Recorder:
    """Write ``ring`` (a :class:`~.runner.Ring`) from sample ``start`` on to ``path``."""

    def __init__(self, path, ring, sample_rate: int, start: int = 0):
        self.path = path
        self.ring = ring
        self.rate = sample_rate
        self.pos = self.first = start
        self.lost = 0  # samples overwritten before the thread could copy them (zeros written)
        self.error: str | None = None  # why the recording stopped early
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ddsp-synth record", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drain(self, f) -> None:
        written = self.ring.written
        if written - self.pos > self.ring.capacity:  # this thread stalled longer than the ring
            skip = written - self.ring.capacity - self.pos
            self.lost += skip
            self.pos += skip
            f.write(np.zeros(skip, np.float32))  # silence in their place: the take keeps time
        if written > self.pos:
            f.write(self.ring.read(self.pos, written))
            self.pos = written

    def _write(self, tmp: str) -> None:
        wav = str(self.path).lower().endswith(".wav")
        with sf.SoundFile(tmp, "w", self.rate, 1, subtype="FLOAT" if wav else "PCM_24",
                          format="WAV" if wav else "FLAC") as f:
            while not self._stop.is_set():
                self._drain(f)
                time.sleep(DRAIN_S)
            self._drain(f)

    def _run(self) -> None:
        set_realtime(HELPER_PRIORITY)
        try:
            atomic_write_bytes(self.path, self._write, keep_partial=True)
        except BaseException as err:  # noqa: BLE001 - a full disk: reported when playing stops
            self.error = str(err) if self.pos == self.first else (
                f"{self.path}: could not be written to its end ({one_line(err)}); it holds "
                f"the first {(self.pos - self.first) / self.rate:.1f} s")

    def stop(self) -> str | None:
        """Write what is left and close the file (nothing if it never started); returns
        why the recording stopped early, or None."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        return self.error
