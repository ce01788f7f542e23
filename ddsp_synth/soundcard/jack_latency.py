"""The latency a JACK port reports (JACK-Client 0.5 binds no latency call, libjack has one).

A physical capture port reports how long its samples took to arrive (e.g. one period), a
physical playback port how long until its samples are heard (e.g. two periods): with the
engine's own latency they make the round trip through the sound card.
"""

from __future__ import annotations

import cffi

_ffi = cffi.FFI()
_ffi.cdef("""
typedef struct { uint32_t min; uint32_t max; } jack_latency_range_t;
void jack_port_get_latency_range(void *port, int mode, jack_latency_range_t *range);
""")
_CAPTURE, _PLAYBACK = 0, 1  # jack_latency_callback_mode_t
_lib = None


def port_latency(port, capture: bool) -> int:
    """The largest latency in frames ``port`` (a ``jack.Port``) reports for capture or
    playback."""
    global _lib
    import jack

    if _lib is None:
        _lib = _ffi.dlopen(jack._libname)
    ptr = _ffi.cast("void *", int(jack._ffi.cast("uintptr_t", port._ptr)))
    rng = _ffi.new("jack_latency_range_t *")
    _lib.jack_port_get_latency_range(ptr, _CAPTURE if capture else _PLAYBACK, rng)
    return int(rng.max)
