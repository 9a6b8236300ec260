"""Encoded images and the settings of an encoding pass: shared by the torch engine
(:mod:`hashcli.model.inference`) and the ONNX engine (:mod:`hashcli.model.onnx_engine`), and
free of torch, so that the ONNX path never imports it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hashcli.errors import HashretError

#: progress(done_images, total_images)
ProgressFn = Callable[[int, int], None]

DEFAULT_BATCH_SIZE = 128


@dataclass
class EncodedImages:
    """Codes of the images that could be read, in input order.

    ``codes`` uint8 (N, bits/8) packed most-significant bit first (bit = output >= 0);
    ``rows`` int64 (N,) positions of the encoded images in the input; ``labels`` int64 (N,),
    or bool (N, C) multi-hot;
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


def check_loader_settings(batch_size: int, workers: int | None) -> None:
    """HashretError for a batch size below 1 or a negative worker count (None: automatic)."""
    if batch_size < 1:
        raise HashretError(f"the batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise HashretError(f"the number of workers must be 0 or more, got {workers}")
