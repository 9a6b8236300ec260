"""The losses of the field's strongest deep-hashing methods, one module each, by name.

``get_method(name)`` gives a method's loss class, whose class attributes say what training
must provide (``needs_codebook``, ``needs_classifier``, ``needs_step``, ``multi_label``,
``output_layer``); ``create_method_loss(name, bits=..., num_classes=..., codebook=...)`` builds
it with its defaults (each module's ``DEFAULTS``, with their sources).
"""

from __future__ import annotations

from hashcli.train.methods import csq, dpn, dpsh, dsh, greedyhash, hashnet, orthohash
from hashcli.train.methods.base import HashingLoss
from hashcli.train.methods.registry import (
    create_method_loss,
    get_method,
    register_method,
    registered_methods,
)
from hashcli.train.names import METHOD_NAMES

__all__ = [
    "METHOD_NAMES",
    "HashingLoss",
    "create_method_loss",
    "csq",
    "dpn",
    "dpsh",
    "dsh",
    "get_method",
    "greedyhash",
    "hashnet",
    "orthohash",
    "register_method",
    "registered_methods",
]
