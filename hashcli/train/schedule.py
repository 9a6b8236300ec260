"""Optimiser and learning-rate schedules.

:func:`build_optimizer` makes an Adam with two parameter groups, ``backbone`` (at
``lr * backbone_lr_mult``) and ``head``. :func:`build_scheduler` returns a
``torch.optim.lr_scheduler.LambdaLR``: each group's lr is its own base lr times a factor of the
update number ``n`` (call ``scheduler.step()`` once after every ``optimizer.step()``; update
``n`` uses the factor of ``n``, starting at 0):

- ``inverse-sqrt`` (the original, XLM's ``AdamInverseSqrtWithWarmup``):
  ``s + (1 - s) n / W`` while ``n < W``, then ``sqrt(W / n)``. With lr 1e-3, W 4000 and the
  default start factor s = 1e-4, the lr rises from 1e-7 to 1e-3 over 4,000 updates, then
  is ``1e-3 * sqrt(4000 / n)``. (W = 0: ``1 / sqrt(max(n, 1))``.)
- ``cosine``: the same warmup, then ``m + (1 - m) (1 + cos(pi t)) / 2`` with
  ``t = min(1, (n - W) / (T - W))``, T the total updates and m ``min_lr_factor``; it stays at
  m after T.
- ``constant``: the same warmup, then 1.

Why LambdaLR with small callable classes rather than ready-made schedulers: torch has no
inverse-square-root schedule; ``SequentialLR(LinearLR, CosineAnnealingLR)`` gives the same
cosine values up to T but ``CosineAnnealingLR`` is periodic (the lr climbs again if a run goes
past T, e.g. resumed with more epochs) and its ``eta_min`` is one absolute lr for every group,
not a fraction of each group's own lr. Callable classes (not lambdas) keep the schedule in
``scheduler.state_dict()`` as plain numbers, so checkpoints stay weights_only-loadable.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from hashcli.errors import HashretError
from hashcli.train.names import SCHEDULE_NAMES

#: Original warmup start: 1e-7 at a peak lr of 1e-3.
DEFAULT_WARMUP_START_FACTOR = 1e-4


def build_optimizer(
    model: nn.Module,
    lr: float = 1e-3,
    *,
    backbone_lr_mult: float = 1.0,
    loss: nn.Module | None = None,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """Adam over the trainable parameters of ``model`` in groups ``backbone`` and ``head``.

    Parameters named ``backbone.*`` get ``lr * backbone_lr_mult`` (1.0, the original's single
    lr, by default); all others (the hash head) get ``lr``, as do the trainable parameters of
    ``loss`` (a method's own classifier, GreedyHash's), which must be trained with the model.
    Empty groups are left out; each group carries its ``name``. Defaults are the original's:
    lr 1e-3, betas (0.9, 0.98).
    """
    if lr <= 0 or backbone_lr_mult < 0:
        raise HashretError(
            f"need lr > 0 and backbone_lr_mult >= 0, got {lr} and {backbone_lr_mult}"
        )
    backbone, head = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (backbone if name.startswith("backbone.") else head).append(parameter)
    if loss is not None:
        head += [parameter for parameter in loss.parameters() if parameter.requires_grad]
    groups = [
        {"name": "backbone", "params": backbone, "lr": lr * backbone_lr_mult},
        {"name": "head", "params": head, "lr": lr},
    ]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise HashretError("the model has no trainable parameters")
    return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class _Warmup:
    """Linear warmup from ``start_factor`` to 1 over ``warmup_steps`` updates."""

    def __init__(self, warmup_steps: int, start_factor: float) -> None:
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor

    def warmup(self, step: int) -> float:
        return self.start_factor + (1 - self.start_factor) * step / self.warmup_steps

    def __call__(self, step: int) -> float:
        return self.warmup(step) if step < self.warmup_steps else self.after(step)

    def after(self, step: int) -> float:
        return 1.0


class ConstantWithWarmup(_Warmup):
    """Warmup, then the base lr."""


class InverseSqrtWithWarmup(_Warmup):
    """Warmup, then ``sqrt(W / n)`` (XLM's AdamInverseSqrtWithWarmup)."""

    def after(self, step: int) -> float:
        return math.sqrt(max(self.warmup_steps, 1) / max(step, 1))


class CosineWithWarmup(_Warmup):
    """Warmup, then a half cosine to ``min_factor`` at ``total_steps``, flat after."""

    def __init__(
        self, warmup_steps: int, total_steps: int, start_factor: float, min_factor: float
    ) -> None:
        super().__init__(warmup_steps, start_factor)
        self.total_steps = total_steps
        self.min_factor = min_factor

    def after(self, step: int) -> float:
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "inverse-sqrt",
    *,
    warmup_steps: int = 4000,
    total_steps: int | None = None,
    warmup_start_factor: float = DEFAULT_WARMUP_START_FACTOR,
    min_lr_factor: float = 0.0,
) -> LambdaLR:
    """A LambdaLR for schedule ``name`` (``SCHEDULE_NAMES``; formulas in the module docstring).

    Steps count optimizer updates. ``total_steps`` is needed by ``cosine`` only and must
    exceed ``warmup_steps``. ``warmup_start_factor`` in (0, 1]: the first update's lr as a
    fraction of each group's base lr.
    """
    if name not in SCHEDULE_NAMES:
        raise HashretError(
            f"unknown lr schedule {name!r}; choose one of: {', '.join(SCHEDULE_NAMES)}"
        )
    if warmup_steps < 0:
        raise HashretError(f"warmup steps must be >= 0, got {warmup_steps}")
    if not 0 < warmup_start_factor <= 1:
        raise HashretError(f"the warmup start factor must be in (0, 1], got {warmup_start_factor}")
    if name == "inverse-sqrt":
        factor: _Warmup = InverseSqrtWithWarmup(warmup_steps, warmup_start_factor)
    elif name == "constant":
        factor = ConstantWithWarmup(warmup_steps, warmup_start_factor)
    else:
        if total_steps is None or total_steps <= warmup_steps:
            raise HashretError(
                f"the cosine schedule needs total steps > warmup steps, got {total_steps} "
                f"and {warmup_steps}"
            )
        if not 0 <= min_lr_factor <= 1:
            raise HashretError(f"the minimum lr factor must be in [0, 1], got {min_lr_factor}")
        factor = CosineWithWarmup(warmup_steps, total_steps, warmup_start_factor, min_lr_factor)
    return LambdaLR(optimizer, factor)
