"""One live performance, from the settings to the summary: choose the sound card, load the
model, warm it up, play until told to stop, report.

The order matters: the sound card is checked before the model loads (a wrong device name is
said at once, not after seconds of loading), and the card starts only after the warm-up (the
first hops otherwise compile and cache on the clock).
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..signals import catch_stop_signals, print_or_drop, restore_handlers
from . import backends
from .runner import HELPER_PRIORITY, LiveError, LiveRunner, set_realtime
from .status import NoteLatency, Timings, level_db, status_line, summary_text

DEFAULT_BLOCK = 256  # PortAudio's block when --block is not given (JACK: the server's)
TICK_S = 0.1
CHECK_S = 0.5  # ports that vanished, a stopped server
PIPE_STATUS_S = 5.0  # status lines when stderr is not a terminal (logs, tests)
METER_S = 0.1


@dataclass
class LiveSettings:
    """What ``ddsp-synth live`` was asked (see its ``--help``)."""

    model: str
    midi: str | None = None  # None: audio in; "" : MIDI from the default port; else a port
    backend: str | None = None  # "jack", "portaudio" or None: JACK where a server runs
    seconds: float | None = None
    input: str | None = None
    output: list[str] | None = None
    block: int | None = None
    rate: int | None = None
    connect: bool = False
    record: str | None = None
    record_input: str | None = None
    report: str | None = None
    margin_ms: float | None = None  # None: from the warm-up
    pitch_shift: float = 0.0
    loudness_shift: float = 0.0
    gate_db: float = -60.0
    transpose: float = 0.0
    quiet: bool = False
    force: bool = False
    effects: object | None = None  # a checked rack Preset (--effects), played by its twins


def open_backend(s: LiveSettings, audio_in: bool):
    """The sound card the settings name (JACK by default where a server runs)."""
    if s.backend in (None, "jack"):
        client = backends.open_jack_client()
        if client is not None:
            try:
                return backends.JackBackend(client, audio_in, s.rate, s.block)
            except BaseException:
                client.close()
                raise
        if s.backend == "jack":
            if backends.jack_module() is None:
                raise LiveError("--backend jack needs libjack and JACK-Client (Debian: apt-get "
                                "install jackd2; pip install JACK-Client)")
            raise LiveError("no JACK server is running (start one, e.g. 'jackd -d alsa', or "
                            "use --backend portaudio)")
    output = s.output[0] if s.output else None
    return backends.PortAudioBackend(audio_in, s.input, output, s.rate, s.block or DEFAULT_BLOCK)


def build_path(s: LiveSettings, rate: int):
    """Load the model and put it between the card's rate and its own."""
    from ..model import load_model, resolve_model
    from .paths import AudioPath, MidiPath

    model, meta = load_model(resolve_model(s.model))
    try:
        if s.midi is not None:
            return MidiPath(model, meta, rate, s.transpose, effects=s.effects)
        from ..streaming import LiveOptions

        return AudioPath(model, rate, LiveOptions(pitch_shift_semitones=s.pitch_shift,
                                                  loudness_shift_db=s.loudness_shift,
                                                  gate_db=s.gate_db), effects=s.effects)
    except ValueError as err:  # e.g. a model the streaming engine cannot play (not 16 kHz)
        raise LiveError(f"{s.model}: cannot play live: {err}") from None


def open_midi(s: LiveSettings, backend):
    """The rtmidi input to listen to, or None where the JACK port ``ddsp-synth:midi_in``
    is the input (``--midi`` alone or ``virtual``, or a JACK MIDI port to connect to it)."""
    from .midi_in import VIRTUAL, RtMidiInput

    if isinstance(backend, backends.JackBackend):
        if not s.midi or s.midi == VIRTUAL:
            return None
        if s.midi.isdigit() or any(s.midi.lower() in p.lower() for p in backend.ports("midi")):
            return None
    return RtMidiInput(s.midi or None)


