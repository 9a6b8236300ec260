"""State dicts in, backbone weights out: reading a weights file, finding the state dict inside
a checkpoint, and loading it into a registered backbone with clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from hashcli.errors import FormatError, HashretError

if TYPE_CHECKING:
    from hashcli.model.registry import BackboneSpec


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
    return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj: object, path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict in ``obj`` as loaded from ``path``: ``obj`` itself, or the one a training
    checkpoint holds under ``model``, ``state_dict`` or ``model_state_dict``. FormatError when
    there is none, or when it holds anything but tensors under string keys."""
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
