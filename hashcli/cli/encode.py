"""``hashret encode``: images or a dataset split in, one code file out; one library call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from hashcli.cli._options import (
    DATASET_NAMES,
    DataRootOpt,
    DeviceOpt,
    EngineOpt,
    ImagesArg,
    JsonOpt,
    ListFileOpt,
    QuietOpt,
    RunOpt,
    WorkdirOpt,
)
from hashcli.cli._output import Output

SPLITS = ("train", "val", "test", "database", "all")


def _complete(names: tuple[str, ...]) -> Callable[[str], list[str]]:
    return lambda incomplete: [name for name in names if name.startswith(incomplete)]


@contextmanager
def _progress(out: Output) -> Iterator[Callable[[int, int], None]]:
    """A bar with images/s on stderr (off with --quiet or when stderr is not a terminal).

    The bar appears when encoding starts, so that loading the model and the dataset does not
    count towards the rate.
    """
    from rich.progress import TextColumn

    with out.progress(TextColumn("{task.fields[rate]}")) as progress:
        task = None
        start = 0.0

        def update(done: int, total: int) -> None:
            nonlocal task, start
            if task is None:  # progress(0, total) comes first, when encoding starts
                task = progress.add_task("encoding", total=total, rate="")
                start = time.perf_counter()
            elapsed = time.perf_counter() - start
            rate = f"{done / elapsed:,.0f} images/s" if elapsed > 0 else ""
            progress.update(task, completed=done, total=total, rate=rate)

        yield update


def encode_command(
    images: ImagesArg = None,
    list_file: ListFileOpt = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Encode a dataset split instead: cub, dogs, folder, digits or a cifar10 protocol.",
            autocompletion=_complete(DATASET_NAMES),
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="With --dataset: train, val, test, database (what a run searches: the train "
            "split, or a cifar10 protocol's database) or all (val is carved as the run's "
            "training carved it).",
            autocompletion=_complete(SPLITS),
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOpt = None,
    run: RunOpt = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Use this model checkpoint instead of a run's model.pt.",
            show_default=False,
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Code file to write (.h5). Default for a dataset split encoded with a run's "
            "model: <run>/codes/<dataset>-<split>.h5; required otherwise.",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "torch",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 128,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Image-decoding worker processes (default: 0 on the CPU, where the model "
            "already uses every core; half the cores with CUDA).",
            show_default=False,
        ),
    ] = None,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Leave out unreadable images (listed) instead of failing.")
    ] = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode images, or a dataset split, into a code file with a trained model.

    The model is the best one of a run (--run, default the current run) or --checkpoint.
    Rows keep the input order; the file records the paths, the labels (dataset splits only)
    and the model's fingerprint, so later steps can refuse codes from another model. The
    file is written atomically: nothing is written when an image cannot be read (unless
    --skip-bad-images) or anything else fails.

    --engine onnx (or auto) encodes image files with the run's model.onnx on ONNX Runtime,
    torch never imported, the same codes; the default, torch, decodes in parallel worker
    processes and runs on GPUs, which large jobs want. Dataset splits always use torch.

    Examples:

        hashret encode --dataset digits --split test --out test.h5

        hashret encode photos/ 'more/**/*.jpg' --out photos.h5

        hashret encode --list images.txt --checkpoint model.pt --out codes.h5 --json
    """
    if dataset is not None and (images or list_file is not None):
        raise typer.BadParameter(
            "give either image paths / --list or --dataset with --split, not both",
            param_hint="IMAGES / '--dataset'",
        )
    if dataset is None and not images and list_file is None:
        raise typer.BadParameter(
            "nothing to encode: name image files, folders or globs, a --list file, or a "
            "dataset split with --dataset and --split",
            param_hint="IMAGES",
        )
    if dataset is not None and split is None:
        raise typer.BadParameter(
            f"--dataset needs --split: one of {', '.join(SPLITS)}", param_hint="'--split'"
        )
    if dataset is None and split is not None:
        raise typer.BadParameter("--split needs --dataset", param_hint="'--split'")
    if split is not None and split not in SPLITS:
        raise typer.BadParameter(
            f"{split!r} is not one of {', '.join(SPLITS)}", param_hint="'--split'"
        )
    if run is not None and checkpoint is not None:
        raise typer.BadParameter(
            "give --run or --checkpoint, not both", param_hint="'--run' / '--checkpoint'"
        )

    from hashcli.runtime.distributed import is_main_process

    if not is_main_process():  # under torchrun only rank 0 talks
        quiet, json_output = True, False
    from hashcli.workflows.encode import encode_to_file

    out = Output(quiet=quiet)
    with _progress(out) as progress:
        summary = encode_to_file(
            images or (),
            list_file=list_file,
            dataset=dataset,
            split=split,
            data_root=data_root,
            run=run,
            checkpoint=checkpoint,
            workdir=workdir,
            out=out_path,
            device=device,
            engine=engine,
            batch_size=batch_size,
            workers=workers,
            skip_bad_images=skip_bad_images,
            progress=progress,
        )

    for warning in summary.warnings:
        out.warning(warning)
    if summary.skipped:
        out.say(f"Skipped {len(summary.skipped)} unreadable image(s):")
        for path in summary.skipped:
            out.say(f"  {path}")
    out.say(
        f"Wrote {summary.out} ({summary.encoded:,} codes of {summary.bits} bits, "
        f"{summary.images_per_second:,.0f} images/s)"
    )
    if json_output:
        out.json(summary.to_dict())
