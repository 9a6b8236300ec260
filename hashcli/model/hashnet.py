"""The hashing network: backbone -> Linear(features, bits) -> output layer; the code is the sign.

The network's output is the hash layer's real-valued output *before* any activation: each
training method applies its own (tanh for the triplet loss, CSQ and HashNet, none for DPN or
DSH; see :mod:`hashcli.train.methods`), and none changes the sign, so the code is the sign of
the output for every method. The output layer is ``"none"`` (identity) or ``"batchnorm"``
(OrthoHash's ``BatchNorm1d(bits)`` after the linear head).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hashcli.model.names import check_whole_byte_bits

#: Config keys that fix the architecture (and so enter the fingerprint); other keys, such as
#: ``init`` (where the starting weights came from), are provenance only.
ARCHITECTURE_KEYS = ("backbone", "bits", "feature_dim", "image_size")
#: Architecture keys added later, with the value every earlier model had: they enter the
#: fingerprint only when they differ from it, so earlier models keep their fingerprints.
LATER_ARCHITECTURE_KEYS = {"output_layer": "none"}

#: The layers a model can put after its linear head, by name.
OUTPUT_LAYERS = ("none", "batchnorm")


def check_output_layer(name: str) -> str:
    """``name`` when it is one of :data:`OUTPUT_LAYERS`, else HashretError."""
    if name not in OUTPUT_LAYERS:
        from hashcli.errors import HashretError

        raise HashretError(
            f"unknown output layer {name!r}; choose one of: {', '.join(OUTPUT_LAYERS)}"
        )
    return name


def output_layer(name: str, bits: int) -> nn.Module:
    """The layer named ``name`` (one of :data:`OUTPUT_LAYERS`) for ``bits`` outputs."""
    if check_output_layer(name) == "batchnorm":
        return nn.BatchNorm1d(bits)
    return nn.Identity()


def sign_codes(outputs: torch.Tensor) -> torch.Tensor:
    """Binary codes of network outputs: ``outputs >= 0`` as torch.bool, same shape.

    An output of exactly 0 counts as +1 (True), the code file convention.
    """
    return outputs >= 0


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) over names, dtypes, shapes and raw bytes of a state dict, in key order.

    Independent of the device the tensors are on; equal for equal weights after save/load.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        header = f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|"
        digest.update(header.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 (hex) of the architecture keys of a model config, as canonical JSON."""
    arch = {key: config.get(key) for key in ARCHITECTURE_KEYS}
    for key, earlier in LATER_ARCHITECTURE_KEYS.items():
        if config.get(key, earlier) != earlier:
            arch[key] = config[key]
    return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()


class HashNet(nn.Module):
    """``backbone -> Linear(feature_dim, bits) -> output layer``.

    ``forward(x)``: images (N, 3, S, S) float -> (N, bits) float, the pre-activation output
    (see the module docstring).
    ``encode(x)``: images -> codes (N, bits) torch.bool, True for an output >= 0.
    ``config``: the dict that rebuilds the model with :func:`hashcli.model.factory.create_model`
    (``backbone``, ``bits``, ``feature_dim``, ``image_size``, ``output_layer``, ``init``).
    ``fingerprint()``: ``"<config 8 hex>-<weights 16 hex>"``, stable across save/load and
    devices, different for different architectures or weights.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        bits: int,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_whole_byte_bits(bits)
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, bits)
        self._config: dict[str, Any] = {
            "backbone": type(backbone).__name__,
            "image_size": None,
            "output_layer": "none",
            "init": "random",
            **(config or {}),
            "bits": bits,
            "feature_dim": feature_dim,
        }
        self.output = output_layer(self._config["output_layer"], bits)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the model config (JSON-serialisable builtins only)."""
        return dict(self._config)

    @property
    def bits(self) -> int:
        return self._config["bits"]

    @property
    def feature_dim(self) -> int:
        return self._config["feature_dim"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.output(self.head(self.backbone(images)))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Codes (N, bits) torch.bool of images (N, 3, S, S); call ``eval()`` first."""
        return sign_codes(self(images))

    def fingerprint(self) -> str:
        """Short stable identity of architecture and weights (see the class docstring)."""
        return f"{config_digest(self._config)[:8]}-{state_dict_digest(self.state_dict())[:16]}"

    def extra_repr(self) -> str:
        return f"backbone={self._config['backbone']!r}, bits={self.bits}"
