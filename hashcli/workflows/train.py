"""The training run: P x K batches, a hashing method, validation-based model selection, codes.

:func:`train` is what ``hashret train`` calls. It creates (or resumes) a run folder in the
workdir (see :mod:`hashcli.workflows.runs` for the layout), trains with the method of the
config (:mod:`hashcli.train.methods`: its loss, its model output layer, its hash centres,
saved in the checkpoints and described in config.json), selects the best model on the
validation split (tie-aware mAP of validation queries against the rest of the train split),
then encodes the whole train split (database) and the test split (queries) with the best model
and scores the test split once. The test split is never used to choose anything.

The steps themselves are :class:`hashcli.train.trainer.Trainer`'s: this module prepares the
run folder, loads the data, resolves the figures (:func:`hashcli.train.recipe.resolve_recipe`),
builds the parts (model, DDP, loss, optimiser, schedule, sampler, loader) and hands them to the
trainer with its hooks (validation and the best model, ``last.pt``), then writes the final
codes, index and summary. Progress reaches the caller through a :class:`TrainObserver`, so this
module imports no rich.

Rank 0 holds the run's writer lock (``<run>/.lock``, :meth:`hashcli.workflows.runs.RunDir.lock`)
while training writes the run: a resumed run from the start, a new one from the moment its
folder appears with config.json; to the end. A second ``hashret train --resume`` of a run being
trained fails at once.

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
from hashcli.train.observer import TrainObserver
from hashcli.workflows import runs
from hashcli.workflows.evaluate import map_figures as evaluate_codes

if TYPE_CHECKING:
    from hashcli.data.records import ImageDataset, ImageRecord
    from hashcli.model.hashnet import HashNet
    from hashcli.model.inference import EncodedImages
    from hashcli.runtime.distributed import Distributed
    from hashcli.train.methods import BuiltMethod
    from hashcli.train.recipe import Recipe
    from hashcli.train.trainer import Trainer, TrainHook


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
    #: Statistics of the database codes (:class:`hashcli.metrics.code_stats.CodeStats`
    #: as a dict), once the run has finished.
    code_stats: dict[str, Any] | None = None
    #: A finished run with ``--unseen-classes``: the protocol's figures under their summary.json
    #: keys (:func:`hashcli.workflows.evaluate.unseen_class_figures`).
    unseen: dict[str, Any] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    from hashcli.train.recipe import resolve_recipe
    from hashcli.train.trainer import Trainer

    # Progress bars and messages come from rank 0 only.
    obs = (observer or TrainObserver()) if dist.is_main else TrainObserver()
    wd = runs.resolve_workdir(workdir)
    overrides = _method_overrides(config)  # a bad method option fails before anything else
    with contextlib.ExitStack() as lock:  # rank 0 holds the run's writer lock in it
        # Rank 0 checks the folder (and locks a run to resume) and names it for everyone.
        run_dir = runs.RunDir(dist.run_on_main(lambda: _prepare_run(config, wd, run, resume, lock)))
        checkpoint = None
        if resume:
            config, checkpoint = _resume(run_dir, config, dist, obs)
            overrides = _method_overrides(config)
        workers = _use_cores(config, dist)
        # Each rank its own augmentation stream; DDP copies rank 0's initial weights to all.
        seed_everything(config.seed + dist.rank)
        dataset, splits = _load_data(config, obs)
        method = _method(config, overrides, dataset, checkpoint)
        labels = [r.label for r in splits["train"]]
        recipe = resolve_recipe(
            config,
            labels,
            default_image_size=dataset.image_size,
            world_size=dist.world_size,
            multi_label=dataset.multi_label,
        )
        model = _initial_model(config, recipe, dist, checkpoint, run_dir, method)
        multi_hot = dataset.num_classes if dataset.multi_label else None
        parts = _build_parts(
            config, recipe, dist, model, method, splits["train"], dataset.hflip, workers, multi_hot
        )
        encode = _encoder(config, dist, recipe.image_size, workers, obs, multi_hot)
        hooks = _hooks(config, run_dir, splits, encode, method)
        trainer = Trainer(
            **parts,
            dist=dist,
            device=dist.device,
            epochs=recipe.epochs,
            steps_per_epoch=recipe.steps_per_epoch,
            max_steps=config.max_steps,
            skip_bad_images=config.skip_bad_images,
            hooks=hooks,
            observer=obs,
        )
        checkpoints = hooks[1]
        if checkpoint is not None:
            checkpoints.restore(trainer, checkpoint)
        record = _run_record(config, recipe, dataset, dist, workers, trainer, method)
        dist.barrier()  # every rank has read config.json and last.pt before rank 0 rewrites them
        dist.run_on_main(lambda: _start_run(run_dir, wd, record, resume, lock))
        _announce(obs, run_dir, config, recipe, dist, splits, trainer.state.step, method)
        try:
            finished = trainer.train()
        except KeyboardInterrupt:
            raise HashretError(
                f"interrupted at step {trainer.state.step}; the run is saved in {run_dir.path}: "
                f"continue it with `hashret train --resume --run {run_dir.name}`"
            ) from None
        return _conclude(trainer, finished, run_dir, config, dataset, splits, recipe, encode, obs)


def _prepare_run(
    config: TrainConfig, workdir: Path, run: str | None, resume: bool, lock: contextlib.ExitStack
) -> Path:
    """The run folder (rank 0): the run to resume, locked, or a new one's, not yet created."""
    if resume:
        run_dir = runs.resolve_run(run, workdir)
        # Held until training ends: a second `hashret train --resume` of it fails at once.
        lock.enter_context(runs.RunDir(run_dir).lock(timeout=0))
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
        raise _run_exists(run_dir)
    # The folder itself appears with config.json, once the data and the model are ready: a
    # run that fails before (missing weights, bad data) leaves nothing behind.
    return run_dir


