"""Sound cards: JACK (JACK-Client) where a JACK server runs, PortAudio (sounddevice) anywhere.

Both call :meth:`~.runner.LiveRunner.process` once per block from the card's thread and
report their own late blocks (JACK xruns, PortAudio under/overflows) and the card's latency.
Devices are picked by number or by a case-insensitive part of their name; every problem is a
:class:`~.runner.LiveError` with one line that says what exists instead.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .runner import HELPER_PRIORITY, LiveError, set_realtime

CLIENT_NAME = "ddsp-synth"


@contextlib.contextmanager
def quiet_stderr():
    """Silence what C libraries print while probing (ALSA's and libjack's complaints about
    devices that are not there): the outcome is reported as one line instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def pick(items: list[str], spec: str | None, what: str) -> int:
    """Index of the item named by ``spec``: a number, an exact name or a unique part of one."""
    if spec is None:
        raise ValueError("nothing to pick")
    listing = "; ".join(f"{i}: {name}" for i, name in enumerate(items)) or "none"
    if spec.strip().isdigit():
        i = int(spec)
        if i < len(items):
            return i
        raise LiveError(f"there is no {what} number {i} ({what}s: {listing})")
    exact = [i for i, name in enumerate(items) if name.lower() == spec.lower()]
    parts = [i for i, name in enumerate(items) if spec.lower() in name.lower()]
    found = exact or parts
    if len(found) == 1:
        return found[0]
    if not found:
        raise LiveError(f"no {what} matches {spec!r} ({what}s: {listing}; see --list-devices)")
    names = ", ".join(repr(items[i]) for i in found)
    raise LiveError(f"{spec!r} matches several {what}s ({names}): give more of the name or "
                    "its number")


# ------------------------------------------------------------------------------------ JACK
def jack_module():
    """The ``jack`` module with libjack's messages kept off the terminal, or None where
    JACK-Client or libjack is missing."""
    # Looking for a server must not start one (libjack may, and PortAudio's JACK host API)
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    try:
        import jack
    except (ImportError, OSError):
        return None
    jack.set_error_function(lambda message: None)
    jack.set_info_function(lambda message: None)
    return jack


def open_jack_client(name: str = CLIENT_NAME):
    """A client of the running JACK server (``$JACK_DEFAULT_SERVER``), or None if none runs."""
    jack = jack_module()
    if jack is None:
        return None
    try:
        return jack.Client(name, no_start_server=True)
    except jack.JackOpenError:
        return None


_JACK_KINDS = {"capture": dict(is_audio=True, is_output=True),
               "playback": dict(is_audio=True, is_input=True),
               "midi": dict(is_midi=True, is_output=True)}


def jack_ports(client, kind: str, physical_only: bool = False) -> list[str]:
    """Names of the server's ports we can connect: ``capture`` (audio we can listen to),
    ``playback`` (where we can play), ``midi`` (MIDI sources); physical ones first, our own
    left out."""
    found = client.get_ports(**_JACK_KINDS[kind], **({"is_physical": True} if physical_only
                                                      else {}))
    own = f"{client.name}:"
    return [p.name for p in sorted(found, key=lambda p: not p.is_physical)
            if not p.name.startswith(own)]


