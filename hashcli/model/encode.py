"""Images in, binary codes out: batched, parallel decoding, the model's eval transform.

Two entry points:

- :func:`encode_records`: codes of a list of records with a model already in memory (used by
  training for validation and the final codes, and by :func:`encode_to_file`);
- :func:`encode_to_file`: what ``hashret encode`` calls: a run's model (or a checkpoint), a
  dataset split or loose image files, one code file written atomically, a summary back.

Under torchrun, :func:`encode_records_sharded` splits :func:`encode_records` over the
processes (one contiguous shard each, gathered in input order on rank 0); training uses it for
validation and the final codes, and :func:`encode_to_file` for the one file it writes.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hashcli.codes.bits import pack_binary
from hashcli.data.records import ImageRecord
from hashcli.errors import DataError, HashretError
from hashcli.model.device import autocast
from hashcli.model.hashnet import HashNet

if TYPE_CHECKING:
    from hashcli.distributed import Distributed

#: progress(done_images, total_images)
ProgressFn = Callable[[int, int], None]

#: The splits ``encode_to_file`` accepts; "all" is every record of the dataset, in reader order.
ENCODE_SPLITS = ("train", "val", "test", "all")

#: ``dataset`` attribute of a code file made from loose image files.
LOOSE_IMAGES = "images"

DEFAULT_BATCH_SIZE = 128


@dataclass
class EncodedImages:
    """Codes of the images that could be read, in input order.

    ``codes`` uint8 (N, bits/8) packed most-significant bit first (bit = output >= 0);
    ``rows`` int64 (N,) positions of the encoded images in the input; ``labels`` int64 (N,);
    ``bad_paths`` the inputs skipped as unreadable (``skip_bad_images``); ``seconds`` wall time
    of the whole pass (worker start-up included); ``workers`` the decoding processes used.
    """

    codes: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    bits: int
    bad_paths: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0

    @property
    def images_per_second(self) -> float:
        return len(self.rows) / self.seconds if self.seconds > 0 else 0.0


def default_encode_workers(device: torch.device) -> int:
    """Decoding worker processes for encoding on ``device`` when none are asked for: see
    :func:`hashcli.model.device.default_workers` (measured in ``benchmarks/bench_encode.py``)."""
    from hashcli.model.device import default_workers

    return default_workers(device)


def split_eval_transform(
    image_size: int,
) -> tuple[Callable[[Any], torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]:
    """:func:`hashcli.data.transforms.eval_transform` cut in two at its ``ToImage`` step.

    Returns ``(per_image, per_batch)``: ``per_image`` maps a PIL image to uint8 (3, S, S) (the
    resize and crop, then the pixels as they are), ``per_batch`` maps a stacked uint8 batch
    (B, 3, S, S) to the normalised float32 batch, elementwise exactly as ``eval_transform``
    would have made each image. Why: the float conversion and normalisation run once per batch,
    on the model's device, instead of once per image in the decoding code, where torch's
    multithreaded kernels on small tensors are slow (and very slow when other processes load
    the cores), and decoding workers hand over 4x fewer bytes. ``per_batch`` is None (and
    ``per_image`` the whole transform) if ``eval_transform`` has no ``ToImage`` step.
    """
    from torchvision.transforms import v2

    from hashcli.data.transforms import eval_transform

    whole = eval_transform(image_size)
    steps = list(whole.transforms)
    cut = next((i for i, step in enumerate(steps) if isinstance(step, v2.ToImage)), None)
    if cut is None:
        return whole, None
    per_image = v2.Compose([*steps[:cut], v2.PILToTensor()])
    rest = steps[cut + 1 :]
    return per_image, (v2.Compose(rest) if rest else None)


def check_loader_settings(batch_size: int, workers: int | None) -> None:
    """HashretError for a batch size below 1 or a negative worker count (None: automatic)."""
    if batch_size < 1:
        raise HashretError(f"the batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise HashretError(f"the number of workers must be 0 or more, got {workers}")


def encode_records(
    model: HashNet,
    records: Sequence[ImageRecord],
    *,
    device: torch.device,
    image_size: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    skip_bad_images: bool = False,
    crop_to_box: bool = False,
    progress: ProgressFn | None = None,
) -> EncodedImages:
    """Encode ``records`` with ``model`` (put in eval mode for the pass) on ``device``.

    Images are decoded and transformed (:func:`hashcli.data.transforms.eval_transform` at
    ``image_size``, default the model's, applied as :func:`split_eval_transform` describes) by
    ``workers`` DataLoader processes (None:
    :func:`default_encode_workers`; 0: in this process; a single batch is always decoded here,
    since starting a worker would cost more than it saves). ``progress(done, total)`` is called
    with ``done = 0`` when decoding starts, then after every batch (unreadable images included in
    ``done``).

    Raises DataError naming the first unreadable image unless ``skip_bad_images``.
    """
    from hashcli.data.torch_data import ImageRecordDataset, RecordLoader

    check_loader_settings(batch_size, workers)
    workers = default_encode_workers(device) if workers is None else workers
    if len(records) <= batch_size:
        workers = 0
    size = image_size or model.config.get("image_size") or 224
    per_image, per_batch = split_eval_transform(size)
    dataset = ImageRecordDataset(
        records, per_image, crop_to_box=crop_to_box, skip_bad_images=skip_bad_images
    )
    loader = RecordLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    chunks: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    done = 0
    start = time.perf_counter()
    channels_last = device.type == "cuda"
    try:
        with torch.inference_mode():
            if progress is not None:
                progress(0, len(records))
            for batch in loader:
                done += len(batch.indices) + len(batch.bad)
                if len(batch.indices):
                    images = batch.images.to(device, non_blocking=True)
                    if per_batch is not None:
                        images = per_batch(images)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with autocast(device):
                        outputs = model(images)
                    chunks.append(pack_binary((outputs.float() >= 0).cpu().numpy()))
                    rows.append(batch.indices.numpy())
                    labels.append(batch.labels.numpy())
                if progress is not None:
                    progress(done, len(records))
    finally:
        model.train(was_training)
    nbytes = (model.bits + 7) // 8
    return EncodedImages(
        codes=np.concatenate(chunks) if chunks else np.zeros((0, nbytes), np.uint8),
        rows=np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64),
        labels=np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
        bits=model.bits,
        bad_paths=list(dataset.bad_paths),
        seconds=time.perf_counter() - start,
        workers=workers,
    )


def encode_records_sharded(
    model: HashNet,
    records: Sequence[ImageRecord],
    *,
    dist: Distributed,
    device: torch.device,
    image_size: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    skip_bad_images: bool = False,
    crop_to_box: bool = False,
    progress: ProgressFn | None = None,
) -> EncodedImages | None:
    """:func:`encode_records` split over the processes of a torchrun job; a collective call.

    Every process passes the same ``records``. Process r encodes the contiguous shard
    ``hashcli.distributed.shard_range(len(records), r, world_size)``; rank 0 gets the codes
    of all of them, row for row what one process's :func:`encode_records` returns (``rows``
    index ``records``, ``bad_paths`` in input order, ``seconds`` the slowest shard's,
    ``workers`` rank 0's); the other ranks get None. ``progress`` is called on rank 0 only,
    with its own shard's progress scaled to the whole input. An error in any shard (an
    unreadable image without ``skip_bad_images``) is raised on every rank, with its type.
    """
    from hashcli.distributed import shard_range

    total = len(records)
    shard = shard_range(total, dist.rank, dist.world_size)
    scaled: ProgressFn | None = None
    if progress is not None and dist.is_main:
        size = len(shard)

        def scaled(done: int, _shard_total: int) -> None:
            progress(done * total // size if size else 0, total)

    outcome: tuple[str, Any]
    try:
        part = encode_records(
            model,
            records[shard.start : shard.stop],
            device=device,
            image_size=image_size,
            batch_size=batch_size,
            workers=workers,
            skip_bad_images=skip_bad_images,
            crop_to_box=crop_to_box,
            progress=scaled,
        )
        outcome = ("ok", None)
    except HashretError as exc:
        part, outcome = None, ("error", (type(exc), str(exc)))
    dist.agree(outcome)  # raises the first failed shard's error on every rank
    assert part is not None
    payload = (part.codes, part.rows + shard.start, part.labels, part.bad_paths, part.seconds)
    parts = dist.gather_object(payload, dst=0)
    if parts is None:
        return None
    if progress is not None:
        progress(total, total)
    return EncodedImages(
        codes=np.concatenate([p[0] for p in parts]),
        rows=np.concatenate([p[1] for p in parts]).astype(np.int64),
        labels=np.concatenate([p[2] for p in parts]).astype(np.int64),
        bits=model.bits,
        bad_paths=[path for p in parts for path in p[3]],
        seconds=max(p[4] for p in parts),
        workers=part.workers,
    )


# --------------------------------------------------------------------------------------------
# hashret encode


@dataclass
class EncodeSummary:
    """What :func:`encode_to_file` did.

    ``encoded`` codes written to ``out``; ``skipped`` the unreadable images left out (with
    ``skip_bad_images``); ``seconds`` and ``images_per_second`` time the encoding pass itself
    (decoding and model, not loading the model or writing the file).
    """

    out: Path
    bits: int
    encoded: int
    skipped: list[str]
    seconds: float
    images_per_second: float
    dataset: str
    split: str | None
    labels: bool
    model_fingerprint: str
    checkpoint: Path
    run: str | None
    device: str
    workers: int
    batch_size: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, ``skipped_count`` beside the list."""
        return {
            "out": str(self.out),
            "bits": self.bits,
            "encoded": self.encoded,
            "skipped_count": len(self.skipped),
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 1),
            "dataset": self.dataset,
            "split": self.split,
            "labels": self.labels,
            "model_fingerprint": self.model_fingerprint,
            "checkpoint": str(self.checkpoint),
            "run": self.run,
            "device": self.device,
            "workers": self.workers,
            "batch_size": self.batch_size,
            "warnings": list(self.warnings),
        }


