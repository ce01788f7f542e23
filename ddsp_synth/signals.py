"""How a command stops and where its last words go: the stop signals (Ctrl-C, ``kill``, a
closed terminal) turned into an interrupt that says which, and printing to a reader that may
have gone (``| head``, a terminal that hung up)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

# Ctrl-C, ``kill`` and a closed terminal: each ends a command as Ctrl-C does
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class StopSignal(KeyboardInterrupt):
    """A stop signal turned into an interrupt; ``signum`` says which (exit 128 + it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the command (130 for Ctrl-C)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def catch_stop_signals(handler) -> dict:
    """Set ``handler(signum, frame)`` for each of :data:`STOP_SIGNALS` that the caller does
    not ignore (an ignored one stays ignored: ``nohup``, a background job's SIGINT), in the
    main thread only (``signal.signal``'s rule; elsewhere nothing is set). Returns the old
    handlers, for :func:`restore_handlers`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in STOP_SIGNALS
            if signal.getsignal(s) is not signal.SIG_IGN}


def restore_handlers(old: dict) -> None:
    """Put back the handlers :func:`catch_stop_signals` replaced."""
    for s, handler in old.items():
        signal.signal(s, handler)


@contextlib.contextmanager
def stop_signals_interrupt():
    """Within the block, each of :data:`STOP_SIGNALS` raises a :class:`StopSignal` in the
    main thread, so ``finally`` blocks and atomic writers clean up as on Ctrl-C (the first
    signal only: the clean-up it starts is not cut short by a second). A signal the caller
    ignores stays ignored (``nohup``, a background job's SIGINT), as Python leaves an ignored
    SIGINT; code that handles the signals itself (training, ``live``) sets its own handlers
    inside and puts these back. A signal that comes during an import is raised once the
    import is over (:func:`_importing`)."""
    def stop(signum, frame):
        if _importing(frame):  # raised there, it could be lost or crash: a moment later
            threading.Timer(IMPORT_RETRY_S, os.kill, (os.getpid(), signum)).start()
            return
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        raise StopSignal(signum)

    old = catch_stop_signals(stop)
    try:
        yield
    finally:
        restore_handlers(old)


# a stop signal that comes while a module is being imported is sent again this much later
IMPORT_RETRY_S = 0.05


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside an import. An exception raised into an extension
    module's initialisation (the commands import soxr, onnxruntime and others lazily) was
    seen to vanish, the signal with it, or to crash the interpreter (soxr's, 2 of 8 tries)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def print_or_drop(text: str, out) -> None:
    """Print ``text``; where the reader has gone (a pipe closed by the same Ctrl-C, a
    terminal that hung up: EIO), drop it and send the rest of the output to nowhere, so that
    exiting does not fail again."""
    try:
        print(text, file=out, flush=True)
    except OSError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        except (OSError, ValueError, AttributeError):
            pass
