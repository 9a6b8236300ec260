"""``hashret runs``: list the runs of the workdir, and choose the current one.

The listing is the data this command exists for, so the table goes to stdout, as ``ls`` or
``docker ps`` do (``hashret runs | grep cub`` works): ``Output.table(..., data=True)``;
``--json`` swaps it for a JSON array. Messages for people (an empty workdir, a skipped run,
the run just chosen) go to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hashcli.cli._options import JsonOpt, QuietOpt, WorkdirOpt, complete_run
from hashcli.cli._output import Output
from hashcli.errors import HashretError

if TYPE_CHECKING:
    from rich.table import Table

    from hashcli.workflows.runs import RunInfo

app = typer.Typer(invoke_without_command=True, no_args_is_help=False)

RunArg = Annotated[
    str,
    typer.Argument(
        help="Run name (a folder of the workdir) or the path of a run folder inside it.",
        autocompletion=complete_run,
        show_default=False,
    ),
]


@app.callback(invoke_without_command=True)
def runs_command(
    ctx: typer.Context,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the runs of the workdir, the current one marked with *.

    Shows name, dataset, bits, backbone, epochs, best validation mAP, test mAP and date.

    Commands run without --run use the current run: the latest trained, or the one set by use.

    Example: hashret runs --workdir runs
    """
    if ctx.invoked_subcommand is not None:
        return
    from hashcli.workflows.runs import resolve_workdir

    out = Output()
    wd = resolve_workdir(workdir)
    infos, warnings = _run_infos(wd)
    if as_json:
        out.json([info.to_dict() for info in infos])
        return
    for warning in warnings:
        out.warning(warning)
    if not infos:
        where = "" if wd.is_dir() else " (the folder does not exist yet)"
        out.result(
            f"No runs in {wd}{where}. Train one with "
            "`hashret train --dataset digits --backbone tiny --bits 32`, or point --workdir "
            "(or $HASHRET_WORKDIR) at a folder of runs."
        )
        return
    out.table(_table(infos), data=True)


@app.command("use")
def use_command(
    ctx: typer.Context,
    run: RunArg,
    workdir: WorkdirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Make a run the current one: commands without --run use it.

    Example: hashret runs use digits-tiny-32b-20250101-120000
    """
    from hashcli.workflows.runs import resolve_run, resolve_workdir, set_current_run

    if workdir is None and ctx.parent is not None:
        workdir = ctx.parent.params.get("workdir")  # hashret runs --workdir DIR use NAME
    wd = resolve_workdir(workdir)
    run_dir = resolve_run(run, wd)
    if run_dir.resolve().parent != wd.resolve():
        raise HashretError(
            f"{run_dir} is not a folder of the workdir {wd}: the current run is recorded per "
            f"workdir; use --workdir {run_dir.resolve().parent} to make it current there"
        )
    set_current_run(wd, run_dir)
    Output(quiet=quiet).say(f"Current run: {run_dir.name} (workdir {wd})")


def _run_infos(workdir: Path) -> tuple[list[RunInfo], list[str]]:
    """The runs of ``workdir``, oldest first; a run whose files are unreadable is left out
    with a warning rather than hiding every other run."""
    from hashcli.workflows.runs import current_run_name, list_runs, run_info

    current = current_run_name(workdir) if workdir.is_dir() else None
    infos, warnings = [], []
    for run_dir in list_runs(workdir):
        try:
            infos.append(run_info(run_dir, current=run_dir.name == current))
        except HashretError as exc:
            warnings.append(f"skipped the run {run_dir.name}: {exc}")
    return infos, warnings


def _fmt_map(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_date(created: str | None) -> str:
    # config.json stores 2025-01-01T12:34:56+0000; minutes are enough to tell runs apart.
    return "-" if not created else created[:16].replace("T", " ")


def _table(infos: list[RunInfo]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("dataset", no_wrap=True)
    table.add_column("bits", justify="right")
    table.add_column("backbone", no_wrap=True)
    table.add_column("epochs", justify="right")
    table.add_column("best val mAP", justify="right")
    table.add_column("test mAP", justify="right")
    table.add_column("created", no_wrap=True)
    for info in infos:
        table.add_row(
            "*" if info.current else "",
            info.name,
            info.dataset or "-",
            "-" if info.bits is None else str(info.bits),
            info.backbone or "-",
            "-" if info.epochs is None else str(info.epochs),
            _fmt_map(info.best_val_map),
            _fmt_map(info.test_map),
            _fmt_date(info.created),
        )
    return table
