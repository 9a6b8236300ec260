"""Hashing networks: backbone registry, model factory, the hash head and checkpoints.

Importing this package is cheap (no torch): it exposes the names shell completion needs. The
heavy parts live in submodules that import torch at their top::

    from hashcli.model.factory import create_model         # HashNet from a backbone name
    from hashcli.model.registry import register_backbone, list_backbones
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
    check_whole_byte_bits,
)

__all__ = [
    "BACKBONE_NAMES",
    "DEFAULT_BACKBONE",
    "DEFAULT_IMAGE_SIZES",
    "MAX_BITS",
    "MIN_BITS",
    "check_whole_byte_bits",
]