@dataclass
class _Inputs:
    records: list[ImageRecord]
    dataset: str
    split: str | None
    class_names: list[str] | None  # None: labels unknown (loose images)
    crop_to_box: bool = False
    warnings: list[str] = field(default_factory=list)


def _check_mode(
    images: Sequence[str], list_file: Path | None, dataset: str | None, split: str | None
) -> None:
    loose = bool(images) or list_file is not None
    if dataset is not None and loose:
        raise HashretError(
            "give either a dataset split (--dataset, --split) or image files, folders, globs "
            "or --list, not both"
        )
    if dataset is None and not loose:
        raise HashretError(
            "nothing to encode: name image files, folders or glob patterns, a --list file, "
            "or a dataset split with --dataset and --split"
        )
    if dataset is None and split is not None:
        raise HashretError("--split needs --dataset (loose images have no split)")
    if dataset is not None:
        if split is None:
            raise HashretError(
                f"--dataset {dataset} needs --split: one of {', '.join(ENCODE_SPLITS)}"
            )
        if split not in ENCODE_SPLITS:
            raise HashretError(f"unknown split {split!r}; choose one of {', '.join(ENCODE_SPLITS)}")


def _run_training_settings(run_dir: Path | None, dataset: str) -> dict[str, Any]:
    """The training settings that decide how a dataset is split and read: val_fraction, seed,
    and, for the dataset the run trained on, its data_root and crop_to_box."""
    settings: dict[str, Any] = {"val_fraction": 0.1, "seed": 0}
    if run_dir is None:
        return settings
    from hashcli.runs import read_config

    config = read_config(run_dir)
    train = config.get("train") or {}
    for key in ("val_fraction", "seed"):
        if train.get(key) is not None:
            settings[key] = train[key]
    if train.get("dataset", config.get("dataset")) == dataset:
        settings["data_root"] = train.get("data_root")
        settings["crop_to_box"] = bool(train.get("crop_to_box", False))
    return settings


