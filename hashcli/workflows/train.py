"""The training run: P x K batches, triplet loss, validation-based model selection, final codes.

:func:`train` is what ``hashret train`` calls. It creates (or resumes) a run folder in the
workdir (see :mod:`hashcli.workflows.runs` for the layout), trains, selects the best model on the
validation split (tie-aware mAP of validation queries against the rest of the train split),
then encodes the whole train split (database) and the test split (queries) with the best model
and scores the test split once. The test split is never used to choose anything.

Progress reaches the caller through a :class:`TrainObserver`, so this module imports no rich.

Several processes (``torchrun --nproc_per_node N -m hashcli train ...``, on one node or many):
the model is wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPUs; see
:mod:`hashcli.runtime.distributed`), each process trains on its own P x K batches (the sampler hands
rank r the batches r, r + N, ... of one shared list, so every batch keeps its P classes x K
images) and gradients are averaged. ``--batch-size`` is per process: the effective batch is
P x K x N, and the learning rate is used as given (not scaled with N; config.json records
both). Loss and images/s are summed over the processes every step. Validation and the final
codes are encoded in contiguous shards, one per process, gathered in input order on rank 0,
which computes the mAP and broadcasts it, so every process takes the same "best" decision.
Only rank 0 writes: the run folder (its name chosen by rank 0), config, checkpoints (of the
unwrapped model, loadable by a single process), metrics, codes, index and CURRENT; the others
wait at barriers. Every process reads ``last.pt`` to resume (the workdir must be on a
filesystem all nodes share) and restores its own random state and sampler position; a run
resumes only with the number of processes it was started with. Progress goes to the observer
on rank 0 only.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hashcli import __version__
from hashcli.errors import HashretError
from hashcli.fileio import timestamp
from hashcli.train.config import TrainConfig
from hashcli.workflows import runs

if TYPE_CHECKING:
    from hashcli.runtime.distributed import Distributed


class TrainObserver:
    """Receives progress; the default does nothing. The CLI renders it with rich."""

    def message(self, text: str) -> None:
        """A line for people (what is happening, where files go)."""

    def start(self, info: dict[str, Any]) -> None:
        """Before the first step: run folder, device, steps per epoch, effective batch and lr."""

    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        """``steps`` in this epoch, ``done`` of them already taken (a resumed epoch)."""

    def step(self, stats: dict[str, float]) -> None:
        """After every optimiser step: epoch, step, loss, lr, images_per_s."""

    def epoch_end(self, epoch: int) -> None:
        """After an epoch."""

    def phase(self, name: str, total: int) -> Callable[[int, int], None]:
        """A sub-task such as encoding; returns ``progress(done, total)``."""
        return lambda done, total: None

    def phase_end(self, name: str) -> None:
        """The sub-task started by :meth:`phase` is over."""

    def evaluation(self, record: dict[str, Any]) -> None:
        """A line of metrics.jsonl (epoch, loss, lr, val mAP, images/s...)."""


@dataclass
class TrainResult:
    run_dir: Path
    best_val_map: float | None
    best_epoch: int | None
    test: dict[str, Any] | None
    steps: int
    epochs_done: int
    finished: bool
    skipped_images: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def evaluate_codes(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    bits: int,
) -> dict[str, Any]:
    """Tie-aware and index-order mAP of queries against a database (single-label)."""
    from hashcli.workflows.evaluate import evaluate_codes as evaluate

    report = evaluate(query_codes, query_labels, db_codes, db_labels, bits)
    return {
        "map": report.map,
        "map_index_order": report.map_index_order,
        "map_pessimistic": report.map_pessimistic,
        "map_optimistic": report.map_optimistic,
        "n_queries": report.n_queries,
        "n_database": report.n_database,
    }


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


def _create_model_once_per_node(dist: Distributed, build: Callable[[], Any]) -> Any:
    """``build()`` in the first process of each node, then in the others: pretrained weights
    missing from the node's cache are downloaded once, and a failure stops every process."""
    model = None
    outcome: tuple[str, Any] = ("ok", None)
    if dist.local_rank == 0:
        try:
            model = build()
        except HashretError as exc:
            outcome = ("error", (type(exc), str(exc)))
    dist.agree(outcome)
    return model if model is not None else build()


