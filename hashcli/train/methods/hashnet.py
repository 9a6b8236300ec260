"""HashNet, deep learning to hash by continuation (Cao et al., ICCV 2017).

The outputs go through ``u = tanh(beta * x)`` with ``beta`` growing with the training step
(continuation: the tanh tends to the sign). Over the ordered pairs ``i != j`` of the batch,
with ``theta = alpha * u_i . u_j`` and ``s = 1`` for a similar pair, the weighted maximum
likelihood

    loss = sum over pairs of w_ij * [ log(1 + exp(theta)) - s * theta ] / S

with ``S`` pairs in all, ``S1`` similar and ``S0`` dissimilar, ``w = S / S1`` on similar pairs
and ``S / S0`` on dissimilar ones: the mean over similar pairs plus the mean over dissimilar
pairs (a group that is absent adds 0, so a batch without positive pairs is not NaN). This is
swuxyj/DeepHash-pytorch ``HashNet.py`` ``pairwise_loss``, which takes it from
thuml/HashNet issue 17; pairs are taken inside the batch only (no memory bank).

The continuation (thuml/HashNet ``pytorch/src/network.py``): the scale is recomputed every
``step_size`` training iterations as ``init_scale * (1 + gamma * iteration) ** power`` and held
in between; see :func:`hashnet_beta`. The trainer calls ``loss.set_step(step)`` before each
training step.

Defaults: alpha = 10 / bits (thuml/HashNet ``sigmoid_param = 10 / hash_bit``, DeepHash-pytorch
``config["alpha"] = 10. / bit``); step_size = 200, gamma = 0.005, power = 0.5, init_scale = 1
(thuml/HashNet ``network.py``). The reference's quantisation loss has weight 0 and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hashcli.errors import HashretError
from hashcli.train.methods.base import (
    HashingLoss,
    at_least,
    off_diagonal,
    pair_mean,
    similarity,
)
from hashcli.train.methods.registry import register_method


@dataclass(frozen=True)
class HashNetDefaults:
    #: alpha = this / bits: thuml/HashNet ``sigmoid_param = 10./hash_bit``.
    alpha_times_bits: float = at_least(10.0, 0, strictly=True)
    #: thuml/HashNet network.py ``self.step_size = 200``.
    step_size: int = at_least(200, 1)
    #: thuml/HashNet network.py ``self.gamma = 0.005``.
    gamma: float = at_least(0.005, 0)
    #: thuml/HashNet network.py ``self.power = 0.5``.
    power: float = 0.5
    #: thuml/HashNet network.py ``self.init_scale = 1.0``.
    init_scale: float = at_least(1.0, 0, strictly=True)
    #: alpha itself; None: ``alpha_times_bits / bits``.
    alpha: float | None = at_least(None, 0, strictly=True)


DEFAULTS = HashNetDefaults()


def hashnet_beta(
    step: int,
    *,
    step_size: int = DEFAULTS.step_size,
    gamma: float = DEFAULTS.gamma,
    power: float = DEFAULTS.power,
    init_scale: float = DEFAULTS.init_scale,
) -> float:
    """The tanh scale ``beta`` at 0-based training step ``step``.

    The reference counts iterations from 1 (``iter_num`` is incremented before the forward
    pass) and sets ``scale = init_scale * (1 + gamma * iter_num) ** power`` whenever
    ``iter_num % step_size == 0``, holding it in between. So with ``iteration = step + 1``,
    ``beta = init_scale * (1 + gamma * last) ** power`` where ``last`` is the largest multiple
    of ``step_size`` not above ``iteration`` (``beta = init_scale`` before the first update).
    With the defaults: 1 for steps 0..198, sqrt(2) for 199..398, sqrt(3) from 399.
    """
    if step < 0 or step_size < 1:
        raise HashretError(f"step must be >= 0 and step_size >= 1, got {step}, {step_size}")
    iteration = step + 1
    last = iteration - iteration % step_size
    return init_scale * (1 + gamma * last) ** power


@register_method
class HashNetLoss(HashingLoss):
    """HashNet's weighted pairwise loss with its tanh continuation (see the module docstring)."""

    name = "hashnet"
    multi_label = True
    needs_step = True
    settings_type = HashNetDefaults
    derived_settings = ("alpha",)
    activation = "tanh(beta x), beta from hashnet_beta(step)"

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.step = 0

    @property
    def alpha(self) -> float:
        """The sigmoid's scale: ``settings.alpha``, else ``alpha_times_bits / bits``."""
        if self.settings.alpha is not None:
            return float(self.settings.alpha)
        return self.settings.alpha_times_bits / self.bits

    def set_step(self, step: int) -> None:
        """Set the 0-based training step that fixes ``beta`` (call before each step)."""
        if step < 0:
            raise HashretError(f"step must be >= 0, got {step}")
        self.step = int(step)

    @property
    def beta(self) -> float:
        """The tanh scale at the current step (:func:`hashnet_beta`)."""
        settings = self.settings
        return hashnet_beta(
            self.step,
            step_size=settings.step_size,
            gamma=settings.gamma,
            power=settings.power,
            init_scale=settings.init_scale,
        )

    def compute(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        u = torch.tanh(self.beta * outputs)
        similar = similarity(labels)
        theta = self.alpha * (u @ u.T)
        per_pair = F.softplus(theta) - similar.to(u.dtype) * theta
        # w = S / S1 (S / S0) then / S: the mean over each group, summed.
        return pair_mean(per_pair, similar, off_diagonal(len(u), u.device), balanced=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, step={self.step}, beta={self.beta:g}"
