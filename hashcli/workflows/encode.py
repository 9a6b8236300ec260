"""``hashret encode``: a run's model (or a checkpoint), a dataset split or loose image files,
one code file written atomically, a summary back (:func:`encode_to_file`).

Under torchrun every process encodes a contiguous shard (:func:`hashcli.model.inference.
encode_records_sharded`) and rank 0 writes the one file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashcli.data.records import ImageRecord
from hashcli.errors import DataError, HashretError

# torch-free: with the ONNX engine this workflow never imports torch (the torch engine's
# functions, hashcli.model.inference, load inside encode_to_file)
from hashcli.model.encoded import (
    DEFAULT_BATCH_SIZE,
    EncodedImages,
    ProgressFn,
    check_loader_settings,
)
from hashcli.workflows.artefacts import LOOSE_IMAGES

if TYPE_CHECKING:
    from hashcli.model.hashnet import HashNet
    from hashcli.model.onnx_engine import OnnxEncoder
    from hashcli.runtime.distributed import Distributed

#: The splits ``encode_to_file`` accepts; "all" is every record of the dataset, in reader order.
ENCODE_SPLITS = ("train", "val", "test", "database", "all")


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
    num_classes: int | None = None  # multi-label datasets: the multi-hot width


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
    and, for the dataset the run trained on, its data_root and crop_to_box (a loose
    checkpoint: the training defaults)."""
    from hashcli.train.config import TrainConfig
    from hashcli.workflows.runs import RunDir

    train = RunDir(run_dir).train_config() if run_dir is not None else TrainConfig()
    settings: dict[str, Any] = {"val_fraction": train.val_fraction, "seed": train.seed}
    if run_dir is not None and train.dataset == dataset:
        settings["data_root"] = train.data_root
        settings["crop_to_box"] = train.crop_to_box
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
    # "database" is the role (the train split, or the protocol's database for CIFAR-10)
    records = list(ds.records) if split == "all" else ds.role(split)
    if not records:
        raise HashretError(
            f"the {dataset} dataset at {ds.root} has no images in the {split} split "
            f"(images per split: {ds.counts()})"
        )
    multi_hot = ds.num_classes if ds.multi_label else None
    return _Inputs(records, dataset, split, list(ds.classes), crop, list(ds.warnings), multi_hot)


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
    engine: str = "torch",
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

    ``engine``: torch (the default: parallel decoding, GPUs, torchrun), or for loose images
    onnx / auto as ``hashret query`` takes them (the run's model.onnx on ONNX Runtime, decoded
    in this process, torch never imported; the same codes). Dataset splits always use torch.
    """
    from hashcli.workflows.runs import resolve_checkpoint

    images = list(images)
    list_path = Path(list_file).expanduser() if list_file is not None else None
    _check_mode(images, list_path, dataset, split)
    check_loader_settings(batch_size, workers)  # before the model loads
    if engine != "torch":
        from hashcli.workflows.export import choose_engine

        if dataset is not None:
            if engine == "onnx":
                raise HashretError(
                    "--engine onnx encodes image files; dataset splits use torch (their boxes, "
                    "labels, workers and GPUs)"
                )
        else:
            checkpoint_path, run_dir = resolve_checkpoint(run, checkpoint, workdir)
            choice = choose_engine(engine, checkpoint_path, run_dir, device)
            if choice.encoder is not None:
                target = _output_path(out, run_dir, dataset, split)
                inputs = _image_inputs(images, list_path)
                encoded = choice.encoder.encode_records(
                    inputs.records,
                    batch_size=batch_size,
                    skip_bad_images=skip_bad_images,
                    progress=progress,
                )
                summary = _write_code_file(
                    target,
                    choice.encoder,
                    inputs,
                    encoded,
                    checkpoint_path,
                    run_dir,
                    choice.encoder.device,
                    batch_size,
                )
                summary.warnings.extend([choice.note] if choice.note else [])
                return summary
    from hashcli.model.checkpoint import load_model
    from hashcli.model.inference import encode_records, encode_records_sharded
    from hashcli.runtime.distributed import distributed_session

    with distributed_session(device) as dist:  # torchrun: one shard per process, one file
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
            num_classes=inputs.num_classes,
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
                target,
                model,
                inputs,
                encoded,
                checkpoint_path,
                run_dir,
                str(torch_device),
                batch_size,
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
    model: HashNet | OnnxEncoder,
    inputs: _Inputs,
    encoded: EncodedImages,
    checkpoint_path: Path,
    run_dir: Path | None,
    device: str,
    batch_size: int,
) -> EncodeSummary:
    """Write the code file of ``encoded`` atomically (holding the lock of the run it goes
    into, if any); what was written."""
    from hashcli.workflows.artefacts import write_code_file
    from hashcli.workflows.runs import RunDir, run_of

    target_run = run_of(target)
    with target_run.lock() if target_run is not None else contextlib.nullcontext():
        written = write_code_file(
            target,
            encoded,
            inputs.records,
            model=model,
            dataset=inputs.dataset,
            split=inputs.split,
            class_names=inputs.class_names,
            checkpoint=checkpoint_path,
            run=RunDir(run_dir) if run_dir is not None else None,
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
        model_fingerprint=written.attrs["model_fingerprint"],
        checkpoint=checkpoint_path,
        run=written.attrs.get("run"),
        device=device,
        workers=encoded.workers,
        batch_size=batch_size,
        warnings=inputs.warnings,
    )
