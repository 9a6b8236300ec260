"""The step loop of a training run, handed its parts, with hooks for the rest.

:class:`Trainer` gets a built model, the callable the steps run (the model itself, or wrapped
in DistributedDataParallel and/or compiled), the optimiser and its scheduler, the loss, the
P x K sampler and the loader over it, and runs epochs of steps:

- a batch of fewer than 2 images (its bad images skipped) takes no optimiser step; under
  torchrun with ``skip_bad_images``, every process skips the step if one must;
- a non-finite loss stops the run with HashretError;
- the loss and the images of every process are summed into the epoch's figures;
- the scheduler steps after every batch, used or not;
- ``max_steps`` stops the run after that step, in the middle of an epoch if need be;
- after an epoch (one cut short included) every process takes rank 0's module buffers.

Everything else happens in hooks, as in pytorch-metric-learning's trainers
(``end_of_iteration_hook``, ``end_of_epoch_hook``): :class:`ValidationHook` scores the model on
the validation split and keeps the best, :class:`CheckpointHook` saves ``last.pt`` after every
epoch and on an interrupt. Ctrl-C and SIGTERM raise KeyboardInterrupt: the hooks'
``interrupt_hook`` runs, then the KeyboardInterrupt goes on to the caller.

The trainer owns a :class:`TrainState`: steps taken, the epoch and the position in it, the best
validation mAP and the skipped images; what a checkpoint records to continue from.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hashcli.errors import HashretError
from hashcli.model.checkpoint import (
    capture_rng_state,
    model_state,
    restore_rng_state,
    save_checkpoint,
)
from hashcli.runtime.device import autocast
from hashcli.runtime.distributed import Distributed
from hashcli.train.observer import TrainObserver

if TYPE_CHECKING:
    from hashcli.data.records import ImageRecord
    from hashcli.data.torch_data import ImageBatch
    from hashcli.model.inference import EncodedImages
    from hashcli.train.sampler import PKSampler


@dataclass
class TrainState:
    """Where training stands.

    ``epoch`` is the epoch being (or last) trained, 0-based, and ``position`` the batches of it
    taken: all of them once it is over, when :meth:`resume_point` names the next epoch.
    ``best_epoch`` counts from 1, as metrics.jsonl does.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    best_val_map: float | None = None
    best_epoch: int | None = None
    skipped_images: list[str] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> TrainState:
        """The state a checkpoint written by :class:`CheckpointHook` continues from."""
        return cls(
            step=int(checkpoint["step"]),
            epoch=int(checkpoint["epoch"]),
            position=int((checkpoint.get("sampler") or {}).get("position", 0)),
            best_val_map=checkpoint.get("best_val_map"),
            best_epoch=checkpoint.get("best_epoch"),
            skipped_images=list(checkpoint.get("skipped_images", [])),
        )

    def resume_point(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(epoch, position)`` to continue from: after an epoch's last batch, the next one."""
        if self.position >= steps_per_epoch:
            return self.epoch + 1, 0
        return self.epoch, self.position

    def note_skipped(self, paths: Iterable[str]) -> None:
        """Add unreadable images (each once, in the order first seen)."""
        for path in paths:
            if path not in self.skipped_images:
                self.skipped_images.append(path)


@dataclass(frozen=True)
class EpochStats:
    """An epoch's figures, summed over the processes."""

    epoch: int  # from 1
    complete: bool  # False when max_steps stopped it before its last batch
    loss: float  # mean over its optimiser steps
    lr: float  # of the last parameter group (the head), after the epoch
    images_per_s: float


class TrainHook:
    """What a :class:`Trainer` calls around its steps; each method does nothing by default."""

    def start_of_iteration_hook(self, trainer: Trainer) -> None:
        """Before every batch; ``trainer.state.step`` is the 0-based step about to be taken."""

    def end_of_iteration_hook(self, trainer: Trainer, stats: dict[str, float]) -> None:
        """After every batch; ``stats`` as the observer's ``step`` gets them."""

    def end_of_epoch_hook(self, trainer: Trainer, stats: EpochStats) -> None:
        """After every epoch, one cut short by ``max_steps`` included; every process calls it."""

    def interrupt_hook(self, trainer: Trainer) -> None:
        """On Ctrl-C or SIGTERM, before the KeyboardInterrupt goes on. No collectives here:
        the other processes may be gone."""


class Trainer:
    """Trains ``model`` for ``epochs`` of ``steps_per_epoch`` steps (see the module docstring).

    ``forward`` is what the steps call (``model``, or it wrapped in DDP and/or compiled);
    checkpoints and validation use ``model``. ``loss_fn(outputs, labels)`` is a method's loss
    (:mod:`hashcli.train.methods`); when it is a module with trainable parameters of its own,
    the optimiser must hold them too, and under torchrun their gradients are averaged over the
    processes after every backward (DDP does the model's). ``loader`` yields
    :class:`~hashcli.data.torch_data.ImageBatch` es in the order of ``sampler``, the P x K
    batch sampler whose ``set_epoch`` starts each epoch. ``dist``: the processes (None: this
    one alone, on ``device``). ``observer`` gets the progress (give the default, silent one
    to every process but rank 0). ``state``: where to start (default: the beginning).
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        forward: Callable[[torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        loader: Iterable[ImageBatch],
        sampler: PKSampler,
        device: torch.device,
        epochs: int,
        steps_per_epoch: int,
        dist: Distributed | None = None,
        max_steps: int | None = None,
        skip_bad_images: bool = False,
        hooks: Sequence[TrainHook] = (),
        observer: TrainObserver | None = None,
        state: TrainState | None = None,
    ) -> None:
        self.model = model
        self.forward = forward
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.loader = loader
        self.sampler = sampler
        self.device = device
        self.dist = dist if dist is not None else Distributed(device=device)
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.max_steps = max_steps
        self.skip_bad_images = skip_bad_images
        self.hooks = list(hooks)
        self.observer = observer or TrainObserver()
        self.state = state or TrainState()
        self.stopped = False  # max_steps reached
        # Trainable parameters of the loss itself (GreedyHash's classifier), if any.
        self._loss_parameters = (
            [p for p in loss_fn.parameters() if p.requires_grad]
            if isinstance(loss_fn, torch.nn.Module)
            else []
        )

    @property
    def lr(self) -> float:
        """The learning rate of the last parameter group (the head)."""
        return self.optimizer.param_groups[-1]["lr"]

    def train(self) -> bool:
        """Train from :attr:`state` on; True when every epoch is done, False when ``max_steps``
        stopped it. Ctrl-C or SIGTERM: the interrupt hooks, then KeyboardInterrupt."""
        with _Interrupt():
            try:
                for epoch in range(self.state.epoch, self.epochs):
                    stats = self._train_epoch(epoch)
                    for hook in self.hooks:
                        hook.end_of_epoch_hook(self, stats)
                    if self.stopped:
                        return False
            except KeyboardInterrupt:
                for hook in self.hooks:
                    hook.interrupt_hook(self)
                raise
        return True

    def _train_epoch(self, epoch: int) -> EpochStats:
        state, dist = self.state, self.dist
        self.sampler.set_epoch(epoch)
        state.epoch = epoch
        state.position = self.steps_per_epoch - len(self.sampler)  # a resumed epoch: > 0
        self.observer.epoch_start(epoch + 1, self.epochs, self.steps_per_epoch, state.position)
        self.model.train()
        loss_sum, loss_count, images = 0.0, 0, 0
        start = time.perf_counter()
        for batch in self._batches():
            for hook in self.hooks:
                hook.start_of_iteration_hook(self)
            usable = len(batch.labels) >= 2
            if dist.is_distributed and self.skip_bad_images:
                # DDP needs every rank in every backward: all skip a step if one must.
                usable = dist.all_reduce_max([0.0 if usable else 1.0])[0] == 0.0
            step_loss, step_images = self._optimise(batch) if usable else (0.0, 0)
            if dist.is_distributed:  # loss and images of every rank
                step_loss, counted, step_images = dist.all_reduce_sum(
                    [step_loss, float(usable), step_images]
                )
                loss_sum += step_loss
                loss_count += int(counted)
            elif usable:
                loss_sum += step_loss
                loss_count += 1
            images += int(step_images)
            state.note_skipped(item.path for item in batch.bad)
            self.scheduler.step()
            state.step += 1
            state.position += 1
            stats = {
                "epoch": epoch + 1,
                "step": state.step,
                "loss": loss_sum / max(1, loss_count),
                "lr": self.lr,
                "images_per_s": _rate(images, time.perf_counter() - start),
            }
            self.observer.step(stats)
            for hook in self.hooks:
                hook.end_of_iteration_hook(self, stats)
            if self.max_steps is not None and state.step >= self.max_steps:
                self.stopped = True
                break
        images_per_s = _rate(images, time.perf_counter() - start)
        # BatchNorm statistics of rank 0 everywhere: what rank 0 saves is what every rank
        # encodes with.
        dist.broadcast_buffers(self.model)
        self.observer.epoch_end(epoch + 1)
        return EpochStats(
            epoch=epoch + 1,
            complete=not self.stopped or state.position >= self.steps_per_epoch,
            loss=loss_sum / max(1, loss_count),
            lr=self.lr,
            images_per_s=images_per_s,
        )

    def _batches(self) -> Iterator[ImageBatch]:
        """The loader's batches of this epoch. Starting a DataLoader draws a seed from torch's
        random state; an uninterrupted run drew it before the epoch's first batch, so an epoch
        resumed part-way keeps the restored state for its next batch's augmentation."""
        if self.state.position == 0:
            return iter(self.loader)
        rng = torch.get_rng_state()
        batches = iter(self.loader)
        torch.set_rng_state(rng)
        return batches

    def _optimise(self, batch: ImageBatch) -> tuple[float, int]:
        """One optimiser step on ``batch``; its loss and number of images."""
        images = batch.images.to(self.device, non_blocking=True)
        labels = batch.labels.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device):
            outputs = self.forward(images)
        loss = self.loss_fn(outputs.float(), labels)
        if not torch.isfinite(loss):
            raise HashretError(
                f"the loss became {loss.item()} at step {self.state.step + 1}; lower --lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.is_distributed and self._loss_parameters:
            # DDP averages the model's gradients; a loss's own (a classifier) are averaged here.
            self.dist.average_gradients(self._loss_parameters)
        self.optimizer.step()
        return float(loss.detach()), len(labels)


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else 0.0


class CheckpointHook(TrainHook):
    """Saves the training state at ``last_path`` after every epoch and on an interrupt.

    A checkpoint holds the model (:func:`~hashcli.model.checkpoint.model_state`), the loss's
    own state when it has one (``loss``: a classifier's weights, hash centres), the
    optimiser, scheduler and sampler states, the random state (``rng``), the
    :class:`TrainState` figures (``epoch`` and the sampler's position: where to continue) and
    ``extra`` (the run's settings). Under torchrun :meth:`save` is collective: rank 0 writes,
    with every rank's random state (``rng_per_rank``) and the skipped images of all, while
    the others wait at a barrier; on an interrupt rank 0 saves its own state alone.
    """

    def __init__(self, last_path: Path, *, extra: Mapping[str, Any] | None = None) -> None:
        self.last_path = Path(last_path)
        self.extra = dict(extra or {})

    def state_dict(self, trainer: Trainer, rng_per_rank: list | None = None) -> dict[str, Any]:
        """The checkpoint of ``trainer`` as it is now."""
        state = trainer.state
        epoch, position = state.resume_point(trainer.steps_per_epoch)
        checkpoint = {
            **model_state(trainer.model),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "sampler": trainer.sampler.state_dict(position),
            "rng": capture_rng_state(),
            "step": state.step,
            "epoch": epoch,
            "best_val_map": state.best_val_map,
            "best_epoch": state.best_epoch,
            "skipped_images": state.skipped_images,
            **self.extra,
        }
        if isinstance(trainer.loss_fn, torch.nn.Module):
            # A loss's parameters and buffers (a classifier, hash centres), if it has any.
            loss_state = trainer.loss_fn.state_dict()
            if loss_state:
                checkpoint["loss"] = loss_state
        if rng_per_rank is not None:
            checkpoint["rng_per_rank"] = rng_per_rank
        return checkpoint

    def save(self, path: Path, trainer: Trainer) -> None:
        """Write the checkpoint at ``path``; every process calls this (see the class)."""
        dist = trainer.dist
        if not dist.is_distributed:
            save_checkpoint(path, self.state_dict(trainer))
            return
        everyone = dist.all_gather_object(trainer.state.skipped_images)
        trainer.state.skipped_images = list(dict.fromkeys(p for paths in everyone for p in paths))
        rng_per_rank = dist.gather_object(capture_rng_state())
        if dist.is_main:
            save_checkpoint(path, self.state_dict(trainer, rng_per_rank))
        dist.barrier()

    def restore(self, trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
        """Continue ``trainer`` from ``checkpoint`` (its model already loaded): optimiser,
        scheduler, sampler, this process's random state, the :class:`TrainState`."""
        if "loss" in checkpoint and isinstance(trainer.loss_fn, torch.nn.Module):
            trainer.loss_fn.load_state_dict(checkpoint["loss"])
        trainer.optimizer.load_state_dict(checkpoint["optimizer"])
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
        trainer.sampler.load_state_dict(checkpoint["sampler"])
        per_rank = checkpoint.get("rng_per_rank")
        if isinstance(per_rank, list) and len(per_rank) == trainer.dist.world_size:
            restore_rng_state(per_rank[trainer.dist.rank])
        else:  # a single process, or a distributed run saved on an interrupt (rank 0's only)
            restore_rng_state(checkpoint["rng"])
        trainer.state = TrainState.from_checkpoint(checkpoint)

    def end_of_epoch_hook(self, trainer: Trainer, stats: EpochStats) -> None:
        self.save(self.last_path, trainer)

    def interrupt_hook(self, trainer: Trainer) -> None:
        if trainer.dist.is_main:
            save_checkpoint(self.last_path, self.state_dict(trainer))


#: ``encode(records, phase_name, model)``: their codes; under torchrun rank 0's, None elsewhere.
EncodeFn = Callable[[Sequence["ImageRecord"], str, torch.nn.Module], "EncodedImages | None"]
#: ``evaluate(queries, database)``: scores with at least ``map`` and ``map_index_order``.
EvaluateFn = Callable[["EncodedImages", "EncodedImages"], Mapping[str, Any]]


@dataclass
class ValidationHook(TrainHook):
    """Scores the model after every ``every``-th epoch and the last (not after one cut short).

    ``queries`` (the validation split) and ``database`` (the train split) are encoded with
    ``encode`` and scored by ``evaluate`` on rank 0, whose mAP decides on every rank. A better
    mAP than any before (without validation queries: every evaluation) is the new best: the
    state records it and ``on_best(trainer)`` runs on every process (to save the model).
    ``log(record)`` gets the metrics line on rank 0 (epoch, step, loss, lr, images_per_s,
    val_map, val_map_index_order, best), the observer's ``evaluation`` too.
    """

    queries: Sequence[ImageRecord]
    database: Sequence[ImageRecord]
    _: KW_ONLY
    encode: EncodeFn
    evaluate: EvaluateFn
    on_best: Callable[[Trainer], None]
    log: Callable[[dict[str, Any]], None]
    every: int = 1

    def end_of_epoch_hook(self, trainer: Trainer, stats: EpochStats) -> None:
        due = stats.epoch % max(1, self.every) == 0 or stats.epoch == trainer.epochs
        if stats.complete and due:
            self.validate(trainer, stats)

    def validate(self, trainer: Trainer, stats: EpochStats) -> dict[str, Any]:
        """Score the model now; the metrics line."""
        state = trainer.state
        record: dict[str, Any] = {
            "epoch": stats.epoch,
            "step": state.step,
            "loss": stats.loss,
            "lr": stats.lr,
            "images_per_s": stats.images_per_s,
        }
        if self.queries:
            q = self.encode(self.queries, "validation queries", trainer.model)
            db = self.encode(self.database, "validation database", trainer.model)
            for encoded in (q, db):
                state.note_skipped(encoded.bad_paths if encoded is not None else ())
            # Rank 0 holds the codes; its mAP decides "best" on every rank.
            scores = trainer.dist.run_on_main(lambda: self.evaluate(q, db))
            record["val_map"] = scores["map"]
            record["val_map_index_order"] = scores["map_index_order"]
            improved = state.best_val_map is None or scores["map"] > state.best_val_map
        else:
            improved = True  # no validation split: keep the latest model
        if improved:
            state.best_val_map = record.get("val_map")
            state.best_epoch = stats.epoch
            self.on_best(trainer)
        record["best"] = improved
        if trainer.dist.is_main:
            self.log(record)
        trainer.observer.evaluation(record)
        return record


class LossStepHook(TrainHook):
    """Tells a loss whose formula moves with the training step (HashNet's continuation) the
    step about to be taken: ``set_step(step)`` before every batch, a resumed run included."""

    def __init__(self, set_step: Callable[[int], None]) -> None:
        self.set_step = set_step

    def start_of_iteration_hook(self, trainer: Trainer) -> None:
        self.set_step(trainer.state.step)


class _Interrupt:
    """Turns SIGTERM into KeyboardInterrupt while training, so both save ``last.pt``."""

    def __enter__(self) -> _Interrupt:
        self._previous = None
        with contextlib.suppress(ValueError):  # not the main thread
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


__all__ = [
    "CheckpointHook",
    "EpochStats",
    "LossStepHook",
    "TrainHook",
    "TrainState",
    "Trainer",
    "ValidationHook",
]
