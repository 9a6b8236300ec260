"""Pairwise distances between embeddings (pytorch-metric-learning style: losses take one)."""

from __future__ import annotations

import torch


class BaseDistance:
    """``distance(x)``: embeddings (B, D) float -> pairwise distances (B, B) float32."""

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        # Distances in float32 even under bf16/fp16 autocast: mining compares close values.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.pairwise(embeddings.float())

    def pairwise(self, embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SquaredL2Distance(BaseDistance):
    """Squared Euclidean distance, the original project's: ``||x_i - x_j||^2``.

    On codes of +-1 it is 4 x the Hamming distance. Computed as ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j``
    clamped at 0: O(B^2 D) time, O(B^2) memory, and (no square root) a finite gradient
    everywhere, including at zero distance.
    """

    def pairwise(self, embeddings: torch.Tensor) -> torch.Tensor:
        squared_norms = (embeddings * embeddings).sum(dim=1)
        gram = embeddings @ embeddings.T
        return (squared_norms[:, None] + squared_norms[None, :] - 2 * gram).clamp_min(0)