def _merge_unique(lists: list[list[str]]) -> list[str]:
    """The union of ``lists`` in order of first appearance."""
    return list(dict.fromkeys(item for items in lists for item in items))


def _prepare_run(config: TrainConfig, workdir: Path, run: str | None, resume: bool) -> Path:
    if resume:
        run_dir = runs.resolve_run(run, workdir)
        if not (run_dir / runs.LAST_CHECKPOINT).is_file():
            raise HashretError(
                f"cannot resume {run_dir}: it has no {runs.LAST_CHECKPOINT} "
                "(it stopped before the first checkpoint); start it again without --resume"
            )
        return run_dir
    name = (
        runs.check_run_name(run)
        if run
        else runs.default_run_name(config.dataset, config.backbone, config.bits)
    )
    run_dir = workdir / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise HashretError(
            f"the run folder {run_dir} already exists; continue it with "
            f"`hashret train --resume --run {name}` or choose another --run"
        )
    # The folder itself appears with config.json, once the data and the model are ready: a
    # run that fails before (missing weights, bad data) leaves nothing behind.
    return run_dir


def train(
    config: TrainConfig,
    *,
    workdir: str | Path | None = None,
    run: str | None = None,
    resume: bool = False,
    observer: TrainObserver | None = None,
) -> TrainResult:
    """Train (or resume) a run; returns where it is and its figures.

    Under torchrun every process calls this and gets the same result; see the module
    docstring for what each process does.
    """
    from hashcli.runtime.distributed import distributed_session

    with distributed_session(config.device) as dist:
        return _train(config, dist, workdir=workdir, run=run, resume=resume, observer=observer)


