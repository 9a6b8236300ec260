"""Online triplet mining inside a batch (pytorch-metric-learning style: a loss takes a miner).

A miner looks at the detached pairwise distances (B, B) of a batch and its labels (B,) and
returns the triplets to train on as three index tensors ``(anchors, positives, negatives)``,
each (T,) int64, with ``labels[a] == labels[p]``, ``a != p`` and ``labels[a] != labels[n]``.
All miners are vectorised (no Python loop over triplets); memory is stated per miner.
"""

from __future__ import annotations

import torch

from hashcli.errors import HashretError

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` masks (B, B) bool: same label and not the same item; other label."""
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & not_self, ~same


class BaseMiner:
    """``miner(distances, labels, margin) -> (anchors, positives, negatives)``."""

    name = ""

    def __call__(self, distances: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
        return self.mine(distances.detach(), labels, margin)

    def mine(self, distances: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BatchAllMiner(BaseMiner):
    """Every valid triplet of the batch (the original project's): O(B^3) bool memory."""

    name = "batch-all"

    def mine(self, distances: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
        positive, negative = pair_masks(labels)
        valid = positive[:, :, None] & negative[:, None, :]
        anchors, positives, negatives = valid.nonzero(as_tuple=True)
        return anchors, positives, negatives


class BatchHardMiner(BaseMiner):
    """One triplet per anchor: its farthest positive and its closest negative (Hermans et al.,
    2017). Anchors without a positive or without a negative are skipped. O(B^2) memory; ties
    go to the lowest index."""

    name = "batch-hard"

    def mine(self, distances: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
        positive, negative = pair_masks(labels)
        anchors = (positive.any(dim=1) & negative.any(dim=1)).nonzero(as_tuple=True)[0]
        far = distances.masked_fill(~positive, float("-inf"))
        near = distances.masked_fill(~negative, float("inf"))
        return anchors, far.argmax(dim=1)[anchors], near.argmin(dim=1)[anchors]


class SemiHardMiner(BaseMiner):
    """One triplet per anchor-positive pair, with a semi-hard negative (Schroff et al., 2015).

    The negative is the closest one farther from the anchor than the positive
    (``d(a, n) > d(a, p)``); its loss is positive exactly when it also lies within the margin.
    Fallback, when no negative is farther than the positive (all are "hard"): the farthest
    negative, the least hard one (TensorFlow Addons' ``triplet_semihard_loss`` rule), so the
    collapse-prone hardest negatives are never chosen. Anchors without a negative are skipped.
    O(B^3) float memory (pairs x candidates); ties go to the lowest index.
    """

    name = "semi-hard"

    def mine(self, distances: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
        positive, negative = pair_masks(labels)
        positive &= negative.any(dim=1, keepdim=True)
        anchors, positives = positive.nonzero(as_tuple=True)
        anchor_rows = distances[anchors]  # (T, B)
        negative_rows = negative[anchors]
        d_ap = distances[anchors, positives][:, None]
        semi_hard = negative_rows & (anchor_rows > d_ap)
        closest_semi_hard = anchor_rows.masked_fill(~semi_hard, float("inf")).argmin(dim=1)
        farthest = anchor_rows.masked_fill(~negative_rows, float("-inf")).argmax(dim=1)
        negatives = torch.where(semi_hard.any(dim=1), closest_semi_hard, farthest)
        return anchors, positives, negatives


_MINERS: dict[str, type[BaseMiner]] = {
    miner.name: miner for miner in (BatchAllMiner, BatchHardMiner, SemiHardMiner)
}


def build_miner(name: str) -> BaseMiner:
    """The miner registered as ``name`` (see ``hashcli.train.names.MINER_NAMES``)."""
    try:
        return _MINERS[name]()
    except KeyError:
        raise HashretError(f"unknown miner {name!r}; choose one of: {', '.join(_MINERS)}") from None
