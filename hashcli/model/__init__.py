"""Hashing networks: backbone registry, the hash head and checkpoints.

Importing this package is cheap (no torch): it exposes the names shell completion needs. The
heavy parts live in submodules that import torch at their top::

    from hashcli.model.registry import create_model        # HashNet from a backbone name
    from hashcli.model.hashnet import HashNet
    from hashcli.model.checkpoint import save_checkpoint, load_checkpoint, load_model
"""

from __future__ import annotations

from hashcli.model.names import (
    BACKBONE_NAMES,
    DEFAULT_BACKBONE,
    DEFAULT_IMAGE_SIZES,
    MAX_BITS,
    MIN_BITS,
    check_bits,
)
from hashcli.train.names import (
    DEFAULT_MINER,
    LOSS_NAMES,
    MINER_NAMES,
    REDUCTION_NAMES,
    SCHEDULE_NAMES,
)

__all__ = [
    "BACKBONE_NAMES",
    "DEFAULT_BACKBONE",
    "DEFAULT_IMAGE_SIZES",
    "DEFAULT_MINER",
    "LOSS_NAMES",
    "MAX_BITS",
    "MINER_NAMES",
    "MIN_BITS",
    "REDUCTION_NAMES",
    "SCHEDULE_NAMES",
    "check_bits",
]