class Session:
    """A performance in progress; :func:`run_live` drives it."""

    def __init__(self, s: LiveSettings, backend, path, runner, midi_input):
        self.s, self.backend, self.path, self.runner = s, backend, path, runner
        self.midi_input = midi_input
        self.recorders: list = []
        self.compute = Timings()
        self.callbacks = Timings()
        self.notes = NoteLatency(runner.rate, self._first_port_sample)
        self._cb_seen = 0
        self.device_latency = (0.0, 0.0)
        self.connections: list[str] = []
        self.started = time.monotonic()

    def _first_port_sample(self, hop: int) -> int:
        """Card sample where the first block of a note played in ``hop`` leaves the port."""
        return self.path.first_output(hop) + self.runner.prefill

    def _collect(self) -> None:
        """Fold what the threads measured into the running figures."""
        r = self.runner
        self.compute.add(self.path.take_compute_ms())
        n = r.n_callbacks
        ring = r.callback_us
        fresh = min(n - self._cb_seen, len(ring))
        idx = (np.arange(n - fresh, n)) & (len(ring) - 1)
        self.callbacks.add(ring[idx] / 1e3)
        self._cb_seen = n
        if self.path.kind == "midi":
            self.notes.update(self.path.note_ons, r.sent)

    def snapshot(self) -> dict:
        r = self.runner
        meter = int(METER_S * r.rate)
        sent_end = r.sent.written
        out = r.sent.read(max(0, sent_end - meter), sent_end)
        in_db = -math.inf
        if r.inp is not None:
            end = r.inp.written
            in_db = level_db(r.inp.read(max(0, end - meter), end))
        measured = self.notes.measured
        return {"elapsed_s": r.n_clock / r.rate, "kind": self.path.kind, "in_db": in_db,
                "out_db": level_db(out), "display": self.path.display(),
                "latency_ms": 1e3 * r.latency_s, "late_blocks": r.late_blocks,
                "xruns": self.backend.xruns,
                "note_latency_ms": measured[-1]["latency_ms"] if measured else None}

    def problem(self) -> str | None:
        """Why playing must stop now, or None."""
        if self.runner.error is not None:
            err = self.runner.error
            return str(err) if isinstance(err, LiveError) else \
                f"the model's worker failed: {type(err).__name__}: {err}"
        for rec in self.recorders:
            if rec.error is not None:
                return f"recording stopped: {rec.error}"
        return self.backend.problem

    def report(self) -> dict:
        r, s = self.runner, self.s
        seconds = r.n_clock / r.rate
        dev_in, dev_out = self.device_latency
        engine_ms = 1e3 * r.latency_s
        rep = {
            "kind": self.path.kind, "model": s.model, "backend": self.backend.name,
            "sample_rate": r.rate, "block_samples": r.block, "block_ms": 1e3 * r.block / r.rate,
            "seconds": seconds, "blocks": r.n_callbacks, "late_blocks": r.late_blocks,
            "late_samples": r.late_samples,
            "late_block_times_s": [n / r.rate for n in r.late_at],

            "late_per_minute": r.late_blocks / (seconds / 60) if seconds > 0 else 0.0,
            "xruns": self.backend.xruns, "margin_blocks": r.margin_blocks,
            "worker_realtime": r.worker_realtime,
            # late blocks that moved the schedule: when, and the latency from then on
            "slips": [{"t_s": n / r.rate,
                       "latency_ms": 1e3 * (p / r.rate + self.path.delay_s)}
                      for n, p in r.slips],
            "slip_ms": 1e3 * r.slip_samples / r.rate,
            "latency_ms": {"engine": engine_ms, "device_in": 1e3 * dev_in,
                           "device_out": 1e3 * dev_out,
                           "round_trip": engine_ms + 1e3 * (dev_in + dev_out),
                           "prefill": 1e3 * r.prefill / r.rate,
                           "schedule_without_margin": 1e3 * r.sync_prefill / r.rate,
                           "margin": 1e3 * r.margin_blocks * r.block / r.rate,
                           "path_delay": 1e3 * self.path.delay_s},
            "latency_samples": r.prefill + round(self.path.delay_s * r.rate),
            "compute_per_hop": self.compute.summary(), "callback": self.callbacks.summary(),
            "first_frame": self.backend.first_frame, "connections": self.connections,
            "record": s.record, "record_input": s.record_input,
            # seconds of a take written as silence: its thread stalled longer than its ring
            "record_lost_s": {str(rec.path): rec.lost / r.rate for rec in self.recorders},
        }
        if self.path.kind == "midi":
            rep["note_on_to_sound"] = self.notes.summary()
        return rep


