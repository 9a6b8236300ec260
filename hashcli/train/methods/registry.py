"""The method registry (timm style): ``@register_method`` on a loss class, then by name.

Names are also listed torch-free in :data:`hashcli.train.names.METHOD_NAMES` for ``--help`` and
shell completion; a test checks that both agree.

Training builds a method in two steps, so that a bad option fails before any data is read:
:func:`method_overrides` turns the shared options (``margin``, ``quantization``, ``miner``) and
``--option key=value`` texts into the method's own settings, checked; :func:`build_method`
then makes the loss, with its codebook of hash centres where the method needs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch

from hashcli.errors import HashretError
from hashcli.train.codebook import Codebook, hash_centres
from hashcli.train.methods.base import HashingLoss, make_settings, parse_option

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


def method_overrides(
    name: str,
    *,
    shared: Mapping[str, Any] | None = None,
    options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The settings of method ``name`` that differ from its defaults, checked.

    ``shared``: the shared options given (``margin``, ``quantization``, ``miner``; None means
    not given), each mapped to the method's own setting (``shared_options``). ``options``:
    ``key -> text`` of the method's own settings (``--option key=value``), converted to their
    types. A shared option the method lacks, an option it does not have, a value of the wrong
    type or out of bounds, or one setting given twice: a HashretError naming the method.
    """
    method = get_method(name)
    overrides: dict[str, Any] = {}
    for key, value in (shared or {}).items():
        if value is None:
            continue
        if key not in method.shared_options:
            having = [m for m in registered_methods() if key in _METHODS[m].shared_options]
            raise HashretError(
                f"the {name} method has no --{key} option; it is for the methods "
                f"{', '.join(having)}"
            )
        overrides[method.shared_options[key]] = value
    for key, text in (options or {}).items():
        if key in overrides:
            raise HashretError(f"the {name} method's {key} is given twice")
        overrides[key] = parse_option(name, method.settings_type, key, text)
    method.check_settings(make_settings(name, method.settings_type, overrides))
    return overrides


@dataclass
class BuiltMethod:
    """A method ready to train: its loss (an ``nn.Module``) and its codebook, if it has one."""

    loss: HashingLoss
    codebook: Codebook | None

    def record(self) -> dict[str, Any]:
        """What config.json records of the method: name, every setting (defaults included,
        derived ones resolved), activation, output layer and how the codebook was made."""
        loss = self.loss
        settings = asdict(loss.settings)
        for key in loss.derived_settings:
            settings[key] = getattr(loss, key)
        return {
            "name": loss.name,
            "settings": settings,
            "activation": loss.activation,
            "output_layer": loss.output_layer,
            "codebook": self.codebook.to_config() if self.codebook is not None else None,
        }


def build_method(
    name: str,
    *,
    bits: int,
    num_classes: int,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    codebook: Codebook | None = None,
) -> BuiltMethod:
    """Method ``name``'s loss with ``overrides`` (from :func:`method_overrides`).

    A method that needs hash centres gets ``codebook`` (a resumed run's, from its checkpoint)
    or new ones from :func:`~hashcli.train.codebook.hash_centres` with ``seed``, balanced or
    not as the method's reference draws them.
    """
    method = get_method(name)
    if method.needs_codebook and codebook is None:
        codebook = hash_centres(num_classes, bits, seed=seed, balanced=method.codebook_balanced)
    if not method.needs_codebook:
        codebook = None
    loss = method(
        bits=bits,
        num_classes=num_classes,
        codebook=codebook.centres if codebook is not None else None,
        **dict(overrides or {}),
    )
    return BuiltMethod(loss=loss, codebook=codebook)
