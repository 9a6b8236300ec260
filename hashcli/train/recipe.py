"""The figures a run trains with, resolved once from its settings and its data (torch-free).

:func:`resolve_recipe` turns a :class:`~hashcli.train.config.TrainConfig`, the labels of the
train split, the dataset's image size and the number of processes into a :class:`Recipe`:

- epochs: ``--epochs``, else the dataset's default (:meth:`TrainConfig.default_epochs`);
- image size: ``--image-size``, else the dataset's;
- P x K batches: K = max(2, ``per_class``) images per class and P = max(2, ``batch_size`` // K)
  classes, at most the classes present (an error below 2); multi-label data: plain shuffled
  batches of ``batch_size`` images (recorded as P = the batch size, K = 1);
- steps per epoch: :func:`batches_per_epoch`, the batches :class:`~hashcli.train.sampler.PKSampler`
  hands each process;
- warmup steps: ``--warmup-steps``, else 4000 for ``inverse-sqrt`` (the original's) and 1/20 of
  the run (at least 1) otherwise; a cosine warmup ends before the last step.

The run folder records these as ``config.json["resolved"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hashcli.errors import HashretError
from hashcli.train.config import TrainConfig

#: Warmup of the ``inverse-sqrt`` schedule when none is given (the original project's).
INVERSE_SQRT_WARMUP = 4000


@dataclass(frozen=True)
class Recipe:
    """Resolved training figures; steps and batches are per process."""

    epochs: int
    image_size: int
    p: int  # classes per batch
    k: int  # images per class
    world_size: int  # processes
    steps_per_epoch: int
    warmup_steps: int

    @property
    def batch_size_per_process(self) -> int:
        return self.p * self.k

    @property
    def effective_batch_size(self) -> int:
        """Images per optimiser step over all processes."""
        return self.p * self.k * self.world_size

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def batches_per_epoch(n_images: int, p: int, k: int, world_size: int = 1) -> int:
    """Batches of P x K images each process takes per epoch: the processes together see
    about every image once (at least one batch)."""
    return max(1, n_images // (p * k) // world_size)


def resolve_recipe(
    config: TrainConfig,
    labels: Sequence[int],
    *,
    default_image_size: int,
    world_size: int = 1,
    multi_label: bool = False,
) -> Recipe:
    """The :class:`Recipe` of ``config`` on a train split with these ``labels`` (one per
    image); HashretError when the split cannot make P x K batches. ``multi_label``: plain
    shuffled batches of ``batch_size`` instead (P = the batch size, K = 1)."""
    if len(labels) < 2:
        raise HashretError(f"the {config.dataset} train split has {len(labels)} images")
    if multi_label:
        k, p = 1, min(config.batch_size, len(labels))
    else:
        k = max(2, config.per_class)
        p = min(max(2, config.batch_size // k), len(set(labels)))
    if p < 2:
        raise HashretError("training needs at least 2 classes in the train split")
    epochs = config.default_epochs()
    steps_per_epoch = batches_per_epoch(len(labels), p, k, world_size)
    total_steps = epochs * steps_per_epoch
    if config.warmup_steps is not None:
        warmup = config.warmup_steps
    elif config.schedule == "inverse-sqrt":
        warmup = INVERSE_SQRT_WARMUP
    else:
        warmup = max(1, total_steps // 20)
    if config.schedule == "cosine" and warmup >= total_steps:
        warmup = max(0, total_steps - 1)  # the cosine divides by total - warmup
    return Recipe(
        epochs=epochs,
        image_size=config.image_size or default_image_size,
        p=p,
        k=k,
        world_size=world_size,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=warmup,
    )


__all__ = ["INVERSE_SQRT_WARMUP", "Recipe", "batches_per_epoch", "resolve_recipe"]
