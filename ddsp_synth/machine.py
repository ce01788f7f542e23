"""The machine a run happened on, as cards and training summaries name it."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(threads: int) -> str:
    """``CPU, N cores, T thread(s)``: where a model or controller was trained."""
    return f"{cpu_name()}, {os.cpu_count()} cores, {threads} thread(s)"
