"""Shared option types, as ``Annotated`` aliases, so one option means one thing everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hashcli.paths import DATA_ENV, WORKDIR_ENV

# hashcli.data.DATASET_NAMES, repeated so that --help and completion import no reader (a test
# keeps the two equal).
DATASET_NAMES = (
    "cub",
    "dogs",
    "folder",
    "digits",
    "cifar10",
    "cifar10-1",
    "cifar10-2",
    "lists",
)


def _complete_dataset(incomplete: str) -> list[str]:
    return [name for name in DATASET_NAMES if name.startswith(incomplete)]


DatasetArg = Annotated[
    str,
    typer.Argument(
        help=(
            "Dataset: cub, dogs, folder (any <root>/<class>/<image> tree), digits (built in), "
            "cifar10, cifar10-1, cifar10-2 (CIFAR-10 split by one of the field's protocols), or "
            "lists (train.txt, test.txt, database.txt: HashNet's list files)."
        ),
        autocompletion=_complete_dataset,
        show_default=False,
    ),
]
DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="Dataset: cub, dogs, folder, digits (built in), cifar10, cifar10-1, cifar10-2 or "
        "lists.",
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


def _typed_workdir(ctx: typer.Context) -> Path:
    """The ``--workdir`` already typed on the command line (this command or a parent group),
    else ``$HASHRET_WORKDIR``, else ``./runs``."""
    from hashcli.workflows.runs import resolve_workdir

    while ctx is not None:
        value = ctx.params.get("workdir")
        if value:
            return resolve_workdir(Path(value).expanduser())
        ctx = ctx.parent
    return resolve_workdir(None)


def complete_run(ctx: typer.Context, incomplete: str) -> list[str | tuple[str, str]]:
    """Run names of the workdir: folder names holding a config.json (no file is parsed, so a
    TAB stays instant however large the runs are); the current run says so in zsh and fish."""
    from hashcli.workflows.runs import CONFIG_FILE, current_run_name

    workdir = _typed_workdir(ctx)
    try:
        entries = sorted(os.scandir(workdir), key=lambda entry: entry.name)
    except OSError:  # no workdir yet, or unreadable: nothing to offer
        return []
    try:
        current = current_run_name(workdir)
    except (OSError, ValueError):
        current = None
    names: list[str | tuple[str, str]] = []
    for entry in entries:
        if not entry.name.startswith(incomplete) or not entry.is_dir():
            continue
        if not os.path.isfile(os.path.join(entry.path, CONFIG_FILE)):
            continue
        names.append((entry.name, "current run") if entry.name == current else entry.name)
    return names


RunOpt = Annotated[
    str | None,
    typer.Option(
        "--run",
        help="Run name (in the workdir) or path (default: the current run).",
        autocompletion=complete_run,
        envvar="HASHRET_RUN",
        show_envvar=False,
    ),
]
BitsOpt = Annotated[
    int, typer.Option("--bits", "-b", help="Code length in bits: a multiple of 8 from 8 to 1024.")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N.")
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="auto (ONNX Runtime when the run's model.onnx matches model.pt and the device "
        "allows, else torch), onnx or torch.",
        autocompletion=lambda incomplete: _prefix(("auto", "onnx", "torch"), incomplete),
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout, on one line.")
]
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


def complete_method(incomplete: str) -> list[str]:
    from hashcli.train.names import METHOD_NAMES

    return _prefix(METHOD_NAMES, incomplete)


def complete_miner(incomplete: str) -> list[str]:
    from hashcli.train.names import MINER_NAMES

    return _prefix(MINER_NAMES, incomplete)


def complete_schedule(incomplete: str) -> list[str]:
    from hashcli.train.names import SCHEDULE_NAMES

    return _prefix(SCHEDULE_NAMES, incomplete)


def complete_index_type(incomplete: str) -> list[str]:
    # hashcli.index.params is faiss-free (its package __init__ costs a numpy import, ~50 ms).
    from hashcli.index.params import INDEX_TYPES

    return _prefix(INDEX_TYPES, incomplete)


ImagesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Image files, folders (searched recursively) or glob patterns.",
        metavar="IMAGE",
        show_default=False,
    ),
]
ListFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--list",
        help="Text file naming one image per line (relative to the file's folder).",
        show_default=False,
    ),
]