class JackBackend:
    """Ports ``ddsp-synth:in`` (audio path) or ``ddsp-synth:midi_in`` (MIDI path) and
    ``ddsp-synth:out`` on the running JACK server; the block is the server's period.

    Args:
        client: an open ``jack.Client`` (see :func:`open_jack_client`).
        audio_in: register ``in`` (else ``midi_in``).
        rate, block: what the user asked for, checked against the server's (None: any).
    """

    name = "jack"

    def __init__(self, client, audio_in: bool, rate: int | None = None,
                 block: int | None = None):
        self.jack = jack_module()
        self.client = client
        self.rate, self.block = client.samplerate, client.blocksize
        if rate is not None and rate != self.rate:
            raise LiveError(f"the JACK server runs at {self.rate} Hz, not {rate} Hz: restart it "
                            f"with 'jackd -r {rate} ...' or leave --rate out")
        if block is not None and block != self.block:
            raise LiveError(f"the JACK server's period is {self.block} samples, not {block}: "
                            f"change it with 'jack_bufsize {block}' or leave --block out")
        self.audio_in = audio_in
        # Registered by start(), just before the client activates: a port that exists can
        # be connected (a patchbay or DAW restoring its connections as it appears), not
        # seconds earlier while the model loads.
        self.inport = self.midiport = self.outport = None
        self.first_frame: int | None = None  # JACK's frame time of the first block played
        self.xruns = 0  # as the server reports them (any client's, or its own timing)
        self.problem: str | None = None  # set by JACK's notification thread
        self.watched: list[str] = []  # ports whose disappearance ends the performance
        # No port callbacks (vanished ports: check() polls), and the notification thread is
        # raised to real-time priority at its first call: it takes the interpreter lock the
        # card's callback needs, and must not be preempted by a busy neighbour holding it.
        self._notified = False
        client.set_xrun_callback(self._xrun)
        client.set_shutdown_callback(self._shutdown)
        client.set_blocksize_callback(self._blocksize)

    # notification thread
    def _realtime_once(self) -> None:
        if not self._notified:
            self._notified = True
            set_realtime(HELPER_PRIORITY)

    def _xrun(self, delayed_usecs: float) -> None:
        self._realtime_once()
        self.xruns += 1

    def _shutdown(self, status, reason: str) -> None:
        self.problem = f"the JACK server stopped ({reason or 'no reason given'})"

    def _blocksize(self, blocksize: int) -> None:
        if self.first_frame is not None and blocksize != self.block:
            self.problem = (f"the JACK server's period changed from {self.block} to "
                            f"{blocksize} samples")

    def check(self) -> str | None:
        """Why playing must stop (the server stopped, a watched port vanished), or None;
        the main thread asks twice a second."""
        if self.problem is None:
            names = {p.name for p in self.client.get_ports(is_midi=True, is_output=True)}
            gone = [p for p in self.watched if p not in names]
            if gone:
                self.problem = f"the MIDI port {gone[0]} vanished"
        return self.problem

    # the real-time thread
    def port_name(self, short: str) -> str:
        """The full name of one of our ports (``ddsp-synth:in``), before it exists."""
        return f"{self.client.name}:{short}"

    def start(self, runner) -> None:
        """Register the ports and activate the client: every period calls
        ``runner.process``."""
        client = self.client
        self.inport = client.inports.register("in") if self.audio_in else None
        self.midiport = None if self.audio_in else client.midi_inports.register("midi_in")
        self.outport = client.outports.register("out")
        inport, outport, midiport = self.inport, self.outport, self.midiport

        def process(frames: int) -> None:
            if self.first_frame is None:
                self.first_frame = client.last_frame_time
            x = inport.get_array() if inport is not None else None
            events = ([(t, bytes(data)) for t, data in midiport.incoming_midi_events()]
                      if midiport is not None else ())
            runner.process(x, outport.get_array(), events)

        client.set_process_callback(process)
        client.activate()

    # connections
    def ports(self, kind: str) -> list[str]:
        return jack_ports(self.client, kind)

    def _physical(self, kind: str) -> list[str]:
        return jack_ports(self.client, kind, physical_only=True)

    def plan(self, source: str | None, sinks: list[str], connect_default: bool,
             midi_source: str | None = None) -> list[tuple[str, str]]:
        """The connections to make (port names): the chosen ports (names or numbers as
        listed), and with ``connect_default`` the first physical capture port, the first two
        physical playback ports and every physical MIDI source where none was chosen. A
        chosen port that does not exist is a LiveError now, before the model loads."""
        links = []
        if self.audio_in:
            capture = self.ports("capture")
            srcs = [capture[pick(capture, source, "JACK capture port")]] if source is not None \
                else self._physical("capture")[:1] if connect_default else []
            links += [(src, self.port_name("in")) for src in srcs]
        else:
            midi = self.ports("midi")
            if midi_source is not None:
                srcs = [midi[pick(midi, midi_source, "JACK MIDI port")]]
                self.watched += srcs
            else:
                srcs = self._physical("midi") if connect_default else []
            links += [(src, self.port_name("midi_in")) for src in srcs]
        playback = self.ports("playback")
        outs = [playback[pick(playback, s, "JACK playback port")] for s in sinks] if sinks \
            else self._physical("playback")[:2] if connect_default else []
        return links + [(self.port_name("out"), dst) for dst in outs]

    def connect(self, links: list[tuple[str, str]]) -> list[str]:
        """Make the connections of :meth:`plan` (once active); returns them as text."""
        for src, dst in links:
            self.client.connect(src, dst)
        return [f"{src} -> {dst}" for src, dst in links]

    def device_latency_s(self) -> tuple[float, float]:
        """The card's own input and output latency (s) as the physical ports report it:
        one period of capture and the playback buffers, for JACK's usual settings."""
        from . import jack_latency

        inputs = self.inport.connections if self.inport is not None else []
        outputs = self.outport.connections if self.outport is not None else []
        cap = max((jack_latency.port_latency(p, capture=True) for p in inputs), default=0)
        play = max((jack_latency.port_latency(p, capture=False) for p in outputs), default=0)
        return cap / self.rate, play / self.rate

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.deactivate()
        with contextlib.suppress(Exception):
            self.client.close()


# ------------------------------------------------------------------------------- PortAudio
def sounddevice_module():
    """``sounddevice``, PortAudio initialised quietly; LiveError where it cannot load."""
    jack_module()  # route libjack's messages away before PortAudio's JACK host API loads
    try:
        with quiet_stderr():
            import sounddevice
    except ImportError:
        raise LiveError("the PortAudio backend needs sounddevice (pip install sounddevice)") \
            from None
    except OSError:
        raise LiveError("the PortAudio library is missing (Debian: apt-get install "
                        "libportaudio2)") from None
    return sounddevice