def _signals_to_flag(stop: threading.Event) -> dict:
    """:data:`~ddsp_synth.signals.STOP_SIGNALS` (Ctrl-C, ``kill``, a closed terminal) set
    ``stop``, which ends the performance cleanly: summary, report, take (main thread only);
    returns the old handlers."""
    return catch_stop_signals(lambda *_: stop.set())


def _play(session: Session, stop: threading.Event, err_stream) -> str | None:
    """The status loop; returns the problem that ended it, or None."""
    s, r = session.s, session.runner
    tty = err_stream.isatty()
    status = not s.quiet
    last_print = last_check = time.monotonic()
    deadline = None if s.seconds is None else s.seconds * r.rate
    backstop = None if s.seconds is None else time.monotonic() + 2 * s.seconds + 10
    while not stop.is_set():
        left_s = TICK_S if deadline is None else (deadline - r.n_clock) / r.rate
        time.sleep(min(TICK_S, max(left_s, 0.002)))  # ends within a few ms of --seconds
        gc.collect(1)  # the young objects only: a full collection could stall the card
        session._collect()
        problem = session.problem()
        now = time.monotonic()
        if problem is None and now - last_check >= CHECK_S:
            last_check = now
            problem = session.backend.check()
            if problem is None and session.midi_input is not None and session.midi_input.vanished():
                problem = f"the MIDI port {session.midi_input.port_name} vanished"
        if problem is not None:
            return problem
        if deadline is not None and (r.n_clock >= deadline or now > backstop):
            return None if r.n_clock >= deadline else "the sound card stopped calling back"
        if status and (tty or now - last_print >= PIPE_STATUS_S):
            line = status_line(session.snapshot())
            try:
                err_stream.write(f"\r{line}\033[K" if tty else line + "\n")
                err_stream.flush()
            except OSError:  # the terminal hung up (EIO) or the pipe closed: play on, quietly
                status = False
            last_print = now
    return None


def _check_devices(s: LiveSettings, backend):
    """Every device named, checked before the model loads: (the rtmidi input or None, the
    JACK connections to make)."""
    midi_input = open_midi(s, backend) if s.midi is not None else None
    links = []
    if isinstance(backend, backends.JackBackend):
        midi_port = s.midi if s.midi and midi_input is None and s.midi != "virtual" else None
        links = backend.plan(s.input, s.output or [], s.connect, midi_port)
    return midi_input, links


def _perform(session: Session, links, out, err) -> str | None:
    """Warm up, start the card, play; everything stopped again on the way out. Returns the
    problem that ended the performance, or None."""
    from .record import Recorder

    s, backend, runner = session.s, session.backend, session.runner
    if s.record:
        session.recorders.append(Recorder(s.record, runner.sent, runner.rate))
    if s.record_input and runner.inp is not None:
        session.recorders.append(Recorder(s.record_input, runner.inp, runner.rate))
    stop = threading.Event()
    main_realtime = False
    old_handlers = _signals_to_flag(stop)
    try:
        runner.start(s.margin_ms)
        session.compute.add(runner.warmup_ms)
        gc.freeze()  # the model and libraries: never traversed again
        gc.disable()  # collections run between ticks of the main thread (see _play)
        backend.start(runner)
        if session.midi_input is not None:  # from now on: keys pressed while the model
            session.midi_input.post = runner.post_midi  # loaded are not played in a burst
        for rec in session.recorders:
            rec.start()
        if isinstance(backend, backends.JackBackend):
            session.connections = backend.connect(links)
        session.device_latency = backend.device_latency_s()
        _print_header(session, out)
        main_realtime = set_realtime(HELPER_PRIORITY)
        return _play(session, stop, err)
    finally:
        gc.enable()
        gc.unfreeze()
        if main_realtime:
            set_realtime(None)
        backend.close()
        runner.stop()
        for rec in session.recorders:
            rec.stop()  # the take is kept whatever stopped it; its error is in rec.error
        restore_handlers(old_handlers)  # last: a second Ctrl-C cannot cut the take


