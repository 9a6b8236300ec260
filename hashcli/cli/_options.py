"""Shared option types, as ``Annotated`` aliases, so one option means one thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hashcli.paths import DATA_ENV, WORKDIR_ENV

DATASET_NAMES = ("cub", "dogs", "folder", "digits")


def _complete_dataset(incomplete: str) -> list[str]:
    return [name for name in DATASET_NAMES if name.startswith(incomplete)]


DatasetArg = Annotated[
    str,
    typer.Argument(
        help="Dataset: cub, dogs, folder (any <root>/<class>/<image> tree) or digits (built in).",
        autocompletion=_complete_dataset,
        show_default=False,
    ),
]
DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="Dataset: cub, dogs, folder or digits (built in).",
        autocompletion=_complete_dataset,
    ),
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help=f"Where the datasets live (default: ${DATA_ENV}, else ./data).",
        show_default=False,
    ),
]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option(
        "--workdir",
        help=f"Folder holding the runs (default: ${WORKDIR_ENV}, else ./runs).",
        show_default=False,
    ),
]
RunOpt = Annotated[
    str | None,
    typer.Option("--run", help="Run name (in the workdir) or path (default: the latest run)."),
]
BitsOpt = Annotated[
    int, typer.Option("--bits", "-b", help="Code length in bits: a multiple of 8 from 8 to 1024.")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars or status lines on stderr.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
TopOpt = Annotated[int, typer.Option("--top", "-k", help="Number of results per query.")]


def _prefix(names, incomplete: str) -> list[str]:
    return [name for name in names if name.startswith(incomplete)]


def complete_backbone(incomplete: str) -> list[str]:
    from hashcli.model.names import BACKBONE_NAMES

    return _prefix(BACKBONE_NAMES, incomplete)


def complete_miner(incomplete: str) -> list[str]:
    from hashcli.train.names import MINER_NAMES

    return _prefix(MINER_NAMES, incomplete)


def complete_schedule(incomplete: str) -> list[str]:
    from hashcli.train.names import SCHEDULE_NAMES

    return _prefix(SCHEDULE_NAMES, incomplete)
