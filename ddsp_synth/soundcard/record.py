"""``--record`` / ``--record-input``: what was sent to the sound card, or what it gave, written
to a file while playing.

A thread copies one of the runner's rings into the file every 50 ms (the callback
never touches the disk). The file is written under a temporary name and renamed when
playing stops, so an interrupted session leaves no partial file. WAV is 32-bit float (the
samples exactly as the card got them), FLAC 24-bit.
"""

from __future__ import annotations

import threading
import time

import soundfile as sf

from ..audio_io import atomic_write_bytes
from .runner import HELPER_PRIORITY, set_realtime

DRAIN_S = 0.05


class Recorder:
    """Write ``ring`` (a :class:`~.runner.Ring`) from sample ``start`` on to ``path``."""

    def __init__(self, path, ring, sample_rate: int, start: int = 0):
        self.path = path
        self.ring = ring
        self.rate = sample_rate
        self.pos = start
        self.lost = 0  # samples overwritten before the thread could copy them
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ddsp-synth record", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drain(self, f) -> None:
        written = self.ring.written
        if written - self.pos > self.ring.capacity:
            skip = written - self.ring.capacity - self.pos
            self.lost += skip
            self.pos += skip
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
            atomic_write_bytes(self.path, self._write)
        except BaseException as err:  # reported when playing stops
            self.error = err

    def stop(self) -> None:
        """Write what is left and close the file (nothing if it never started)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
