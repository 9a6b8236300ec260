"""The method registry (timm style): ``@register_method`` on a loss class, then by name.

Names are also listed torch-free in :data:`hashcli.train.names.METHOD_NAMES` for ``--help`` and
shell completion; a test checks that both agree.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from hashcli.errors import HashretError
from hashcli.train.methods.base import HashingLoss

LossClass = TypeVar("LossClass", bound=type[HashingLoss])

_METHODS: dict[str, type[HashingLoss]] = {}


def register_method(cls: LossClass) -> LossClass:
    """Class decorator: register a :class:`HashingLoss` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name to register under")
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is already registered")
    _METHODS[cls.name] = cls
    return cls


def registered_methods() -> tuple[str, ...]:
    """Names of the registered methods, sorted."""
    return tuple(sorted(_METHODS))


def get_method(name: str) -> type[HashingLoss]:
    """The loss class registered as ``name``; a HashretError lists the valid names."""
    try:
        return _METHODS[name]
    except KeyError:
        raise HashretError(
            f"unknown method {name!r}; choose one of: {', '.join(registered_methods())}"
        ) from None


def create_method_loss(
    name: str,
    *,
    bits: int,
    num_classes: int,
    codebook: torch.Tensor | None = None,
    **hyperparameters: Any,
) -> HashingLoss:
    """The loss of method ``name``, with its defaults unless ``hyperparameters`` override them.

    ``codebook`` ((num_classes, bits) +-1) is required by the methods with ``needs_codebook``
    and refused by the others.
    """
    return get_method(name)(
        bits=bits, num_classes=num_classes, codebook=codebook, **hyperparameters
    )
