"""OrthoHash, one loss to rule them all (Hoe et al., NeurIPS 2021).

The head's linear output goes through a batch norm (:meth:`OrthoHashLoss.output_layer`, part of
the model: the code is the sign of its output) to give ``v``. With ``C`` the fixed +-1
codebook (one code per class), ``logits_k = cos(v, C_k)`` and

    loss = cross_entropy(scale * (logits - margin * onehot(y)), y)

Multi-label (the reference's default ``multiclass_loss="label_smoothing"``): the margin is
subtracted at every label of the item, and the target distribution spreads evenly over its
labels: ``-sum_k (y_k / |y|) log_softmax(scale * (logits - margin * y))_k``, mean over items.

Optional quantisation term (off by default): ``quantization_weight * mean(1 - cos(v,
sign(v)))`` with the sign detached (the reference's ``quan_type="cs"``).

Defaults (kamwoh/orthohash ``functions/loss/orthohash.py``, ``OrthoHashLoss.__init__``):
scale = 8 (``s=8``), margin = 0.2 (``m=0.2``, cosine margin ``m_type="cos"``),
quantization_weight = 0 (``quan=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F

from hashcli.train.methods.base import HashingLoss, at_least, plus_minus_sign
from hashcli.train.methods.registry import register_method


@dataclass(frozen=True)
class OrthoHashDefaults:
    #: kamwoh/orthohash orthohash.py ``s=8``.
    scale: float = at_least(8.0, 0, strictly=True)
    #: kamwoh/orthohash orthohash.py ``m=0.2``.
    margin: float = at_least(0.2, 0)
    #: kamwoh/orthohash orthohash.py ``quan=0`` (the term is off).
    quantization_weight: float = at_least(0.0, 0)


DEFAULTS = OrthoHashDefaults()


@register_method
class OrthoHashLoss(HashingLoss):
    """OrthoHash's loss (see the module docstring); ``codebook`` (num_classes, bits) +-1."""

    name = "orthohash"
    multi_label = True
    needs_codebook = True
    activation = "none (the batch norm is the model's output layer)"
    #: The reference's ``BatchNorm1d(nbit)`` after the linear head.
    output_layer = "batchnorm"
    #: The reference draws Bernoulli(0.5) codes (``codebook_method="B"``).
    codebook_balanced = False
    settings_type = OrthoHashDefaults
    shared_options = MappingProxyType({"margin": "margin", "quantization": "quantization_weight"})

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scale, margin = self.settings.scale, self.settings.margin
        cosines = F.normalize(outputs, dim=1) @ F.normalize(self.codebook, dim=1).T
        if labels.ndim == 2:
            targets = labels.to(cosines.dtype)
            log_probs = F.log_softmax(scale * (cosines - margin * targets), dim=1)
            # Rows without any label spread nothing (their sum is clamped to 1).
            weights = targets / targets.sum(dim=1, keepdim=True).clamp_min(1)
            loss = -(weights * log_probs).sum(dim=1).mean()
        else:
            onehot = F.one_hot(labels, self.num_classes).to(cosines.dtype)
            loss = F.cross_entropy(scale * (cosines - margin * onehot), labels)
        if self.settings.quantization_weight:
            signs = plus_minus_sign(outputs.detach())
            quantization = (1 - F.cosine_similarity(outputs, signs, dim=1)).mean()
            loss = loss + self.settings.quantization_weight * quantization
        return loss
