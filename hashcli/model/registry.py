"""The backbone registry (timm style: register by name, look up by name).

A backbone is a module mapping images ``(N, 3, S, S)`` float to features ``(N, feature_dim)``
float. :func:`register_backbone` records how to build one; :func:`hashcli.model.factory.
create_model` builds it by name, with its starting weights and the hash head on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from hashcli.errors import HashretError

#: ``(state_dict, backbone) -> state_dict`` fitting a compatible state dict to this backbone
#: (for instance interpolating a ViT's position embeddings to another image size).
StateAdapter = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registered backbone."""

    name: str
    #: ``image_size -> module``; the module maps (N, 3, S, S) to (N, feature_dim).
    build: Callable[[int], nn.Module]
    feature_dim: int
    default_image_size: int = 224
    #: torchvision weights enum name (``"ResNet18_Weights.IMAGENET1K_V1"``), None when the
    #: backbone has no pretrained weights.
    pretrained_weights: str | None = None
    #: Key prefixes of the classifier in a full torchvision state dict, ignored when loading.
    classifier_prefixes: tuple[str, ...] = ()
    adapt_state_dict: StateAdapter | None = None
    description: str = field(default="", compare=False)


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    *,
    feature_dim: int,
    default_image_size: int = 224,
    pretrained_weights: str | None = None,
    classifier_prefixes: tuple[str, ...] = (),
    adapt_state_dict: StateAdapter | None = None,
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Decorator registering ``fn(image_size) -> nn.Module`` as backbone ``name``."""

    def decorator(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = BackboneSpec(
            name=name,
            build=fn,
            feature_dim=feature_dim,
            default_image_size=default_image_size,
            pretrained_weights=pretrained_weights,
            classifier_prefixes=classifier_prefixes,
            adapt_state_dict=adapt_state_dict,
            description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
        )
        return fn

    return decorator


def _ensure_builtin_backbones() -> None:
    # The built-in backbones register themselves when their module is imported.
    import hashcli.model.backbones  # noqa: F401


def list_backbones() -> list[str]:
    """Names of the registered backbones, in registration order."""
    _ensure_builtin_backbones()
    return list(_BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec registered as ``name``; HashretError listing the valid names otherwise."""
    _ensure_builtin_backbones()
    try:
        return _BACKBONES[name]
    except KeyError:
        raise HashretError(
            f"unknown backbone {name!r}; choose one of: {', '.join(_BACKBONES)}"
        ) from None
