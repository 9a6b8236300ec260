"""GreedyHash (Su et al., NeurIPS 2018).

``b = sign(u)`` in the forward pass with the gradient passed through unchanged in the backward
pass (:class:`SignStraightThrough`); a linear classifier ``W`` (bits -> classes, no bias) owned
by the loss scores ``b``:

    loss = cross_entropy(W b, y) + alpha * mean(||u| - 1|^3)

The classifier is a trainable part of the method: give ``loss.parameters()`` to the optimiser
besides the model's (a public implementation left ``W`` out, so it stayed at its random
initialisation). Single-label only: the reference turns its labels into one class by argmax.
Sign of 0 is +1 (the code file convention; ``torch.sign`` would give 0).

Defaults (swuxyj/DeepHash-pytorch ``GreedyHash.py``, following ssppp/GreedyHash): alpha = 0.1
(``config["alpha"]``; the same file sets 1 for ImageNet); classifier
``Linear(bit, n_class, bias=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hashcli.train.methods.base import HashingLoss, at_least, plus_minus_sign
from hashcli.train.methods.registry import register_method


@dataclass(frozen=True)
class GreedyHashDefaults:
    #: DeepHash-pytorch GreedyHash.py ``"alpha": 0.1`` (1 for ImageNet in the same file).
    alpha: float = at_least(0.1, 0)


DEFAULTS = GreedyHashDefaults()


class SignStraightThrough(torch.autograd.Function):
    """Forward ``+-1`` (0 -> +1); backward the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        return plus_minus_sign(values)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


def sign_straight_through(values: torch.Tensor) -> torch.Tensor:
    """``+-1`` codes of ``values`` whose gradient is the identity (GreedyHash's hash layer)."""
    return SignStraightThrough.apply(values)


@register_method
class GreedyHashLoss(HashingLoss):
    """GreedyHash's loss with its classifier ``self.classifier`` (see the module docstring)."""

    name = "greedyhash"
    needs_classifier = True
    settings_type = GreedyHashDefaults
    #: alpha weighs the pull of ``|u|`` toward 1: GreedyHash's quantisation term.
    shared_options = MappingProxyType({"quantization": "alpha"})

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.classifier = nn.Linear(self.bits, self.num_classes, bias=False)

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        codes = sign_straight_through(outputs)
        logits = F.linear(codes, self.classifier.weight.float())
        penalty = (outputs.abs() - 1).abs().pow(3).mean()
        return F.cross_entropy(logits, labels) + self.settings.alpha * penalty
