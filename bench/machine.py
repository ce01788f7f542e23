"""What every benchmark records about the machine it ran on.

Its own copy of ``ddsp_synth.machine.cpu_name``: benchmarks also measure other checkouts
(``--library``), older ones among them, so they cannot import it from the package.
"""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict:
    """CPU, cores, Python, torch and its threads, OpenMP's wait policy and the load average
    (timings taken while other jobs run are noisy: the load says so)."""
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "load_average": os.getloadavg()}


def machine_line() -> str:
    """One line: ``CPU, N cores, Python X, torch Y``."""
    import torch

    return (f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")
