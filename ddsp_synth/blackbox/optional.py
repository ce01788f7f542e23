"""pedalboard (GPL-3.0, the optional 'effects' extra), imported only when a device needs it."""

from __future__ import annotations

from ..stages.params import DeviceError

PEDALBOARD_HINT = ("pedalboard is not installed; it is the optional 'effects' extra (GPL-3.0): "
                   "pip install -e '.[effects]'")


def import_pedalboard():
    """pedalboard, imported on first use; DeviceError naming the extra when missing."""
    try:
        import pedalboard
    except ImportError:
        raise DeviceError(PEDALBOARD_HINT) from None
    return pedalboard
