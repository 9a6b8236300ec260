"""Backbone registry and the model factory (timm style: register by name, create by name).

A backbone is a module mapping images ``(N, 3, S, S)`` float to features ``(N, feature_dim)``
float. :func:`register_backbone` records how to build one; :func:`create_model` builds it, loads
its starting weights (ImageNet from the local torch cache, a state dict file, or none) and puts
the hash head on top.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hashcli.errors import FormatError, HashretError
from hashcli.model.hashnet import HashNet
from hashcli.model.names import check_bits

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


def create_model(
    name: str,
    bits: int,
    *,
    pretrained: bool = True,
    weights: Path | str | None = None,
    image_size: int | None = None,
    download_timeout: float = 5.0,
) -> HashNet:
    """Build backbone ``name`` with a ``bits``-bit hash head.

    Starting weights of the backbone, in order of precedence:

    - ``weights``: a state dict file (``torch.load(weights_only=True)``), either a full
      torchvision state dict (its classifier keys are ignored), a backbone-only one, or a
      hashret checkpoint/HashNet state dict (its backbone part is used);
    - ``pretrained=True``: the backbone's ImageNet weights, read from the torch cache
      (``$TORCH_HOME/hub/checkpoints/<file>``); when absent, one download is tried with a
      ``download_timeout``-second network timeout (0 disables it) and on failure a
      HashretError names the file to place, where, and the alternatives;
    - otherwise random initialisation.

    ``tiny`` has no pretrained weights, so ``pretrained=True`` is ignored for it (the config
    records ``init: "random"``). The head is always freshly initialised.
    ``image_size`` defaults to the backbone's native size; a ViT built at another size
    interpolates its pretrained position embeddings.
    """
    spec = get_backbone_spec(name)
    check_bits(bits)
    if image_size is None:
        image_size = spec.default_image_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise HashretError(f"image size must be an integer >= 8, got {image_size!r}")

    # Resolve the weights file first, so a missing file fails before any slow construction.
    state: dict[str, torch.Tensor] | None = None
    if weights is not None:
        weights = Path(weights)
        state = read_state_dict(weights)
        init = f"file:{weights.name}"
    elif pretrained and spec.pretrained_weights is not None:
        from hashcli.model.weights import load_pretrained_state

        state = load_pretrained_state(
            spec.pretrained_weights, backbone=name, download_timeout=download_timeout
        )
        init = f"imagenet:{spec.pretrained_weights}"
    else:
        init = "random"

    backbone = spec.build(image_size)
    if state is not None:
        load_backbone_state(spec, backbone, state, source=str(weights or spec.pretrained_weights))
    config = {"backbone": name, "bits": bits, "image_size": image_size, "init": init}
    return HashNet(backbone, spec.feature_dim, bits, config=config)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict file with ``torch.load(weights_only=True)``; FormatError if unusable."""
    if not path.is_file():
        raise HashretError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad file
        raise FormatError(
            f"cannot read weights file {path} as a state dict (torch.load with "
            f"weights_only=True failed: {str(error).splitlines()[0]})"
        ) from error
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: object, path: Path | str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        # A training checkpoint holding the state dict under a well-known key.
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise FormatError(f"weights file {path} does not hold a state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise FormatError(
            f"weights file {path} is not a state dict: entries that are not tensors: "
            f"{', '.join(map(str, bad[:5]))}"
        )
    return dict(obj)


def load_backbone_state(
    spec: BackboneSpec, backbone: nn.Module, state: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Load ``state`` into ``backbone``, dropping classifier keys and adapting it if needed.

    Accepts a full torchvision state dict (classifier ignored), a backbone-only one, or a
    HashNet state dict (``backbone.*`` used, ``head.*`` ignored); ``module.`` prefixes
    (DistributedDataParallel) are stripped. FormatError on missing, unexpected or misshapen
    keys.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if state and all(k.startswith(("backbone.", "head.")) for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith(spec.classifier_prefixes)}
    if spec.adapt_state_dict is not None:
        state = spec.adapt_state_dict(state, backbone)

    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or misshapen:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{len(keys)} {label} key(s): {', '.join(keys[:5])}{more}")
        if misshapen:
            parts.append(f"{len(misshapen)} key(s) of another shape: {', '.join(misshapen[:5])}")
        raise FormatError(
            f"weights from {source} do not fit backbone {spec.name!r}: " + "; ".join(parts)
        )
    backbone.load_state_dict(state, strict=True)
