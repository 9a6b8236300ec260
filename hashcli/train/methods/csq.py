"""CSQ, Central Similarity Quantization (Yuan et al., CVPR 2020).

With ``u = tanh(outputs)`` and ``c`` the +-1 hash centre of the item's class (a row of the
codebook), per batch

    loss = BCE((u + 1) / 2, (c + 1) / 2) + quantization_weight * mean((|u| - 1)^2)

both means over the batch and the bits. ``(tanh(x) + 1) / 2 = sigmoid(2 x)``, so the BCE is
computed from logits ``2 x`` (the same value, without the log of 0 of a saturated tanh).

Multi-label: the centre of an item is the sign of the sum of its labels' centres; a bit whose
sum is 0 takes the bit of a fixed random +-1 vector (``tie_break``, drawn once from
``tie_seed``), as the reference draws one random centre for ties.

Defaults (swuxyj/DeepHash-pytorch ``CSQ.py``, which follows the authors' code
yuanli2333/Hadamard-Matrix-for-hashing): ``quantization_weight`` = 1e-4 (``config["lambda"]``).
The codebook itself (Hadamard rows or random balanced codes) comes from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F

from hashcli.train.methods.base import HashingLoss, at_least
from hashcli.train.methods.registry import register_method


@dataclass(frozen=True)
class CSQDefaults:
    #: lambda of the quantisation term; DeepHash-pytorch CSQ.py ``"lambda": 0.0001``.
    quantization_weight: float = at_least(1e-4, 0)
    #: Seed of the tie-break vector for multi-label centres (ours; the reference is unseeded).
    tie_seed: int = 0


DEFAULTS = CSQDefaults()


def multi_label_centres(
    codebook: torch.Tensor, labels: torch.Tensor, tie_break: torch.Tensor
) -> torch.Tensor:
    """(B, bits) +-1 centres: sign of the sum of the centres of each row's labels.

    ``codebook`` (C, bits) +-1, ``labels`` (B, C) bool, ``tie_break`` (bits,) +-1 for sums of 0.
    """
    sums = labels.to(codebook.dtype) @ codebook
    return torch.where(sums == 0, tie_break.to(sums.dtype), torch.sign(sums))


@register_method
class CSQLoss(HashingLoss):
    """CSQ's loss (see the module docstring); ``codebook`` (num_classes, bits) +-1."""

    name = "csq"
    multi_label = True
    needs_codebook = True
    activation = "tanh"
    settings_type = CSQDefaults
    shared_options = MappingProxyType({"quantization": "quantization_weight"})

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        generator = torch.Generator().manual_seed(self.settings.tie_seed)
        tie_break = torch.randint(0, 2, (self.bits,), generator=generator).float() * 2 - 1
        self.register_buffer("tie_break", tie_break)

    def centres(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, bits) +-1 target centres of (B,) class indices or (B, C) multi-hot labels."""
        if labels.ndim == 2:
            return multi_label_centres(self.codebook, labels, self.tie_break)
        return self.codebook[labels]

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        targets = (self.centres(labels) + 1) / 2
        center_loss = F.binary_cross_entropy_with_logits(2 * outputs, targets)
        u = torch.tanh(outputs)
        return center_loss + self.settings.quantization_weight * (u.abs() - 1).pow(2).mean()