def _train(
    config: TrainConfig,
    dist: Distributed,
    *,
    workdir: str | Path | None,
    run: str | None,
    resume: bool,
    observer: TrainObserver | None,
) -> TrainResult:
    from hashcli.data import load_dataset
    from hashcli.data.torch_data import ImageRecordDataset, RecordLoader
    from hashcli.data.transforms import train_transform
    from hashcli.model.checkpoint import (
        capture_rng_state,
        load_checkpoint,
        model_from_state,
        model_state,
        restore_rng_state,
        save_checkpoint,
    )
    from hashcli.model.registry import create_model
    from hashcli.runtime.device import autocast, default_workers
    from hashcli.runtime.distributed import cpu_threads_per_process
    from hashcli.train.losses import build_loss
    from hashcli.train.sampler import PKSampler
    from hashcli.train.schedule import build_optimizer, build_scheduler

    # Progress bars and messages come from rank 0 only.
    obs = (observer or TrainObserver()) if dist.is_main else TrainObserver()
    wd = runs.resolve_workdir(workdir)
    # Rank 0 creates the folder (or checks the one to resume) and names it for everyone.
    run_dir = dist.run_on_main(lambda: _prepare_run(config, wd, run, resume))
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(run_dir / runs.LAST_CHECKPOINT)
        saved = runs.read_config(run_dir)["train"]
        overrides = {"max_steps": config.max_steps, "device": config.device}
        if config.epochs is not None:
            overrides["epochs"] = config.epochs
        config = TrainConfig.from_dict({**saved, **overrides})
        saved_world = (checkpoint.get("sampler") or {}).get("world_size", 1)
        if saved_world != dist.world_size:
            raise HashretError(
                f"{run_dir} was trained by {saved_world} process(es) and this is "
                f"{dist.world_size}: resume it with the same number of processes "
                f"(torchrun --nnodes x --nproc_per_node = {saved_world}; 1 is plain hashret)"
            )
        obs.message(f"Resuming {run_dir} at step {checkpoint['step']}")

    device = dist.device
    if device.type == "cpu":
        # One process: every core. Several on one node: OMP_NUM_THREADS or a share each.
        threads = (
            cpu_threads_per_process(dist.local_world_size)
            if dist.is_distributed
            else max(1, os.cpu_count() or 1)
        )
        torch.set_num_threads(threads)
    workers = (
        default_workers(device, dist.local_world_size) if config.workers is None else config.workers
    )
    # Each rank its own augmentation stream; DDP copies rank 0's initial weights to all.
    seed_everything(config.seed + dist.rank)

    dataset = load_dataset(
        config.dataset,
        config.data_root,
        val_fraction=config.val_fraction,
        seed=config.seed,
        boxes=config.crop_to_box,
    )
    for warning in dataset.warnings:
        obs.message(f"Warning: {warning}")
    train_records = dataset.split("train")
    val_records = dataset.split("val")
    test_records = dataset.split("test")
    if len(train_records) < 2:
        raise HashretError(f"the {config.dataset} train split has {len(train_records)} images")
    epochs = config.default_epochs()
    image_size = config.image_size or dataset.image_size

    # P classes x K images; P never exceeds the classes present.
    n_classes = len({r.label for r in train_records})
    k = max(2, config.per_class)
    p = min(max(2, config.batch_size // k), n_classes)
    if p < 2:
        raise HashretError("triplet training needs at least 2 classes in the train split")
    sampler = PKSampler(
        [r.label for r in train_records],
        p,
        k,
        seed=config.seed,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    steps_per_epoch = sampler.num_batches  # per process: the ranks take turns in one list
    total_steps = epochs * steps_per_epoch
    warmup = (
        config.warmup_steps
        if config.warmup_steps is not None
        else (4000 if config.schedule == "inverse-sqrt" else max(1, total_steps // 20))
    )
    if config.schedule == "cosine" and warmup >= total_steps:
        warmup = max(0, total_steps - 1)

    if checkpoint is not None:
        model = model_from_state(checkpoint, source=str(run_dir / runs.LAST_CHECKPOINT))
    else:
        model = _create_model_once_per_node(
            dist,
            lambda: create_model(
                config.backbone,
                config.bits,
                pretrained=config.pretrained,
                weights=config.weights,
                image_size=image_size,
            ),
        )
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    trained: torch.nn.Module = model  # what the steps call; checkpoints hold `model` itself
    if dist.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(trained) if config.compile else trained

    loss_fn = build_loss(
        config.loss,
        bits=config.bits,
        miner=config.miner,
        margin=config.margin,
        reduction=config.reduction,
        quantization_weight=config.quantization_weight,
    )
    optimizer = build_optimizer(
        model,
        config.lr,
        backbone_lr_mult=config.backbone_lr_mult,
        weight_decay=config.weight_decay,
    )
    scheduler = build_scheduler(
        optimizer, config.schedule, warmup_steps=warmup, total_steps=total_steps
    )

    step = 0
    start_epoch = 0
    best_val: float | None = None
    best_epoch: int | None = None
    skipped: list[str] = []
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        sampler.load_state_dict(checkpoint["sampler"])
        per_rank = checkpoint.get("rng_per_rank")
        if isinstance(per_rank, list) and len(per_rank) == dist.world_size:
            restore_rng_state(per_rank[dist.rank])
        else:  # a single process, or a distributed run saved on an interrupt (rank 0's only)
            restore_rng_state(checkpoint["rng"])
        step = int(checkpoint["step"])
        start_epoch = int(checkpoint["epoch"])
        best_val = checkpoint.get("best_val_map")
        best_epoch = checkpoint.get("best_epoch")
        skipped = list(checkpoint.get("skipped_images", []))

    record_config = {
        "train": config.to_dict(),
        "resolved": {
            "epochs": epochs,
            "image_size": image_size,
            "p": p,
            "k": k,
            "batch_size_per_process": p * k,
            "effective_batch_size": p * k * dist.world_size,
            "lr": config.lr,
            "lr_scaling": "none",
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "warmup_steps": warmup,
            "margin": loss_fn.margin if hasattr(loss_fn, "margin") else config.margin,
            "device": str(device),
            "workers": workers,
            "world_size": dist.world_size,
            "backend": dist.backend,
        },
        "dataset": config.dataset,
        "data_root": str(dataset.root),
        "classes": dataset.classes,
        "counts": dataset.counts(),
        "backbone": config.backbone,
        "bits": config.bits,
        "epochs": epochs,
        "hashret_version": __version__,
        "torch_version": torch.__version__,
        "created": timestamp(),
        "skipped_images": skipped,
    }
    dist.barrier()  # every rank has read config.json and last.pt before rank 0 rewrites them
    if dist.is_main:
        if resume:
            previous = runs.read_config(run_dir)
            record_config["created"] = previous.get("created", record_config["created"])
        runs.write_config(run_dir, record_config)
        runs.set_current_run(wd, run_dir)

    train_set = ImageRecordDataset(
        train_records,
        train_transform(image_size, hflip=dataset.hflip),
        crop_to_box=config.crop_to_box,
        skip_bad_images=config.skip_bad_images,
    )
    loader = RecordLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )

    batch = f"{p} classes x {k} images = {p * k}"
    if dist.is_distributed:
        batch += f" per process x {dist.world_size} processes = {p * k * dist.world_size}"
        obs.message(
            f"Distributed: {dist.world_size} processes ({dist.backend}); effective batch "
            f"{p * k * dist.world_size} = {p * k} per process x {dist.world_size}; lr "
            f"{config.lr:g} as given (not scaled with the number of processes)"
        )
    obs.start(
        {
            "run_dir": str(run_dir),
            "device": str(device),
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "batch": batch,
            "world_size": dist.world_size,
            "effective_batch_size": p * k * dist.world_size,
            "lr": config.lr,
            "lr_scaling": "none",
            "schedule": config.schedule,
            "warmup_steps": warmup,
            "train": len(train_records),
            "val": len(val_records),
            "test": len(test_records),
            "start_step": step,
        }
    )

    def make_state(epoch: int, position: int, rng_per_rank: list | None = None) -> dict[str, Any]:
        state = {
            **model_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.state_dict(position),
            "rng": capture_rng_state(),
            "step": step,
            "epoch": epoch,
            "best_val_map": best_val,
            "best_epoch": best_epoch,
            "skipped_images": skipped,
            "train_config": config.to_dict(),
        }
        if rng_per_rank is not None:
            state["rng_per_rank"] = rng_per_rank
        return state

    def save(path: Path, epoch: int, position: int) -> None:
        """Every rank calls this: rank 0 saves, with every rank's random state and skipped
        images, and the others wait until the file is there."""
        nonlocal skipped
        if dist.is_distributed:
            skipped = _merge_unique(dist.all_gather_object(skipped))
            rng_per_rank = dist.gather_object(capture_rng_state())
            if dist.is_main:
                save_checkpoint(path, make_state(epoch, position, rng_per_rank))
            dist.barrier()
        else:
            save_checkpoint(path, make_state(epoch, position))

    def encode(records: list, name: str, net: torch.nn.Module):
        """Codes of ``records``; several processes encode a shard each and rank 0 gets them
        all in input order (the others get None)."""
        from hashcli.model.inference import encode_records, encode_records_sharded

        progress = obs.phase(name, len(records))
        settings = dict(
            device=device,
            image_size=image_size,
            batch_size=config.encode_batch_size,
            workers=workers,
            skip_bad_images=config.skip_bad_images,
            crop_to_box=config.crop_to_box,
            progress=progress,
        )
        try:
            if dist.is_distributed:
                result = encode_records_sharded(net, records, dist=dist, **settings)
            else:
                result = encode_records(net, records, **settings)
        finally:
            obs.phase_end(name)
        for path in result.bad_paths if result is not None else ():
            if path not in skipped:
                skipped.append(path)
        return result

    def validate(epoch: int, loss_value: float, lr_value: float, ips: float) -> None:
        nonlocal best_val, best_epoch
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": loss_value,
            "lr": lr_value,
            "images_per_s": ips,
        }
        if val_records:
            q = encode(val_records, "validation queries", model)
            db = encode(train_records, "validation database", model)
            # Rank 0 holds the codes; its mAP decides "best" on every rank.
            scores = dist.run_on_main(
                lambda: evaluate_codes(q.codes, q.labels, db.codes, db.labels, config.bits)
            )
            record["val_map"] = scores["map"]
            record["val_map_index_order"] = scores["map_index_order"]
            improved = best_val is None or scores["map"] > best_val
        else:
            improved = True  # no validation split: keep the latest model
        if improved:
            best_val = record.get("val_map")
            best_epoch = epoch
            save(run_dir / runs.BEST_CHECKPOINT, epoch, 0)
        record["best"] = improved
        if dist.is_main:
            runs.append_metrics(run_dir, record)
        obs.evaluation(record)

    finished = False
    epoch = start_epoch
    position = 0  # batches of the current epoch consumed (what a mid-epoch checkpoint records)
    stopped_early = False
    with _Interrupt():
        try:
            for epoch in range(start_epoch, epochs):
                sampler.set_epoch(epoch)
                position = steps_per_epoch - len(sampler)
                obs.epoch_start(epoch + 1, epochs, steps_per_epoch, position)
                model.train()
                loss_sum, loss_count = 0.0, 0
                images_seen, epoch_start = 0, time.perf_counter()
                for batch in loader:
                    usable = len(batch.labels) >= 2
                    if dist.is_distributed and config.skip_bad_images:
                        # DDP needs every rank in every backward: all skip a step if one must.
                        usable = dist.all_reduce_max([0.0 if usable else 1.0])[0] == 0.0
                    step_loss, step_images = 0.0, 0
                    if usable:
                        images = batch.images.to(device, non_blocking=True)
                        labels = batch.labels.to(device, non_blocking=True)
                        if device.type == "cuda":
                            images = images.contiguous(memory_format=torch.channels_last)
                        with autocast(device):
                            outputs = forward(images)
                        loss = loss_fn(outputs.float(), labels)
                        if not torch.isfinite(loss):
                            raise HashretError(
                                f"the loss became {loss.item()} at step {step + 1}; lower --lr"
                            )
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        step_loss, step_images = float(loss.detach()), len(labels)
                    if dist.is_distributed:  # loss and images of every rank
                        step_loss, counted, step_images = dist.all_reduce_sum(
                            [step_loss, float(usable), step_images]
                        )
                        loss_sum += step_loss
                        loss_count += int(counted)
                    elif usable:
                        loss_sum += step_loss
                        loss_count += 1
                    images_seen += int(step_images)
                    for item in batch.bad:
                        if item.path not in skipped:
                            skipped.append(item.path)
                    scheduler.step()
                    step += 1
                    position += 1
                    elapsed = time.perf_counter() - epoch_start
                    obs.step(
                        {
                            "epoch": epoch + 1,
                            "step": step,
                            "loss": loss_sum / max(1, loss_count),
                            "lr": optimizer.param_groups[-1]["lr"],
                            "images_per_s": images_seen / elapsed if elapsed > 0 else 0.0,
                        }
                    )
                    if config.max_steps is not None and step >= config.max_steps:
                        stopped_early = True
                        break
                elapsed = time.perf_counter() - epoch_start
                ips = images_seen / elapsed if elapsed > 0 else 0.0
                # BatchNorm statistics of rank 0 everywhere: what rank 0 saves is what every
                # rank encodes with.
                dist.broadcast_buffers(model)
                if stopped_early and position < steps_per_epoch:
                    save(run_dir / runs.LAST_CHECKPOINT, epoch, position)
                    obs.epoch_end(epoch + 1)
                    break
                obs.epoch_end(epoch + 1)
                lr_now = optimizer.param_groups[-1]["lr"]
                mean_loss = loss_sum / max(1, loss_count)
                if (epoch + 1) % max(1, config.eval_every) == 0 or epoch + 1 == epochs:
                    validate(epoch + 1, mean_loss, lr_now, ips)
                save(run_dir / runs.LAST_CHECKPOINT, epoch + 1, 0)
                if stopped_early:
                    break
            else:
                finished = True
        except KeyboardInterrupt:
            # No collectives here (the other ranks may be gone): rank 0 saves alone.
            if dist.is_main:
                done = position >= steps_per_epoch  # interrupted while validating
                state = make_state(epoch + 1, 0) if done else make_state(epoch, position)
                save_checkpoint(run_dir / runs.LAST_CHECKPOINT, state)
            raise HashretError(
                f"interrupted at step {step}; the run is saved in {run_dir}: continue it with "
                f"`hashret train --resume --run {run_dir.name}`"
            ) from None

    result = TrainResult(
        run_dir=run_dir,
        best_val_map=best_val,
        best_epoch=best_epoch,
        test=None,
        steps=step,
        epochs_done=epochs if finished else epoch,
        finished=finished,
        skipped_images=skipped,
    )
    if not finished:
        obs.message(
            f"Stopped at step {step} of {total_steps}; continue with "
            f"`hashret train --resume --run {run_dir.name}`"
        )
        if dist.is_main:
            _write_summary(run_dir, result, total_steps)
        dist.barrier()
        return result

    # The best model encodes the database (the whole train split, validation images included)
    # and the queries (the test split); the test split is scored once, here.
    best = load_checkpoint(run_dir / runs.BEST_CHECKPOINT)
    model = model_from_state(best, source=str(run_dir / runs.BEST_CHECKPOINT)).to(device)
    encoded = {}
    for split, records in (("train", train_records + val_records), ("test", test_records)):
        if records:
            encoded[split] = (records, encode(records, f"encoding {split} split", model))

    def finish() -> tuple[dict[str, Any] | None, list[str]]:
        test = _final_codes(model, run_dir, config, dataset, encoded, obs)
        config_now = runs.read_config(run_dir)
        config_now["skipped_images"] = skipped
        runs.write_config(run_dir, config_now)
        result.test, result.skipped_images = test, skipped
        _write_summary(run_dir, result, total_steps)
        return test, skipped

    # Rank 0 writes codes, index, config and summary; every rank returns the same result.
    result.test, result.skipped_images = dist.run_on_main(finish)
    dist.barrier()
    return result


def _final_codes(model, run_dir, config, dataset, encoded_splits, obs):
    """Write the code files and the flat index (rank 0); the test scores, or None."""
    from hashcli.workflows.artefacts import write_code_file
    from hashcli.workflows.index import write_index

    run = runs.RunDir(run_dir)
    encoded = {}
    for split, target in (("train", run.database_codes), ("test", run.query_codes)):
        if split not in encoded_splits:
            continue
        records, enc = encoded_splits[split]
        write_code_file(
            target,
            enc,
            records,
            model=model,
            dataset=config.dataset,
            split=split,
            class_names=dataset.classes,
            checkpoint=run.best_checkpoint,
            run=run,
        )
        encoded[split] = enc
        obs.message(f"Wrote {target} ({len(enc.rows)} codes)")
    if "train" in encoded:
        # `hashret query` works right after training: the flat (exact) index of the database.
        index = write_index(run.database_codes, run.index_file, "flat")
        obs.message(f"Wrote {run.index_file} (flat index, {index.ntotal} codes)")
    if "train" not in encoded or "test" not in encoded:
        return None
    scores = evaluate_codes(
        encoded["test"].codes,
        encoded["test"].labels,
        encoded["train"].codes,
        encoded["train"].labels,
        config.bits,
    )
    return scores


def _write_summary(run_dir: Path, result: TrainResult, total_steps: int) -> None:
    from hashcli.fileio import write_json_atomic

    test = result.test or {}
    write_json_atomic(
        run_dir / runs.SUMMARY_FILE,
        {
            "finished": result.finished,
            "steps": result.steps,
            "total_steps": total_steps,
            "epochs_done": result.epochs_done,
            "best_val_map": result.best_val_map,
            "best_epoch": result.best_epoch,
            "test_map": test.get("map"),
            "test_map_index_order": test.get("map_index_order"),
            "test": test or None,
            "skipped_images": len(result.skipped_images),
        },
    )


__all__ = ["TrainConfig", "TrainObserver", "TrainResult", "evaluate_codes", "train"]
