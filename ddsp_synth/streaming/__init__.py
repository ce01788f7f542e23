"""Play a model live, one control frame (one hop, 10 ms at 16 kHz) at a time.

* :mod:`.step` — the exportable one-hop step (:class:`SynthStep`), its Python driver
  (:class:`StreamingSynth`) and the runtime export (TorchScript / ONNX);
* :mod:`.features` — f0 and loudness from audio arriving in blocks (:class:`StreamingFeatures`);
* :mod:`.live` — the live engines: audio in (:class:`LiveEngine`, with its simulation from a
  file, :func:`stream_audio`) and MIDI in (:class:`MidiLiveEngine`, synthesis only).
"""

from .features import Frame, StreamingFeatures
from .live import LiveEngine, LiveOptions, MidiLiveEngine, live_frame, stream_audio
from .step import (INPUT_NAMES, OUTPUT_NAMES, STATE_NAMES, StreamingSynth, SynthStep,
                   example_inputs, export_runtime)

__all__ = ["Frame", "StreamingFeatures", "LiveEngine", "LiveOptions", "MidiLiveEngine", "live_frame",
           "stream_audio", "INPUT_NAMES", "OUTPUT_NAMES", "STATE_NAMES", "StreamingSynth",
           "SynthStep", "example_inputs", "export_runtime"]
