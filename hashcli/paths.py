"""Default locations: the data root and the work directory (environment, then ./data, ./runs)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "HASHRET_DATA"
WORKDIR_ENV = "HASHRET_WORKDIR"


def default_data_root() -> Path:
    """``$HASHRET_DATA`` when set, else ``./data``."""
    return Path(os.environ.get(DATA_ENV) or "data")


def default_workdir() -> Path:
    """``$HASHRET_WORKDIR`` when set, else ``./runs``."""
    return Path(os.environ.get(WORKDIR_ENV) or "runs")
