"""Metric losses on the network's tanh outputs (pytorch-metric-learning style).

A loss is built from small pieces: a distance (:mod:`hashcli.train.distances`) and a miner
(:mod:`hashcli.train.miners`). :class:`MetricLoss` checks shapes once; subclasses compute.

The triplet loss of a mined triplet ``(a, p, n)`` is ``max(0, d(a, p) - d(a, n) + margin)``
with ``d`` the squared L2 distance of the outputs ``u`` (on +-1 codes, 4 x Hamming, so the
default margin ``bits / 4`` asks for a gap of ``bits / 16`` bits). Reduction ``"all"`` averages
over all mined triplets, zero ones included (the original project); ``"nonzero"`` over those
with a positive loss. The optional quantisation term pulling outputs toward +-1 is

    quantization_weight * mean over the batch and bits of (|u| - 1)^2

over every output of the batch (not only mined ones). A batch without any positive pair or
negative (or, with ``"nonzero"``, without any active triplet) gives a triplet term of exactly 0
that is still connected to the outputs, so ``backward()`` works and nothing is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashcli.errors import HashretError
from hashcli.train.distances import BaseDistance, SquaredL2Distance
from hashcli.train.miners import BaseMiner, BatchAllMiner, build_miner
from hashcli.train.names import REDUCTION_NAMES


@dataclass
class LossTerms:
    """One evaluation of a loss; tensors stay on the device (no host sync until read)."""

    loss: torch.Tensor  #: total, scalar
    triplet_loss: torch.Tensor  #: scalar
    quantization_loss: torch.Tensor  #: scalar, already multiplied by its weight
    num_triplets: int  #: mined triplets
    num_active: torch.Tensor  #: mined triplets with a positive loss, int64 scalar


class MetricLoss(nn.Module):
    """Base class: ``loss(embeddings (B, D) float, labels (B,) int) -> scalar``."""

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_terms(embeddings, labels).loss

    def loss_terms(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        """All terms of the loss, after checking ``embeddings`` and ``labels``."""
        if embeddings.ndim != 2 or not embeddings.is_floating_point():
            raise ValueError(
                f"embeddings must be a (batch, bits) float tensor, got {tuple(embeddings.shape)} "
                f"{embeddings.dtype}"
            )
        labels = torch.as_tensor(labels, device=embeddings.device)
        if labels.shape != embeddings.shape[:1] or labels.is_floating_point():
            raise ValueError(
                f"labels must be a ({embeddings.shape[0]},) integer tensor, got "
                f"{tuple(labels.shape)} {labels.dtype}"
            )
        return self.compute(embeddings, labels)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        raise NotImplementedError


class TripletMarginLoss(MetricLoss):
    """Triplet margin loss with online mining (see the module docstring for the formulas).

    Memory: O(B^2) for the distances, plus the miner's (batch-all and semi-hard O(B^3),
    batch-hard O(B^2)); fine for batches up to a few hundred.
    """

    def __init__(
        self,
        margin: float,
        *,
        miner: BaseMiner | None = None,
        distance: BaseDistance | None = None,
        reduction: str = "all",
        quantization_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if margin < 0:
            raise HashretError(f"the margin must be >= 0, got {margin}")
        if reduction not in REDUCTION_NAMES:
            raise HashretError(
                f"unknown reduction {reduction!r}; choose one of: {', '.join(REDUCTION_NAMES)}"
            )
        if quantization_weight < 0:
            raise HashretError(f"the quantisation weight must be >= 0, got {quantization_weight}")
        self.margin = float(margin)
        self.miner = miner if miner is not None else BatchAllMiner()
        self.distance = distance if distance is not None else SquaredL2Distance()
        self.reduction = reduction
        self.quantization_weight = float(quantization_weight)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        distances = self.distance(embeddings)
        anchors, positives, negatives = self.miner(distances, labels, self.margin)
        per_triplet = (
            distances[anchors, positives] - distances[anchors, negatives] + self.margin
        ).clamp_min(0)
        active = per_triplet > 0
        # A sum times 0 is an exact zero that keeps the graph, so backward() works on a batch
        # without triplets.
        zero = distances.sum() * 0
        if self.reduction == "all":
            count = per_triplet.new_tensor(float(per_triplet.numel()))
        else:
            count = active.sum().to(per_triplet.dtype)
        triplet_loss = zero + per_triplet.sum() / count.clamp_min(1)

        if self.quantization_weight:
            quantization = self.quantization_weight * (embeddings.float().abs() - 1).pow(2).mean()
        else:
            quantization = zero
        return LossTerms(
            loss=triplet_loss + quantization,
            triplet_loss=triplet_loss,
            quantization_loss=quantization,
            num_triplets=int(anchors.numel()),
            num_active=active.sum(),
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin:g}, miner={self.miner!r}, reduction={self.reduction!r}, "
            f"quantization_weight={self.quantization_weight:g}"
        )


def default_margin(bits: int) -> float:
    """The default margin, ``bits / 4`` (8 at 32 bits, the original project's)."""
    return bits / 4


def build_loss(
    *,
    bits: int,
    miner: str = "batch-all",
    margin: float | None = None,
    reduction: str = "all",
    quantization_weight: float = 0.0,
) -> MetricLoss:
    """A triplet loss with a miner by name (``MINER_NAMES``); training uses it through the
    ``triplet`` method (:mod:`hashcli.train.methods.triplet`).

    ``margin`` defaults to :func:`default_margin` of ``bits``.
    """
    return TripletMarginLoss(
        default_margin(bits) if margin is None else margin,
        miner=build_miner(miner),
        distance=SquaredL2Distance(),
        reduction=reduction,
        quantization_weight=quantization_weight,
    )
