"""Play live through a sound card: audio in (a microphone) or MIDI in (a keyboard), instrument
out, through JACK (where a JACK server runs) or PortAudio.

* :mod:`.resample` — a streaming resampler with a known delay (card rate <-> model rate);
* :mod:`.paths` — the model side: :class:`AudioPath` (LiveEngine) and :class:`MidiPath`
  (MidiLiveEngine) at the card's rate, with exact output counts and delays;
* :mod:`.runner` — the real-time core: the callback, the model's worker thread, ring
  buffers and the schedule that makes the latency exact (:class:`LiveRunner`);
* :mod:`.backends` — JACK and PortAudio, devices by name or number;
* :mod:`.midi_in` — MIDI ports through python-rtmidi;
* :mod:`.status`, :mod:`.record` — the status line, latency measurement, summary; ``--record``;
* :mod:`.session` — one performance (:func:`run_live`); :mod:`.command` — ``ddsp-synth live``;
* :mod:`.loopback` — a JACK dummy server and a test client that plays into the instrument and
  records it (tests and ``bench/bench_live.py``).
"""

from .paths import AudioPath, MidiPath
from .resample import StreamResampler
from .runner import LiveError, LiveRunner, Ring
from .session import LiveSettings, run_live

__all__ = ["AudioPath", "MidiPath", "StreamResampler", "LiveError", "LiveRunner", "Ring",
           "LiveSettings", "run_live"]