def _run_exists(run_dir: Path) -> HashretError:
    return HashretError(
        f"the run folder {run_dir} already exists; continue it with "
        f"`hashret train --resume --run {run_dir.name}` or choose another --run"
    )


def _resume(
    run_dir: runs.RunDir, config: TrainConfig, dist: Distributed, obs: TrainObserver
) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's own settings (with this call's max_steps, device and epochs) and last.pt."""
    from hashcli.model.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run_dir.last_checkpoint)
    overrides = {"max_steps": config.max_steps, "device": config.device}
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    config = TrainConfig.from_dict({**run_dir.config()["train"], **overrides})
    saved_world = (checkpoint.get("sampler") or {}).get("world_size", 1)
    if saved_world != dist.world_size:
        raise HashretError(
            f"{run_dir.path} was trained by {saved_world} process(es) and this is "
            f"{dist.world_size}: resume it with the same number of processes "
            f"(torchrun --nnodes x --nproc_per_node = {saved_world}; 1 is plain hashret)"
        )
    obs.message(f"Resuming {run_dir.path} at step {checkpoint['step']}")
    return config, checkpoint


def _use_cores(config: TrainConfig, dist: Distributed) -> int:
    """Set this process's CPU threads; the data-loading workers to use."""
    from hashcli.runtime.device import default_workers
    from hashcli.runtime.distributed import cpu_threads_per_process

    if dist.device.type == "cpu":
        # One process: every core. Several on one node: OMP_NUM_THREADS or a share each.
        threads = (
            cpu_threads_per_process(dist.local_world_size)
            if dist.is_distributed
            else max(1, os.cpu_count() or 1)
        )
        torch.set_num_threads(threads)
    if config.workers is not None:
        return config.workers
    return default_workers(dist.device, dist.local_world_size)


def _load_data(
    config: TrainConfig, obs: TrainObserver
) -> tuple[ImageDataset, dict[str, list[ImageRecord]]]:
    """The dataset and the records of its roles: train, val, database and test."""
    from hashcli.data import load_dataset

    dataset = load_dataset(
        config.dataset,
        config.data_root,
        val_fraction=config.val_fraction,
        seed=config.seed,
        boxes=config.crop_to_box,
    )
    for warning in dataset.warnings:
        obs.message(f"Warning: {warning}")
    splits = {name: dataset.role(name) for name in ("train", "val", "database", "test")}
    unseen = set(_unseen_classes(config, dataset))
    for name in ("train", "val"):  # the unseen classes are never trained on nor selected by
        splits[name] = [r for r in splits[name] if r.label not in unseen]
    return dataset, splits


