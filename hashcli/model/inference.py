"""Images in, binary codes out: batched, parallel decoding, the model's eval transform.

:func:`encode_records` gives the codes of a list of records with a model already in memory
(training's validation and final codes, ``hashret encode``, ``hashret query``). Under torchrun,
:func:`encode_records_sharded` splits it over the processes (one contiguous shard each,
gathered in input order on rank 0). Reading run folders and writing code files is the
workflows' job (``hashret encode``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hashcli.codes.bits import pack_binary
from hashcli.data.records import ImageRecord
from hashcli.errors import HashretError
from hashcli.model.encoded import (
    DEFAULT_BATCH_SIZE,
    EncodedImages,
    ProgressFn,
    check_loader_settings,
)
from hashcli.model.hashnet import HashNet

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "EncodedImages",
    "ProgressFn",
    "check_loader_settings",
    "default_encode_workers",
    "encode_records",
    "encode_records_sharded",
    "split_eval_transform",
]

if TYPE_CHECKING:
    from hashcli.runtime.distributed import Distributed


def default_encode_workers(device: torch.device) -> int:
    """Decoding worker processes for encoding on ``device`` when none are asked for: see
    :func:`hashcli.runtime.device.default_workers` (measured in ``benchmarks/bench_encode.py``)."""
    from hashcli.runtime.device import default_workers

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
    num_classes: int | None = None,
) -> EncodedImages:
    """Encode ``records`` with ``model`` (put in eval mode for the pass) on ``device``.

    Images are decoded and transformed (:func:`hashcli.data.transforms.eval_transform` at
    ``image_size``, default the model's, applied as :func:`split_eval_transform` describes) by
    ``workers`` DataLoader processes (None:
    :func:`default_encode_workers`; 0: in this process; a single batch is always decoded here,
    since starting a worker would cost more than it saves). ``progress(done, total)`` is called
    with ``done = 0`` when decoding starts, then after every batch (unreadable images included in
    ``done``).

    The forward pass runs in float32 on every device (autocast off), so that the same image
    gets the same code on a GPU and on a CPU.

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
        records,
        per_image,
        crop_to_box=crop_to_box,
        skip_bad_images=skip_bad_images,
        num_classes=num_classes,
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
                    # fp32 on every device, even inside a caller's autocast: a code is a sign,
                    # and bf16 flips bits near 0 (measured on the CUB subset, resnet18: 0.04%
                    # of bits, the code of 2% of images), so a database encoded on a GPU would
                    # disagree with queries encoded on a CPU. bf16 is for training only.
                    with torch.autocast(device.type, enabled=False):
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
        labels=_labels(labels),
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
    progress: ProgressFn | None = None,
    **settings: Any,
) -> EncodedImages | None:
    """:func:`encode_records` split over the processes of a torchrun job; a collective call.

    Every process passes the same ``records``. Process r encodes the contiguous shard
    ``hashcli.runtime.distributed.shard_range(len(records), r, world_size)``; rank 0 gets
    the codes of all of them, row for row what one process's :func:`encode_records` returns
    (``rows`` index ``records``, ``bad_paths`` in input order, ``seconds`` the slowest
    shard's, ``workers`` rank 0's); the other ranks get None. ``progress`` is called on rank 0 only,
    with its own shard's progress scaled to the whole input. An error in any shard (an
    unreadable image without ``skip_bad_images``) is raised on every rank, with its type.
    ``settings`` are :func:`encode_records`'s keywords (device, image_size, batch_size...).
    """
    from hashcli.runtime.distributed import shard_range

    total = len(records)
    shard = shard_range(total, dist.rank, dist.world_size)
    scaled: ProgressFn | None = None
    if progress is not None and dist.is_main:
        size = len(shard)

        def scaled(done: int, _shard_total: int) -> None:
            progress(done * total // size if size else 0, total)

    outcome: tuple[str, Any]
    try:
        part = encode_records(model, records[shard.start : shard.stop], progress=scaled, **settings)
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
        labels=_labels([p[2] for p in parts]),
        bits=model.bits,
        bad_paths=[path for p in parts for path in p[3]],
        seconds=max(p[4] for p in parts),
        workers=part.workers,
    )


def _labels(parts: list[np.ndarray]) -> np.ndarray:
    """The batches' labels as one array: int64 (N,), or bool (N, C) multi-hot rows."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros(0, np.int64)
    labels = np.concatenate(parts)
    return labels.astype(np.bool_) if labels.ndim == 2 else labels.astype(np.int64)
