"""MIDI input through python-rtmidi (messages decoded by mido): a keyboard's port, or a virtual
port that other programs play into. JACK MIDI ports are the JACK backend's own
(``ddsp-synth:midi_in``, :mod:`.backends`).

rtmidi calls back on its own thread; the message goes to
:meth:`~.runner.LiveRunner.post_midi`, which the sound card's next block stamps with its
arrival time. rtmidi does not tell when a port disappears, so :meth:`RtMidiInput.vanished`
looks at the port list (the main thread asks twice a second).
"""

from __future__ import annotations

from .backends import jack_module, pick, quiet_stderr
from .runner import HELPER_PRIORITY, LiveError, set_realtime

VIRTUAL = "virtual"


def _apis() -> list[int]:
    """rtmidi's usable MIDI systems, the platform's own first (ALSA, CoreMIDI, WinMM), then
    JACK MIDI where a server runs."""
    try:
        import rtmidi
    except ImportError:
        return []
    jack_module()  # keep libjack's messages off the terminal
    usable = []
    compiled = rtmidi.get_compiled_api()
    ordered = [a for a in compiled if a != rtmidi.API_UNIX_JACK] + \
              [a for a in compiled if a == rtmidi.API_UNIX_JACK]
    for api in ordered:
        if api == rtmidi.API_RTMIDI_DUMMY:
            continue
        try:
            with quiet_stderr():
                rtmidi.MidiIn(rtapi=api).delete()
            usable.append(api)
        except rtmidi.SystemError:
            continue
    return usable


def list_inputs() -> list[tuple[int, str]]:
    """(rtmidi API, port name) of every MIDI input port rtmidi can open."""
    import rtmidi

    found = []
    for api in _apis():
        with quiet_stderr():
            probe = rtmidi.MidiIn(rtapi=api)
        found += [(api, name) for name in probe.get_ports()]
        probe.delete()
    return found


class RtMidiInput:
    """An open MIDI input; every message goes to ``post(bytes)`` from rtmidi's thread.

    Args:
        spec: a port number or part of its name as listed, ``"virtual"`` for a new port
            named ``midi_in`` of client ``ddsp-synth``, or None for the first port.
        post: called with each message's bytes (None: dropped until :attr:`post` is set).
    """

    def __init__(self, spec: str | None, post=None, client_name: str = "ddsp-synth"):
        try:
            import rtmidi
        except ImportError:
            raise LiveError("MIDI input needs python-rtmidi (pip install python-rtmidi)") from None
        apis = _apis()
        if not apis:
            raise LiveError("no MIDI system to open: neither the ALSA sequencer (/dev/snd/seq) "
                            "nor a JACK server is available")
        self.virtual = spec == VIRTUAL
        if self.virtual:
            api, index = apis[0], None
            self.port_name = f"{client_name}:midi_in"
        else:
            ports = list_inputs()
            if not ports and spec is None:
                raise LiveError("no MIDI input port: connect a keyboard, or use '--midi "
                                "virtual' for a port other programs can play into")
            i = 0 if spec is None else pick([name for _, name in ports], spec, "MIDI port")
            api, self.port_name = ports[i]
            index = [name for a, name in ports if a == api].index(self.port_name)
        with quiet_stderr():
            self.midi = rtmidi.MidiIn(rtapi=api, name=client_name)
        try:
            if self.virtual:
                self.midi.open_virtual_port("midi_in")
            else:
                self.midi.open_port(index, "midi_in")
        except (rtmidi.SystemError, rtmidi.InvalidPortError) as err:
            raise LiveError(f"cannot open the MIDI port {self.port_name}: {err}") from None
        self.midi.ignore_types(sysex=True, timing=True, active_sense=True)
        self.post = post
        self._thread_set = False
        self.midi.set_callback(self._receive)

    def _receive(self, event, _data) -> None:
        """rtmidi's thread: the first message raises that thread to real-time priority, for
        it too takes the interpreter lock the card's callback needs."""
        if not self._thread_set:
            self._thread_set = True
            set_realtime(HELPER_PRIORITY)
        if self.post is not None:
            self.post(bytes(event[0]))

    def vanished(self) -> bool:
        """The port we listen to is gone (unplugged, or its program quit)."""
        return not self.virtual and self.port_name not in self.midi.get_ports()

    def close(self) -> None:
        self.midi.cancel_callback()
        self.midi.close_port()
        self.midi.delete()