def run_live(s: LiveSettings, out=sys.stdout, err=sys.stderr) -> dict:
    """Play until ``s.seconds`` pass, Ctrl-C or a problem; print the summary; return the
    report. A problem (MIDI port gone, server stopped) raises LiveError after the summary."""
    import json

    from ..audio_io import atomic_write_text, check_audio_output, check_writable

    for out_path in (s.record, s.record_input):
        if out_path:
            check_audio_output(out_path, s.force)
    if s.record_input and s.midi is not None:
        raise LiveError("--record-input records the audio input: there is none with --midi")
    _check_mode_options(s)
    if s.record and s.record_input and Path(s.record).resolve() == Path(s.record_input).resolve():
        raise LiveError("--record and --record-input name the same file")
    if s.report:
        check_writable(Path(s.report), s.force, suffixes=(".json",))
    backend = open_backend(s, audio_in=s.midi is None)
    midi_input = None
    try:
        _check_portaudio_options(s, backend)
        midi_input, links = _check_devices(s, backend)
        path = build_path(s, backend.rate)
        runner = LiveRunner(path, backend.rate, backend.block)
        session = Session(s, backend, path, runner, midi_input)
        problem = _perform(session, links, out, err)
        session._collect()
        problem = problem or next((f"recording stopped: {rec.error}"  # at its very end
                                   for rec in session.recorders if rec.error), None)
        rep = session.report()
        if s.report:  # before any output: a closed pipe or a hung-up terminal loses neither
            atomic_write_text(s.report, json.dumps(_finite(rep), indent=2) + "\n")
        if not s.quiet and err.isatty():
            print_or_drop("", err)  # ends the status line
        print_or_drop(summary_text(rep), out)
        if problem is not None:
            raise LiveError(problem)
        return rep
    finally:
        backend.close()
        if midi_input is not None:
            midi_input.close()


def _check_mode_options(s: LiveSettings) -> None:
    """LiveError for an option that would do nothing in this mode (audio in or MIDI in)."""
    if s.midi is not None:
        for given, option, hint in ((s.pitch_shift != 0.0, "--pitch-shift", "--transpose"),
                                    (s.gate_db != LiveSettings.gate_db, "--gate-db", None),
                                    (s.input is not None, "--input", "--midi PORT")):
            if given:
                raise LiveError(f"{option} is for the audio input: there is none with --midi"
                                + (f" (use {hint})" if hint else ""))
    elif s.transpose != 0.0:
        raise LiveError("--transpose shifts MIDI notes: for the audio input use --pitch-shift")


def _check_portaudio_options(s: LiveSettings, backend) -> None:
    """LiveError for what PortAudio cannot do: several outputs, --connect (JACK's)."""
    if isinstance(backend, backends.JackBackend):
        return
    if s.output and len(s.output) > 1:
        raise LiveError("PortAudio plays into one device: give --output one device (several "
                        "ports are for JACK)")
    if s.connect:
        raise LiveError("--connect connects JACK ports; PortAudio plays through the devices "
                        "--input and --output pick (the system's default without them)")


def _finite(x):
    """JSON has no NaN or infinity: null instead."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _print_header(session: Session, out) -> None:
    b, r, p = session.backend, session.runner, session.path
    if isinstance(b, backends.JackBackend):
        where = f"JACK ({', '.join(session.connections) or 'no connections: use --connect'})"
        if p.kind == "midi" and session.midi_input is None and session.connections and not any(
                c.endswith(":midi_in") for c in session.connections):
            where += (" with no MIDI source connected (--connect connects hardware ports only: "
                      "name a keyboard's port with --midi PORT; --list-devices lists them)")
    else:
        where = f"PortAudio {b.describe()}"
    what = "MIDI in" if p.kind == "midi" else "audio in"
    print_or_drop(f"playing {session.s.model} live ({what}) through {where} at {r.rate} Hz, "
                   f"blocks of {r.block} samples; latency in->out {1e3 * r.latency_s:.1f} ms "
                   f"(round trip with the card "
                   f"{1e3 * (r.latency_s + sum(session.device_latency)):.1f} ms); Ctrl-C stops",
                   out)
