"""Training benchmark: images/s of a training step through the real input pipeline and without it.

    python benchmarks/bench_train.py            # tiny @ 32 px on digits, resnet18 @ 224 px on CUB
    python benchmarks/bench_train.py --quick    # fewer steps, for a smoke test

A step is what ``hashret train`` does per batch: forward, triplet loss (batch-all mining, margin
bits/4), backward, Adam step. Two configurations, each with a randomly initialised model:

* ``tiny`` at 32 px on the built-in digits (extracted into a temporary data root), P x K =
  10 x 4 (the digits have 10 classes);
* ``resnet18`` at 224 px on the real CUB subset ``../shared/data/cub25`` (skipped when absent),
  P x K = 8 x 4 (a small batch so that the run stays short on 2 cores).

Side by side in one run (the machine is shared and noisy), the same steps:

* **in-memory tensors**: the train split decoded and augmented once beforehand, batches picked
  with the same P x K sampler: the ceiling (no decoding, no augmentation);
* **RecordLoader + PKSampler** with 0, 1 and 2 worker processes: the path ``hashret train``
  takes (train transform with random crop and flip, persistent workers).

Each variant takes a warm-up step (untimed: worker start-up, first-call kernel selection), then
``--steps`` timed steps; rounds interleave the variants and the best round counts. Prints
markdown tables on stdout, progress on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch
from _common import (
    digits_and_cub,
    log,
    print_rate_table,
    rate_rows,
    start,
)

from hashcli.data.images import load_image
from hashcli.data.records import ImageDataset
from hashcli.data.torch_data import ImageRecordDataset, RecordLoader
from hashcli.data.transforms import train_transform
from hashcli.model.factory import create_model
from hashcli.train.losses import build_loss
from hashcli.train.sampler import PKSampler
from hashcli.train.schedule import build_optimizer

BITS = 48
K = 4


def bench_config(
    name: str,
    backbone: str,
    image_size: int,
    dataset: ImageDataset,
    p: int,
    steps: int,
    rounds: int,
) -> tuple[int, list[tuple[str, float, float]]]:
    """(batch size, [(variant, images/s, ratio to in-memory)]) for one model and dataset."""
    records = dataset.split("train")
    labels = [r.label for r in records]
    transform = train_transform(image_size, hflip=dataset.hflip)
    torch.manual_seed(0)
    model = create_model(backbone, BITS, pretrained=False, image_size=image_size)
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    loss_fn = build_loss("triplet", bits=BITS, miner="batch-all")
    sampler = PKSampler(labels, p, K, seed=0)
    needed = (steps + 1) * sampler.batch_size
    if sampler.num_batches < steps + 1:
        raise SystemExit(f"{name}: the train split has too few images for {steps + 1} batches")

    # The in-memory variant sees exactly the images of the first batches of epoch 0.
    batches = sampler.epoch_batches(0)[: steps + 1]
    used = sorted({int(i) for batch in batches for i in batch})
    log(f"{name}: preloading {len(used)} augmented images ({needed} per variant)")
    memory = {i: transform(load_image(records[i].path)) for i in used}
    label_tensor = torch.tensor(labels)

    def in_memory() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in batches:
            yield torch.stack([memory[int(i)] for i in batch]), label_tensor[batch]

    def through_loader(workers: int) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        def batches_of_loader() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            loader_sampler = PKSampler(labels, p, K, seed=0)
            dataset_view = ImageRecordDataset(records, transform)
            loader = RecordLoader(
                dataset_view,
                batch_sampler=loader_sampler,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            for i, batch in enumerate(loader):
                if i > steps:
                    break
                yield batch.images, batch.labels

        return batches_of_loader

    def run(source: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]) -> float:
        """Seconds of ``steps`` training steps after one warm-up step."""
        model.load_state_dict(initial)
        model.train()
        optimizer = build_optimizer(model, 1e-4)
        start = 0.0
        for i, (images, batch_labels) in enumerate(source()):
            if i == 1:
                start = time.perf_counter()
            loss = loss_fn(model(images), batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    variants: dict[str, Callable[[], float]] = {
        "in-memory tensors": lambda: run(in_memory),
        "RecordLoader + PKSampler, workers=0": lambda: run(through_loader(0)),
        "RecordLoader + PKSampler, workers=1": lambda: run(through_loader(1)),
        "RecordLoader + PKSampler, workers=2": lambda: run(through_loader(2)),
    }
    return sampler.batch_size, rate_rows(variants, steps * sampler.batch_size, rounds, 1)


def main() -> None:
    args = start(__doc__, "fewer steps, 1 round", f"{BITS} bits, triplet batch-all, Adam")
    rounds, (tiny_steps, resnet_steps) = args.rounds, ((4, 1) if args.quick else (12, 2))
    with digits_and_cub(args.cub, "bench-train-") as (digits, cub):
        batch, rows = bench_config("tiny@32", "tiny", 32, digits, 10, tiny_steps, rounds)
        print_rate_table(
            f"tiny @ 32 px, digits, batch {batch}, {tiny_steps} steps", rows, "in-memory", 1
        )
        if cub is not None:
            batch, rows = bench_config(
                "resnet18@224", "resnet18", 224, cub, 8, resnet_steps, rounds
            )
            title = f"resnet18 @ 224 px, CUB (JPEG), batch {batch}, {resnet_steps} steps"
            print_rate_table(title, rows, "in-memory", 1)


if __name__ == "__main__":
    main()