def portaudio_devices() -> list[dict]:
    """PortAudio's devices as sounddevice lists them; [] without a sound card."""
    sd = sounddevice_module()
    with quiet_stderr():
        return [dict(d) for d in sd.query_devices()]


def device_label(d: dict) -> str:
    return f"{d['name']} ({sounddevice_module().query_hostapis(d['hostapi'])['name']})"


class PortAudioBackend:
    """A PortAudio stream on the chosen devices: mono in (the first channel), the instrument
    on every output channel (up to two).

    Args:
        audio_in: open the input device too (the audio path).
        input, output: device number or part of its name (None: PortAudio's default).
        rate: sample rate in Hz (None: the output device's default).
        block: block length in samples.
    """

    name = "portaudio"

    def __init__(self, audio_in: bool, input: str | None, output: str | None,
                 rate: int | None, block: int):
        sd = sounddevice_module()
        devices = portaudio_devices()
        if not devices:
            raise LiveError("no sound card: PortAudio finds no audio device (start a JACK "
                            "server, or connect a sound card)")
        self.sd = sd
        self.audio_in = audio_in
        self.in_dev = self._choose(devices, input, "input") if audio_in else None
        self.out_dev = self._choose(devices, output, "output")
        out_info = devices[self.out_dev]
        self.rate = int(rate or out_info["default_samplerate"])
        self.block = block
        self.out_channels = min(2, out_info["max_output_channels"])
        self._check_rate(devices)
        self.scratch = np.zeros(block, np.float32)
        self.xruns = 0
        self.first_frame = None
        self.problem: str | None = None
        self.stream = None

    def _choose(self, devices: list[dict], spec: str | None, direction: str) -> int:
        key = f"max_{direction}_channels"
        usable = [i for i, d in enumerate(devices) if d[key] > 0]
        if not usable:
            raise LiveError(f"no sound card with an {direction}: PortAudio's devices are "
                            + "; ".join(device_label(d) for d in devices))
        if spec is None:
            default = self.sd.default.device[0 if direction == "input" else 1]
            return default if default in usable else usable[0]
        if spec.strip().isdigit():
            i = int(spec)
            if i in usable:
                return i
            raise LiveError(f"there is no {direction} device number {i} (devices with an "
                            f"{direction}: " + "; ".join(f"{j}: {device_label(devices[j])}"
                                                         for j in usable) + ")")
        return usable[pick([devices[i]["name"] for i in usable], spec, f"{direction} device")]

    def _check_rate(self, devices: list[dict]) -> None:
        sd = self.sd
        checks = [(self.out_dev, sd.check_output_settings, self.out_channels)]
        if self.in_dev is not None:
            checks.append((self.in_dev, sd.check_input_settings, 1))
        for dev, check, channels in checks:
            try:
                with quiet_stderr():
                    check(device=dev, channels=channels, dtype="float32", samplerate=self.rate)
            except sd.PortAudioError as err:
                d = devices[dev]
                raise LiveError(f"{device_label(d)} refuses {self.rate} Hz ({err}); its "
                                f"default is {d['default_samplerate']:g} Hz") from None

    def start(self, runner) -> None:
        sd = self.sd
        scratch, n_ch = self.scratch, self.out_channels

        def callback(indata, outdata, frames, time_info, status) -> None:
            if status.input_overflow or status.output_underflow:
                self.xruns += 1
            out = scratch[:frames] if frames <= len(scratch) else np.zeros(frames, np.float32)
            runner.process(indata[:, 0] if indata is not None else None, out, ())
            outdata[:, :n_ch] = out[:, None]

        def finished() -> None:
            if self.problem is None and not self._closing:
                self.problem = "the sound card stopped the stream"

        self._closing = False
        kwargs = dict(samplerate=self.rate, blocksize=self.block, dtype="float32",
                      latency="low", finished_callback=finished)
        try:
            if self.audio_in:
                self.stream = sd.Stream(device=(self.in_dev, self.out_dev),
                                        channels=(1, self.out_channels), callback=callback, **kwargs)
            else:
                self.stream = sd.OutputStream(
                    device=self.out_dev, channels=self.out_channels,
                    callback=lambda o, f, t, s: callback(None, o, f, t, s), **kwargs)
            self.stream.start()
        except sd.PortAudioError as err:
            raise LiveError(f"the sound card refused to start: {err}") from None

    def check(self) -> str | None:
        """Why playing must stop (the stream ended), or None."""
        return self.problem

    def device_latency_s(self) -> tuple[float, float]:
        lat = self.stream.latency
        return (float(lat[0]), float(lat[1])) if self.audio_in else (0.0, float(lat))

    def describe(self) -> str:
        devices = portaudio_devices()
        out = device_label(devices[self.out_dev])
        return out if self.in_dev is None else f"{device_label(devices[self.in_dev])} -> {out}"

    def close(self) -> None:
        self._closing = True
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.stop()
            with contextlib.suppress(Exception):
                self.stream.close()
