"""Encoding benchmark: ``encode_records`` (files -> codes) against a forward-only loop.

    python benchmarks/bench_encode.py            # 1024 digits at 32 px, 256 CUB images at 224 px
    python benchmarks/bench_encode.py --quick    # 256 digits, 128 CUB images, one round

Two configurations, each with a randomly initialised model (the weights do not change the cost):

* ``tiny`` at 32 px on the built-in digits (extracted into a temporary data root);
* ``resnet18`` at 224 px on the real CUB subset ``../shared/data/cub25`` (skipped when absent).

For each, the same images are timed side by side in one run (the machine is shared and noisy):

* **forward only**: the images decoded and transformed beforehand, held in memory as one
  tensor, pushed through the model in batches (the sign and the bit packing included): the
  ceiling for encoding;
* **encode_records** with 0, 1 and 2 decoding worker processes, the model on torch's default
  threads (one per core), and with 1 worker while the model gets the one core left to it
  (``torch.set_num_threads(1)``): the alternative to sharing the cores.

Batches of 64 images, so that even the CUB run has several batches for workers to overlap.

Each row is the best of ``--rounds`` passes (rounds interleave the variants, so a burst of load
from another process hits all of them alike). Prints markdown tables on stdout, progress on
stderr. The ratio is encode images/s over forward-only images/s; the target is >= 0.7.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch
from _common import (
    digits_and_cub,
    log,
    print_rate_table,
    rate_rows,
    start,
)

from hashcli.codes.bits import pack_binary
from hashcli.data.images import load_image
from hashcli.data.records import ImageRecord
from hashcli.data.transforms import eval_transform
from hashcli.model.factory import create_model
from hashcli.model.inference import encode_records

BATCH_SIZE = 64
BITS = 48


def preload(records: list[ImageRecord], image_size: int) -> torch.Tensor:
    transform = eval_transform(image_size)
    return torch.stack([transform(load_image(r.path)) for r in records])


def forward_only(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> float:
    """Seconds to push in-memory ``images`` through ``model`` and pack the signs."""
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            outputs = model(images[i : i + batch_size])
            pack_binary((outputs >= 0).numpy())
    return time.perf_counter() - start


@contextlib.contextmanager
def torch_threads(count: int):
    # No try/finally: an exception ends the benchmark anyway.
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    yield
    torch.set_num_threads(saved)


def bench_config(
    name: str,
    backbone: str,
    image_size: int,
    records: list[ImageRecord],
    rounds: int,
) -> list[tuple[str, float, float]]:
    """[(variant, images/s, ratio to forward only)] for one model and image set."""
    torch.manual_seed(0)
    model = create_model(backbone, BITS, pretrained=False, image_size=image_size).eval()
    device = torch.device("cpu")
    log(f"{name}: preloading {len(records)} images")
    images = preload(records, image_size)
    n = len(records)

    def run_encode(workers: int, threads: int | None = None) -> float:
        context = contextlib.nullcontext() if threads is None else torch_threads(threads)
        with context:
            start = time.perf_counter()
            result = encode_records(
                model, records, device=device, batch_size=BATCH_SIZE, workers=workers
            )
            seconds = time.perf_counter() - start
        assert len(result.rows) == n
        return seconds

    variants: dict[str, Callable[[], float]] = {
        "forward only (in-memory tensors)": lambda: forward_only(model, images, BATCH_SIZE),
        "encode_records, workers=0 (the CPU default)": lambda: run_encode(0),
        "encode_records, workers=1": lambda: run_encode(1),
        "encode_records, workers=2": lambda: run_encode(2),
        "encode_records, workers=1, model on 1 thread": lambda: run_encode(1, threads=1),
    }
    forward_only(model, images[:BATCH_SIZE], BATCH_SIZE)  # warm up allocator and kernels
    return rate_rows(variants, n, rounds)


def main() -> None:
    args = start(__doc__, "fewer images, 1 round", f"batch size {BATCH_SIZE}, {BITS} bits")
    rounds, (n_digits, n_cub) = args.rounds, ((256, 128) if args.quick else (1024, 256))
    with digits_and_cub(args.cub, "bench-encode-") as (digits, cub):
        records = digits.records[:n_digits]
        print_rate_table(
            f"tiny @ 32 px, {len(records)} digits (8x8 PNG)",
            bench_config("tiny@32", "tiny", 32, records, rounds),
            "forward only",
        )
        if cub is not None:
            rng = np.random.default_rng(0)
            picked = sorted(rng.choice(len(cub.records), size=n_cub, replace=False))
            records = [cub.records[i] for i in picked]
            print_rate_table(
                f"resnet18 @ 224 px, {len(records)} CUB images (JPEG, shorter side 256)",
                bench_config("resnet18@224", "resnet18", 224, records, rounds),
                "forward only",
            )


if __name__ == "__main__":
    main()