def _dataset_inputs(
    dataset: str, split: str, data_root: str | Path | None, run_dir: Path | None
) -> _Inputs:
    from hashcli.data import load_dataset

    settings = _run_training_settings(run_dir, dataset)
    root = data_root if data_root is not None else settings.get("data_root")
    crop = bool(settings.get("crop_to_box", False))
    ds = load_dataset(
        dataset, root, val_fraction=settings["val_fraction"], seed=settings["seed"], boxes=crop
    )
    records = list(ds.records) if split == "all" else ds.split(split)
    if not records:
        raise HashretError(
            f"the {dataset} dataset at {ds.root} has no images in the {split} split "
            f"(images per split: {ds.counts()})"
        )
    return _Inputs(records, dataset, split, list(ds.classes), crop, list(ds.warnings))


def _image_inputs(images: Sequence[str], list_file: Path | None) -> _Inputs:
    from hashcli.data.inputs import expand_image_inputs, records_for_paths

    paths = expand_image_inputs(images, list_file)
    return _Inputs(records_for_paths(paths), LOOSE_IMAGES, None, None)


def _output_path(
    out: str | Path | None, run_dir: Path | None, dataset: str | None, split: str | None
) -> Path:
    if out is None:
        if dataset is None:
            raise HashretError(
                "give --out for the code file of loose images (e.g. --out photos.h5)"
            )
        if run_dir is None:
            raise HashretError(
                f"give --out (e.g. --out {dataset}-{split}.h5): the default, "
                "<run>/codes/<dataset>-<split>.h5, needs a model from a run, not a loose "
                "--checkpoint"
            )
        return run_dir / "codes" / f"{dataset}-{split}.h5"
    path = Path(out).expanduser()
    if path.is_dir():
        raise HashretError(f"--out {path} is a folder; name the code file (e.g. {path}/codes.h5)")
    if path.suffix.lower() == ".npz":
        raise HashretError(f"--out {path}: hashret writes HDF5 code files (.h5), not .npz")
    if not path.parent.is_dir():
        raise HashretError(f"cannot write {path}: the folder {path.parent} does not exist")
    return path