def _unseen_classes(config: TrainConfig, dataset: ImageDataset) -> list[int]:
    """The classes ``--unseen-classes`` leaves out (seeded by the run's seed), sorted."""
    from hashcli.data.splits import choose_unseen_classes

    if dataset.multi_label and config.unseen_classes:
        raise HashretError("--unseen-classes needs single-label data (an image has one class)")
    try:
        return choose_unseen_classes(dataset.num_classes, config.unseen_classes, config.seed)
    except ValueError as exc:
        raise HashretError(f"--unseen-classes {config.unseen_classes:g}: {exc}") from None


def _method_overrides(config: TrainConfig) -> dict[str, Any]:
    """The method's settings given in ``config``, checked (HashretError naming the method)."""
    from hashcli.train.methods import method_overrides

    return method_overrides(
        config.method, shared=config.method_shared_options(), options=config.method_options
    )


def _method(
    config: TrainConfig,
    overrides: dict[str, Any],
    dataset: ImageDataset,
    checkpoint: dict[str, Any] | None,
) -> BuiltMethod:
    """The method's loss for ``dataset``, with the hash centres of ``checkpoint`` when resuming
    (new ones, drawn with the run's seed, otherwise)."""
    from hashcli.train.codebook import Codebook
    from hashcli.train.methods import build_method, get_method

    if getattr(dataset, "multi_label", False) and not get_method(config.method).multi_label:
        raise HashretError(
            f"{config.dataset} has multi-label images and the {config.method} method has no "
            "multi-label form; choose one that has (csq, dpn, dpsh, dsh, hashnet, orthohash)"
        )
    saved = (checkpoint or {}).get("codebook")
    return build_method(
        config.method,
        bits=config.bits,
        num_classes=len(dataset.classes),
        overrides=overrides,
        seed=config.seed,
        codebook=Codebook.from_state(saved) if saved is not None else None,
    )


def _initial_model(
    config: TrainConfig,
    recipe: Recipe,
    dist: Distributed,
    checkpoint: dict[str, Any] | None,
    run_dir: runs.RunDir,
    method: BuiltMethod,
) -> HashNet:
    """The model to train, on the CPU: the one in ``checkpoint`` when resuming, else a new one
    ending in the method's output layer."""
    from hashcli.model.checkpoint import model_from_state
    from hashcli.model.factory import create_model

    if checkpoint is not None:
        return model_from_state(checkpoint, source=str(run_dir.last_checkpoint))
    return _create_model_once_per_node(
        dist,
        lambda: create_model(
            config.backbone,
            config.bits,
            pretrained=config.pretrained,
            weights=config.weights,
            image_size=recipe.image_size,
            output_layer=method.loss.output_layer,
        ),
    )


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


