"""The losses of the field's strongest deep-hashing methods, one module each, by name.

``get_method(name)`` gives a method's loss class, whose class attributes say what training
must provide (``needs_codebook``, ``needs_classifier``, ``needs_step``, ``multi_label``,
``output_layer``); ``create_method_loss(name, bits=..., num_classes=..., codebook=...)`` builds
it with its defaults (each module's ``DEFAULTS``, with their sources); ``method_overrides`` and
``build_method`` are what training uses (the codebook included).

Adding a method: a module here with a :class:`HashingLoss` subclass under
``@register_method``, imported below, and its name in
:data:`hashcli.train.names.METHOD_NAMES`; the training loop needs no change.
"""

from __future__ import annotations

from hashcli.train.methods import csq, dpn, dpsh, dsh, greedyhash, hashnet, orthohash, triplet
from hashcli.train.methods.base import HashingLoss
from hashcli.train.methods.registry import (
    BuiltMethod,
    build_method,
    create_method_loss,
    get_method,
    method_overrides,
    register_method,
    registered_methods,
)
from hashcli.train.names import METHOD_NAMES

__all__ = [
    "METHOD_NAMES",
    "BuiltMethod",
    "build_method",
    "method_overrides",
    "triplet",
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