def encode_to_file(
    images: Sequence[str] = (),
    *,
    list_file: str | Path | None = None,
    dataset: str | None = None,
    split: str | None = None,
    data_root: str | Path | None = None,
    run: str | Path | None = None,
    checkpoint: str | Path | None = None,
    workdir: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    skip_bad_images: bool = False,
    progress: ProgressFn | None = None,
) -> EncodeSummary:
    """Encode a dataset split or loose images with a trained model into one code file.

    Inputs (exactly one kind):

    - ``dataset`` and ``split`` (train, val, test or all): the dataset read from ``data_root``
      with its validation split carved as the run's training carved it (the run's
      ``val_fraction`` and ``seed``; defaults 0.1 and 0 for a loose checkpoint). When the run
      trained on this dataset, its ``data_root`` (when none is given) and bounding-box cropping
      are used too. Labels and class names go into the file.
    - ``images`` (files, folders searched recursively, glob patterns) and/or ``list_file``
      (one path per line, relative to the list file): labels unknown, the file gets none.

    The model: ``checkpoint`` when given, else the best model of ``run`` (None: the current run
    of ``workdir``). ``out``: default ``<run folder>/codes/<dataset>-<split>.h5`` for a dataset
    split encoded with a run's model; required otherwise. Rows keep the input order; ``paths``
    are stored as read (relative paths stay relative). The file's attributes record
    ``model_fingerprint``, ``backbone``, ``dataset`` (``"images"`` for loose images), ``split``,
    ``created``, ``checkpoint``, ``run`` and ``class_names`` (JSON) where known.

    An unreadable image raises DataError naming it, unless ``skip_bad_images``: then it is left
    out and listed in the summary. Nothing is written when anything fails (the write is
    atomic); bad arguments are reported before the model is loaded.

    Under torchrun (``torchrun --nproc_per_node N -m hashcli encode ...``) every process calls
    this with the same arguments and encodes a contiguous shard of the inputs (on the GPU of
    its LOCAL_RANK, or the CPU); rank 0 gathers the shards in input order and writes the one
    file, equal row for row to a single-process encode (apart from ``created``); the other
    processes write nothing. Every process returns rank 0's summary, or raises the same error.
    The inputs and the checkpoint must be readable by every process (a shared filesystem).
    """
    from hashcli.distributed import distributed_session

    images = list(images)
    list_path = Path(list_file).expanduser() if list_file is not None else None
    _check_mode(images, list_path, dataset, split)
    check_loader_settings(batch_size, workers)  # before the model loads
    with distributed_session(device) as dist:  # torchrun: one shard per process, one file
        return _encode_to_file(
            dist,
            images,
            list_path,
            dataset=dataset,
            split=split,
            data_root=data_root,
            run=run,
            checkpoint=checkpoint,
            workdir=workdir,
            out=out,
            batch_size=batch_size,
            workers=workers,
            skip_bad_images=skip_bad_images,
            progress=progress,
        )


