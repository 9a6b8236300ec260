"""The triplet loss with online mining: the original 2019 project's method.

With ``u = tanh(outputs)``, the triplet margin loss of :class:`hashcli.train.losses.
TripletMarginLoss` over the triplets a miner finds in the P x K batch (``batch-all``, the
original, ``batch-hard`` or ``semi-hard``; :mod:`hashcli.train.miners`):

    loss = mean over mined triplets of max(0, |u_a - u_p|^2 - |u_a - u_n|^2 + margin)
           + quantization_weight * mean over the batch and bits of (|u| - 1)^2

Defaults (the original project): margin = bits / 4 (8 at 32 bits), batch-all mining, the mean
over all mined triplets (``reduction="all"``; ``"nonzero"`` averages over the active ones),
no quantisation term. Single-label only: triplets need a class per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from hashcli.errors import HashretError
from hashcli.train.losses import TripletMarginLoss, default_margin
from hashcli.train.methods.base import HashingLoss, at_least
from hashcli.train.methods.registry import register_method
from hashcli.train.miners import build_miner
from hashcli.train.names import REDUCTION_NAMES


@dataclass(frozen=True)
class TripletDefaults:
    #: The original project's mining: every valid triplet of the batch.
    miner: str = "batch-all"
    #: None: ``bits / 4`` (:func:`hashcli.train.losses.default_margin`), the original's.
    margin: float | None = at_least(None, 0)
    #: The original averages over all mined triplets, zero ones included.
    reduction: str = "all"
    #: The original has no quantisation term.
    quantization_weight: float = at_least(0.0, 0)


DEFAULTS = TripletDefaults()


@register_method
class TripletLoss(HashingLoss):
    """The mined triplet loss on ``tanh(outputs)`` (see the module docstring)."""

    name = "triplet"
    activation = "tanh"
    settings_type = TripletDefaults
    derived_settings = ("margin",)
    shared_options = MappingProxyType(
        {"margin": "margin", "quantization": "quantization_weight", "miner": "miner"}
    )

    @classmethod
    def check_settings(cls, settings: TripletDefaults) -> TripletDefaults:
        build_miner(settings.miner)  # an unknown miner: HashretError listing the miners
        if settings.reduction not in REDUCTION_NAMES:
            raise HashretError(
                f"the triplet method's reduction must be one of: {', '.join(REDUCTION_NAMES)}; "
                f"got {settings.reduction!r}"
            )
        return settings

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        settings = self.settings
        self.triplet = TripletMarginLoss(
            default_margin(self.bits) if settings.margin is None else settings.margin,
            miner=build_miner(settings.miner),
            reduction=settings.reduction,
            quantization_weight=settings.quantization_weight,
        )

    @property
    def margin(self) -> float:
        """The margin in use (``bits / 4`` unless given)."""
        return self.triplet.margin

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.triplet(torch.tanh(outputs), labels)
