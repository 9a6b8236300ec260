"""DSH, Deep Supervised Hashing (Liu et al., CVPR 2016).

Over the ordered pairs ``i != j`` of the batch, with ``d = ||u_i - u_j||^2`` and ``s = 1`` for
a similar pair,

    loss = mean over pairs of [ s / 2 * d + (1 - s) / 2 * max(margin - d, 0) ]
           + alpha * mean over the batch and bits of ||u| - 1|

on the raw outputs ``u`` (no tanh). The regulariser is the paper's L1 pull of ``|u|`` toward 1;
DeepHash-pytorch writes it as ``mean(|1 - sign(u)|)``, which has no gradient. The reference
compares the batch with a memory bank of all training outputs; here pairs are taken inside the
batch only (no bank).

Defaults: margin = 2 * bits (the paper's ``m = 2k``; DeepHash-pytorch ``DSH.py``
``self.m = 2 * bit``), alpha = 0.1 (DeepHash-pytorch ``DSH.py`` ``"alpha": 0.1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashcli.errors import HashretError
from hashcli.train.methods.base import HashingLoss, off_diagonal, similarity
from hashcli.train.methods.registry import register_method


@dataclass(frozen=True)
class DSHDefaults:
    #: The margin is this times the bit count: DSH paper ``m = 2k``, DeepHash-pytorch DSH.py.
    margin_per_bit: float = 2.0
    #: DeepHash-pytorch DSH.py ``"alpha": 0.1``.
    alpha: float = 0.1


DEFAULTS = DSHDefaults()


@register_method
class DSHLoss(HashingLoss):
    """DSH's pairwise contrastive loss (see the module docstring)."""

    name = "dsh"
    multi_label = True

    def __init__(
        self,
        *,
        bits: int,
        num_classes: int,
        margin: float | None = None,
        alpha: float = DEFAULTS.alpha,
    ) -> None:
        super().__init__(bits=bits, num_classes=num_classes)
        margin = DEFAULTS.margin_per_bit * bits if margin is None else margin
        if margin < 0 or alpha < 0:
            raise HashretError(f"margin and alpha must be >= 0, got {margin}, {alpha}")
        self.margin = float(margin)
        self.alpha = float(alpha)

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pairs = off_diagonal(len(outputs), outputs.device)
        similar = similarity(labels).to(outputs.dtype)
        distances = (outputs[:, None, :] - outputs[None, :, :]).pow(2).sum(2)
        per_pair = similar / 2 * distances + (1 - similar) / 2 * (
            self.margin - distances
        ).clamp_min(0)
        # Sum over pairs / count (clamped): a batch of one item gives 0, not NaN.
        pair_loss = (per_pair * pairs).sum() / pairs.sum().clamp_min(1)
        return pair_loss + self.alpha * (outputs.abs() - 1).abs().mean()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin:g}, alpha={self.alpha:g}"
