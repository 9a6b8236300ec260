"""Where code runs: the CPU cores this process may use, the torch device and its per-device
settings, and torchrun sessions.

Importing this package is cheap (:func:`usable_cores` needs only ``os``);
:mod:`hashcli.runtime.device` imports torch, and :mod:`hashcli.runtime.distributed` when its
functions run.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