def _encode_to_file(
    dist: Distributed,
    images: list[str],
    list_path: Path | None,
    *,
    dataset: str | None,
    split: str | None,
    data_root: str | Path | None,
    run: str | Path | None,
    checkpoint: str | Path | None,
    workdir: str | Path | None,
    out: str | Path | None,
    batch_size: int,
    workers: int | None,
    skip_bad_images: bool,
    progress: ProgressFn | None,
) -> EncodeSummary:
    """:func:`encode_to_file` once the arguments are checked, in this process's session."""
    from hashcli.model.checkpoint import load_model
    from hashcli.runs import resolve_checkpoint

    torch_device = dist.device
    checkpoint_path, run_dir = resolve_checkpoint(run, checkpoint, workdir)
    target = _output_path(out, run_dir, dataset, split)
    if dataset is not None:
        assert split is not None  # checked by _check_mode
        inputs = _dataset_inputs(dataset, split, data_root, run_dir)
    else:
        inputs = _image_inputs(images, list_path)

    model = load_model(checkpoint_path, torch_device)
    settings: dict[str, Any] = dict(
        device=torch_device,
        batch_size=batch_size,
        workers=workers,
        skip_bad_images=skip_bad_images,
        crop_to_box=inputs.crop_to_box,
        progress=progress,
    )
    try:
        if dist.is_distributed:
            _check_same_inputs(dist, inputs.records)
            encoded = encode_records_sharded(model, inputs.records, dist=dist, **settings)
        else:
            encoded = encode_records(model, inputs.records, **settings)
    except DataError as exc:  # an unreadable image: say how to go on without it
        raise DataError(
            f"{exc}; nothing written (--skip-bad-images leaves unreadable images out)"
        ) from None
    # Rank 0 holds every code and writes the one file; every rank returns its summary.
    return dist.run_on_main(
        lambda: _write_code_file(
            target, model, inputs, encoded, checkpoint_path, run_dir, str(torch_device), batch_size
        )
    )


def _check_same_inputs(dist: Distributed, records: Sequence[ImageRecord]) -> None:
    """HashretError on every rank unless all ranks list the same images in the same order."""
    import hashlib

    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.path}\t{record.label}\n".encode())
    digests = dist.all_gather_object((len(records), digest.hexdigest()))
    if len(set(digests)) > 1:
        raise HashretError(
            "the processes of this torchrun job see different inputs (image counts per rank: "
            f"{[n for n, _ in digests]}); every node must read the same files at the same paths "
            "(a shared filesystem)"
        )


def _write_code_file(
    target: Path,
    model: HashNet,
    inputs: _Inputs,
    encoded: EncodedImages,
    checkpoint_path: Path,
    run_dir: Path | None,
    device: str,
    batch_size: int,
) -> EncodeSummary:
    """Write the code file of ``encoded`` atomically; what was written."""
    from hashcli.codes.store import CodeFile, write_codes

    if len(encoded.rows) == 0:
        raise HashretError(
            f"none of the {len(inputs.records)} images could be read (first: "
            f"{encoded.bad_paths[0] if encoded.bad_paths else '?'}); nothing written"
        )
    kept = [inputs.records[i] for i in encoded.rows]
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    attrs: dict[str, Any] = {
        "model_fingerprint": model.fingerprint(),
        "backbone": model.config.get("backbone"),
        "dataset": inputs.dataset,
        "split": inputs.split,
        "created": created,
        "checkpoint": str(checkpoint_path),
        "run": run_dir.name if run_dir is not None else None,
        "image_size": model.config.get("image_size"),
        "skipped_images": len(encoded.bad_paths),
    }
    if inputs.class_names is not None:
        attrs["class_names"] = json.dumps(inputs.class_names)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_codes(
        target,
        CodeFile(
            codes=encoded.codes,
            bits=model.bits,
            labels=encoded.labels if inputs.class_names is not None else None,
            paths=[str(r.path) for r in kept],
            attrs=attrs,
        ),
    )
    return EncodeSummary(
        out=target,
        bits=model.bits,
        encoded=len(encoded.rows),
        skipped=list(encoded.bad_paths),
        seconds=encoded.seconds,
        images_per_second=encoded.images_per_second,
        dataset=inputs.dataset,
        split=inputs.split,
        labels=inputs.class_names is not None,
        model_fingerprint=attrs["model_fingerprint"],
        checkpoint=checkpoint_path,
        run=attrs["run"],
        device=device,
        workers=encoded.workers,
        batch_size=batch_size,
        warnings=inputs.warnings,
    )
