"""``hashret data``: inspect, check and download datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hashcli.cli._options import DataRootOpt, DatasetArg, JsonOpt, QuietOpt, SeedOpt
from hashcli.cli._output import Output
from hashcli.errors import DataError, HashretError

app = typer.Typer(help="Inspect, check and download datasets.", no_args_is_help=True)

ValFractionOpt = Annotated[
    float,
    typer.Option("--val-fraction", help="Share of each class's train images held out as val."),
]


@app.command("info")
def info(
    dataset: DatasetArg,
    data_root: DataRootOpt = None,
    val_fraction: ValFractionOpt = 0.1,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show where a dataset is, its classes and its images per split and role.

    Val is carved from the train split (stratified, seeded): train + val = the train split. The
    database is what a run searches: the train split, or for CIFAR-10 its protocol's database.

    Example: hashret data info cub --data-root ~/datasets
    """
    from hashcli.data import load_dataset

    out = Output(quiet=quiet)
    ds = load_dataset(dataset, data_root, val_fraction=val_fraction, seed=seed)
    counts = ds.counts()
    summary = {
        "dataset": ds.name,
        "root": str(ds.root),
        "classes": ds.num_classes,
        "images": counts,
        "splits": ds.role_counts(),
        "database_splits": list(ds.database_splits),
        "multi_label": ds.multi_label,
        "train_total": counts["train"] + counts["val"],
        "val_fraction": val_fraction,
        "seed": seed,
        "image_size": ds.image_size,
        "hflip": ds.hflip,
        "boxes": ds.has_boxes,
        "class_names": ds.classes,
        "warnings": ds.warnings,
    }
    if as_json:
        out.json(summary)
        return
    for warning in ds.warnings:
        out.warning(warning)
    train_total = counts["train"] + counts["val"]
    lines = [
        f"dataset  {ds.name}",
        f"root     {ds.root}",
        f"classes  {ds.num_classes}{' (multi-label)' if ds.multi_label else ''}",
        f"train    {train_total:,} (train {counts['train']:,} + val {counts['val']:,}; "
        f"val = {val_fraction:.0%} of each class, seed {seed})",
        f"database {len(ds.role('database')):,} ({' + '.join(ds.database_splits)})",
        f"test     {counts['test']:,} (the queries)",
        f"boxes    {'yes' if ds.has_boxes else 'no'}",
        f"size     {ds.image_size} px, horizontal flips {'on' if ds.hflip else 'off'}",
    ]
    out.result("\n".join(lines))


@app.command("check")
def check(
    dataset: DatasetArg,
    data_root: DataRootOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Decoding threads (default: one per CPU, at most 8).")
    ] = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode every image of a dataset; list the files that fail (exit status 1 if any).

    Example: hashret data check folder --data-root ./my_photos
    """
    from hashcli.data import load_dataset
    from hashcli.data.images import find_unreadable

    out = Output(quiet=quiet)
    ds = load_dataset(dataset, data_root)
    if not as_json:
        for warning in ds.warnings:
            out.warning(warning)
    paths = [r.path for r in ds.records]
    with out.progress_bar(f"decoding {ds.name}", total=len(paths)) as progress:
        failures = find_unreadable(paths, workers=workers or None, progress=progress)
    if as_json:
        report = {
            "dataset": ds.name,
            "root": str(ds.root),
            "images": len(paths),
            "failed": [{"path": str(p), "reason": reason} for p, reason in failures],
        }
        out.json(report)
    else:
        for _, reason in failures:
            out.result(f"  {reason}")
        if not failures:
            out.say(f"all {len(paths):,} images of {ds.name} decode")
    if failures:
        raise DataError(f"{len(failures):,} of {len(paths):,} images of {ds.name} cannot be read")


@app.command("download")
def download(
    dataset: Annotated[
        str,
        typer.Argument(
            help="cub, dogs or cifar10 (the archive all three cifar10 protocols read).",
            show_default=False,
            metavar="cub|dogs|cifar10",
        ),
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", help="Folder to put it in (default: the data root).", show_default=False
        ),
    ] = None,
    keep_archives: Annotated[
        bool, typer.Option("--keep-archives", help="Keep the downloaded archives.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Download the official archives, verify their checksums and extract them.

    Resumable: after an interruption, run it again.

    Offline: put the archives in the --to folder by hand and run it to verify and extract them.

    Example: hashret data download cub --to ~/datasets
    """
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

    from hashcli.data import resolve_data_root
    from hashcli.data.download import DOWNLOADS, download_dataset

    if dataset not in DOWNLOADS:
        raise HashretError(f"cannot download {dataset!r}: choose one of {', '.join(DOWNLOADS)}")
    out = Output(quiet=quiet)
    destination = resolve_data_root(to)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with out.progress_bar(f"downloading {dataset}", columns=columns) as progress:
        folder = download_dataset(
            dataset, destination, keep_archives=keep_archives, progress=progress
        )
    out.say(f"{dataset} is ready in {folder} (use --data-root {destination})")