def _build_parts(
    config: TrainConfig,
    recipe: Recipe,
    dist: Distributed,
    model: HashNet,
    method: BuiltMethod,
    train_records: list[ImageRecord],
    hflip: bool,
    workers: int,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The Trainer's parts: ``model`` on the device, forward (DDP, compiled), the method's loss,
    optimiser (the loss's own parameters included), scheduler, P x K sampler (shuffled batches
    for multi-label data, whose multi-hot width is ``num_classes``) and the loader."""
    from hashcli.data.torch_data import ImageRecordDataset, RecordLoader
    from hashcli.data.transforms import train_transform
    from hashcli.train.sampler import PKSampler, ShuffledBatchSampler
    from hashcli.train.schedule import build_optimizer, build_scheduler

    device = dist.device
    if num_classes is not None:
        sampler: PKSampler = ShuffledBatchSampler(
            len(train_records),
            recipe.p,
            seed=config.seed,
            rank=dist.rank,
            world_size=dist.world_size,
        )
    else:
        sampler = PKSampler(
            [r.label for r in train_records],
            recipe.p,
            recipe.k,
            seed=config.seed,
            rank=dist.rank,
            world_size=dist.world_size,
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
    loss_fn = method.loss.to(device)
    optimizer = build_optimizer(
        model,
        config.lr,
        backbone_lr_mult=config.backbone_lr_mult,
        loss=loss_fn,
        weight_decay=config.weight_decay,
    )
    scheduler = build_scheduler(
        optimizer,
        config.schedule,
        warmup_steps=recipe.warmup_steps,
        total_steps=recipe.total_steps,
    )
    train_set = ImageRecordDataset(
        train_records,
        train_transform(recipe.image_size, hflip=hflip),
        crop_to_box=config.crop_to_box,
        skip_bad_images=config.skip_bad_images,
        num_classes=num_classes,
    )
    loader = RecordLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return {
        "model": model,
        "forward": torch.compile(trained) if config.compile else trained,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loss_fn": loss_fn,
        "loader": loader,
        "sampler": sampler,
    }


def _encoder(
    config: TrainConfig,
    dist: Distributed,
    image_size: int,
    workers: int,
    obs: TrainObserver,
    num_classes: int | None = None,
) -> Callable[[list[ImageRecord], str, torch.nn.Module], EncodedImages | None]:
    """``encode(records, name, model)``: their codes, with a progress phase ``name``; several
    processes encode a shard each and rank 0 gets them all in input order (the others None)."""
    from hashcli.model.inference import encode_records, encode_records_sharded

    settings = dict(
        device=dist.device,
        image_size=image_size,
        batch_size=config.encode_batch_size,
        workers=workers,
        skip_bad_images=config.skip_bad_images,
        crop_to_box=config.crop_to_box,
        num_classes=num_classes,
    )

    def encode(records: list[ImageRecord], name: str, model: torch.nn.Module):
        progress = obs.phase(name, len(records))
        try:
            if dist.is_distributed:
                return encode_records_sharded(
                    model, records, dist=dist, progress=progress, **settings
                )
            return encode_records(model, records, progress=progress, **settings)
        finally:
            obs.phase_end(name)

    return encode


def _hooks(
    config: TrainConfig,
    run_dir: runs.RunDir,
    splits: dict[str, list[ImageRecord]],
    encode: Callable,
    method: BuiltMethod,
) -> list[TrainHook]:
    """Validation on the val split (the best model to model.pt, a line of metrics.jsonl per
    evaluation), checkpoints to last.pt (both with the method's hash centres, if any), and the
    step for a loss that follows it."""
    from hashcli.train.trainer import CheckpointHook, LossStepHook, ValidationHook

    extra: dict[str, Any] = {"train_config": config.to_dict()}
    if method.codebook is not None:
        extra["codebook"] = method.codebook.to_state()
    checkpoints = CheckpointHook(run_dir.last_checkpoint, extra=extra)
    validation = ValidationHook(
        splits["val"],
        splits["train"],
        encode=encode,
        evaluate=lambda q, db: evaluate_codes(q.codes, q.labels, db.codes, db.labels, config.bits),
        on_best=lambda trainer: checkpoints.save(run_dir.best_checkpoint, trainer),
        log=lambda record: runs.append_metrics(run_dir.path, record),
        every=config.eval_every,
    )
    hooks: list[TrainHook] = [validation, checkpoints]
    if method.loss.needs_step:
        hooks.append(LossStepHook(method.loss.set_step))
    return hooks


def _run_record(
    config: TrainConfig,
    recipe: Recipe,
    dataset: ImageDataset,
    dist: Distributed,
    workers: int,
    trainer: Trainer,
    method: BuiltMethod,
) -> dict[str, Any]:
    """config.json: the settings, the resolved figures, the method, the data."""
    return {
        "train": config.to_dict(),
        "resolved": {
            "epochs": recipe.epochs,
            "image_size": recipe.image_size,
            "p": recipe.p,
            "k": recipe.k,
            "batch_size_per_process": recipe.batch_size_per_process,
            "effective_batch_size": recipe.effective_batch_size,
            "lr": config.lr,
            "lr_scaling": "none",
            "steps_per_epoch": recipe.steps_per_epoch,
            "total_steps": recipe.total_steps,
            "warmup_steps": recipe.warmup_steps,
            "device": str(dist.device),
            "workers": workers,
            "world_size": dist.world_size,
            "backend": dist.backend,
        },
        "method": method.record(),
        "dataset": config.dataset,
        "data_root": str(dataset.root),
        "classes": dataset.classes,
        "counts": dataset.counts(),
        "unseen_classes": _unseen_classes(config, dataset),
        "backbone": config.backbone,
        "bits": config.bits,
        "epochs": recipe.epochs,
        "hashret_version": __version__,
        "torch_version": torch.__version__,
        "created": timestamp(),
        "skipped_images": trainer.state.skipped_images,
    }


def _start_run(
    run: runs.RunDir,
    workdir: Path,
    record: dict[str, Any],
    resume: bool,
    lock: contextlib.ExitStack,
) -> None:
    """Rank 0: write config.json (a new run's folder appears here, its lock taken, held until
    training ends) and make the run current."""
    if resume:
        record["created"] = run.config().get("created", record["created"])
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        lock.enter_context(run.lock(timeout=0))
        if run.exists():  # another `hashret train --run` of this name got here first
            raise _run_exists(run.path)
    runs.write_config(run.path, record)
    runs.set_current_run(workdir, run.path)


def _announce(
    obs: TrainObserver,
    run_dir: runs.RunDir,
    config: TrainConfig,
    recipe: Recipe,
    dist: Distributed,
    splits: dict[str, list[ImageRecord]],
    start_step: int,
    method: BuiltMethod,
) -> None:
    """Tell the observer what is about to be trained."""
    per_process, effective = recipe.batch_size_per_process, recipe.effective_batch_size
    batch = f"{recipe.p} classes x {recipe.k} images = {per_process}"
    if dist.is_distributed:
        batch += f" per process x {dist.world_size} processes = {effective}"
        obs.message(
            f"Distributed: {dist.world_size} processes ({dist.backend}); effective batch "
            f"{effective} = {per_process} per process x {dist.world_size}; lr "
            f"{config.lr:g} as given (not scaled with the number of processes)"
        )
    if method.codebook is not None:
        obs.message(f"Hash centres: {method.codebook.describe()}")
    obs.start(
        {
            "run_dir": str(run_dir.path),
            "method": config.method,
            "device": str(dist.device),
            "epochs": recipe.epochs,
            "steps_per_epoch": recipe.steps_per_epoch,
            "total_steps": recipe.total_steps,
            "batch": batch,
            "world_size": dist.world_size,
            "effective_batch_size": effective,
            "lr": config.lr,
            "lr_scaling": "none",
            "schedule": config.schedule,
            "warmup_steps": recipe.warmup_steps,
            "train": len(splits["train"]),
            "val": len(splits["val"]),
            "database": len(splits["database"]),
            "test": len(splits["test"]),
            "start_step": start_step,
        }
    )


def _conclude(
    trainer: Trainer,
    finished: bool,
    run_dir: runs.RunDir,
    config: TrainConfig,
    dataset: ImageDataset,
    splits: dict[str, list[ImageRecord]],
    recipe: Recipe,
    encode: Callable,
    obs: TrainObserver,
) -> TrainResult:
    """The summary of a stopped run, or the final codes, index and summary of a finished one."""
    from hashcli.model.checkpoint import load_model

    state, dist = trainer.state, trainer.dist
    result = TrainResult(
        run_dir=run_dir.path,
        best_val_map=state.best_val_map,
        best_epoch=state.best_epoch,
        test=None,
        steps=state.step,
        epochs_done=recipe.epochs if finished else state.epoch,
        finished=finished,
        skipped_images=state.skipped_images,
    )
    if not finished:
        obs.message(
            f"Stopped at step {state.step} of {recipe.total_steps}; continue with "
            f"`hashret train --resume --run {run_dir.name}`"
        )
        if dist.is_main:
            _write_summary(run_dir.path, result, recipe.total_steps)
        dist.barrier()
        return result

    # The best model encodes the database (the dataset's database role: the whole train split,
    # validation images included, for most datasets) and the queries (the test split); the
    # test split is scored once, here.
    model = load_model(run_dir.best_checkpoint, dist.device)
    encoded = {}
    for split, records in (("database", splits["database"]), ("test", splits["test"])):
        if records:
            codes = encode(records, f"encoding the {split}", model)
            state.note_skipped(codes.bad_paths if codes is not None else ())
            encoded[split] = (records, codes)

    def finish() -> tuple[Any, ...]:
        test, result.unseen = _final_codes(model, run_dir.path, config, dataset, encoded, obs)
        config_now = run_dir.config()
        config_now["skipped_images"] = state.skipped_images
        runs.write_config(run_dir.path, config_now)
        result.test, result.skipped_images = test, state.skipped_images
        result.code_stats = _code_stats(encoded.get("database"), config.bits)
        _write_summary(run_dir.path, result, recipe.total_steps)
        return test, state.skipped_images, result.code_stats, result.unseen

    # Rank 0 writes codes, index, config and summary; every rank returns the same result.
    result.test, result.skipped_images, result.code_stats, result.unseen = dist.run_on_main(finish)
    dist.barrier()
    return result


def _final_codes(model, run_dir, config, dataset, encoded_splits, obs):
    """Write the code files and the flat index (rank 0); (the test scores, the unseen-class
    figures), each None when there is nothing to score."""
    from hashcli.workflows.artefacts import write_code_file
    from hashcli.workflows.index import write_index

    run = runs.RunDir(run_dir)
    encoded = {}
    for split, target in (("database", run.database_codes), ("test", run.query_codes)):
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
    if "database" in encoded:
        # `hashret query` works right after training: the flat (exact) index of the database.
        index = write_index(run.database_codes, run.index_file, "flat")
        obs.message(f"Wrote {run.index_file} (flat index, {index.ntotal} codes)")
    _export_onnx(model, run, obs)
    if "database" not in encoded or "test" not in encoded:
        return None, None
    queries, database = encoded["test"], encoded["database"]
    scores = evaluate_codes(
        queries.codes, queries.labels, database.codes, database.labels, config.bits
    )
    unseen = _unseen_classes(config, dataset)
    if not unseen:
        return scores, None
    from hashcli.workflows.evaluate import unseen_class_figures

    figures = unseen_class_figures(
        queries.codes, queries.labels, database.codes, database.labels, config.bits, unseen
    )
    return scores, figures


def _export_onnx(model, run: runs.RunDir, obs: TrainObserver) -> None:
    """model.onnx for the query engine (rank 0, the lock held); a model the exporter cannot
    take is a note, not a failed run: queries then use torch."""
    from hashcli.workflows.export import export_enabled

    if not export_enabled():
        return
    from hashcli.model.export import export_onnx

    try:
        export_onnx(model, run.onnx_model)
    except (HashretError, ImportError) as exc:
        obs.message(f"{runs.ONNX_MODEL} not written ({exc}); `hashret query` will use torch")
        return
    obs.message(f"Wrote {run.onnx_model} (the query engine's model)")


def _code_stats(encoded: tuple[list, EncodedImages] | None, bits: int) -> dict[str, Any] | None:
    """Statistics of the database codes (what explains one method beating another)."""
    if encoded is None:
        return None
    from hashcli.metrics.code_stats import code_statistics

    codes = encoded[1]
    return code_statistics(codes.codes, codes.labels, bits).to_dict()


def _write_summary(run_dir: Path, result: TrainResult, total_steps: int) -> None:
    from hashcli.fileio import write_json_atomic

    test = result.test or {}
    write_json_atomic(
        run_dir / runs.SUMMARY_FILE,
        {
            **(result.unseen or {}),  # the unseen-class figures, beside "test"
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
            "code_stats": result.code_stats,
        },
    )


__all__ = ["TrainConfig", "TrainObserver", "TrainResult", "evaluate_codes", "train"]
