"""Images in, binary codes out: batched, parallel decoding, the model's eval transform."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hashcli.data.records import ImageRecord
from hashcli.model.device import autocast
from hashcli.model.hashnet import HashNet

#: progress(done_images, total_images)
ProgressFn = Callable[[int, int], None]


@dataclass
class EncodedImages:
    """Codes of the images that could be read, in input order.

    ``codes`` uint8 (N, bits/8) packed most-significant bit first (bit = output >= 0);
    ``rows`` int64 (N,) positions of the encoded images in the input; ``labels`` int64 (N,);
    ``bad_paths`` the inputs skipped as unreadable (``skip_bad_images``).
    """

    codes: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    bits: int
    bad_paths: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.rows) / self.seconds if self.seconds > 0 else 0.0


def encode_records(
    model: HashNet,
    records: Sequence[ImageRecord],
    *,
    device: torch.device,
    image_size: int | None = None,
    batch_size: int = 128,
    workers: int = 0,
    skip_bad_images: bool = False,
    crop_to_box: bool = False,
    progress: ProgressFn | None = None,
) -> EncodedImages:
    """Encode ``records`` with ``model`` (put in eval mode) on ``device``.

    Raises DataError naming the first unreadable image unless ``skip_bad_images``.
    """
    from hashcli.data.torch_data import ImageRecordDataset, RecordLoader
    from hashcli.data.transforms import eval_transform

    size = image_size or model.config.get("image_size") or 224
    dataset = ImageRecordDataset(
        records, eval_transform(size), crop_to_box=crop_to_box, skip_bad_images=skip_bad_images
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
            for batch in loader:
                done += len(batch.indices) + len(batch.bad)
                if len(batch.indices):
                    images = batch.images.to(device, non_blocking=True)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with autocast(device):
                        outputs = model(images)
                    bits = (outputs.float() >= 0).cpu().numpy()
                    chunks.append(np.packbits(bits, axis=1))
                    rows.append(batch.indices.numpy())
                    labels.append(batch.labels.numpy())
                if progress is not None:
                    progress(done, len(records))
    finally:
        model.train(was_training)
    nbytes = model.bits // 8
    return EncodedImages(
        codes=np.concatenate(chunks) if chunks else np.zeros((0, nbytes), np.uint8),
        rows=np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64),
        labels=np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
        bits=model.bits,
        bad_paths=list(dataset.bad_paths),
        seconds=time.perf_counter() - start,
    )
