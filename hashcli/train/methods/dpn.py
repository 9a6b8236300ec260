"""DPN, Deep Polarized Network (Fan et al., IJCAI 2020).

With ``v`` the outputs and ``t`` the +-1 target code of the item's class (a codebook row),

    loss = mean over items of sum over bits of relu(margin - v_k * t_k)
           + regularization_weight * mean(v^2)

Multi-label: the polarisation term sums over the item's labels (each label's code in turn),
then averages over items, as the reference does.

Defaults (CISiPLab/cisip-FIRe ``functions/loss/dpn.py``, ``DPNLoss.__init__``): margin = 1
(``margin=1.``), regularization_weight = 0.1 (``reg=0.1``); the reference's optional
cross-entropy term has weight 0 (``ce=0``) and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch

from hashcli.train.methods.base import HashingLoss, at_least
from hashcli.train.methods.registry import register_method


@dataclass(frozen=True)
class DPNDefaults:
    #: cisip-FIRe dpn.py ``margin=1.``.
    margin: float = at_least(1.0, 0)
    #: cisip-FIRe dpn.py ``reg=0.1``.
    regularization_weight: float = at_least(0.1, 0)


DEFAULTS = DPNDefaults()


@register_method
class DPNLoss(HashingLoss):
    """DPN's loss (see the module docstring); ``codebook`` (num_classes, bits) +-1."""

    name = "dpn"
    multi_label = True
    needs_codebook = True
    settings_type = DPNDefaults
    shared_options = MappingProxyType({"margin": "margin"})

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == 2:
            # (B, C): each item's polarisation loss against every class code, kept for its labels.
            per_class = torch.relu(
                self.settings.margin - outputs[:, None, :] * self.codebook[None]
            ).sum(2)
            polarization = (per_class * labels.to(per_class.dtype)).sum(1).mean()
        else:
            polarization = (
                torch.relu(self.settings.margin - outputs * self.codebook[labels]).sum(1).mean()
            )
        return polarization + self.settings.regularization_weight * outputs.pow(2).mean()
