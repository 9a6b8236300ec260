"""``hashret query``: images in, nearest database images out (tables, JSON lines, a picture)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from hashcli.cli._options import (
    DeviceOpt,
    EngineOpt,
    ImagesArg,
    ListFileOpt,
    QuietOpt,
    RunOpt,
    WorkdirOpt,
)
from hashcli.cli._output import Output, exit_fast

if TYPE_CHECKING:
    from rich.table import Table

    from hashcli.workflows.query import QueryReport, QueryResult


def query_command(
    images: ImagesArg = None,
    list_file: ListFileOpt = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            "-k",
            help="Results per query (default: 20; with --radius: all within the radius).",
            min=1,
            show_default=False,
        ),
    ] = None,
    radius: Annotated[
        int | None,
        typer.Option(
            "--radius",
            "-r",
            help="Every database item within this Hamming distance (inclusive), capped by "
            "--top when given.",
            min=0,
            show_default=False,
        ),
    ] = None,
    run: RunOpt = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Model checkpoint instead of a run's model (then give --index unless it "
            "lies in a run folder).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            "-i",
            help="Index file to search (default: the run's index/database.faiss).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid",
            help="Also write a contact sheet (query, then its results; .jpg or .png).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Query images encoded per batch.", min=1)
    ] = 64,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per query on stdout (JSON lines)."),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Find the database images nearest to each query image, by Hamming distance.

    The model and index are a run's (--run, default the current run; training builds the
    index), or --checkpoint with --index. Results are ordered by distance, ties by database
    row. Per query, a table on stderr (rank, distance, class, label, path), or with --json
    one line on stdout: {"query", "code" (hex), "label", "class", "results": [{"rank", "row",
    "path", "label", "class", "distance"}, ...]}.

    --grid draws a contact sheet: frames are green/red (same class or not) when the query's
    class is known: its path is a database image, or one of the run's dataset images.

    --engine auto encodes with ONNX Runtime when the run has a model.onnx exported from its
    model.pt (training writes one; `hashret export` for older runs), which starts in a
    fraction of torch's time; otherwise with torch, saying why on stderr when a model.onnx is
    there but stale or unreadable.

    Examples:

        hashret query photo.jpg --top 20

        hashret query queries/ --radius 2 --json

        hashret query 'shots/*.png' --grid results.jpg

        hashret query photo.jpg --checkpoint model.pt --index photos.faiss
    """
    if not images and list_file is None:
        raise typer.BadParameter(
            "name query images (files, folders or glob patterns) or a --list file",
            param_hint="IMAGE...",
        )
    if run is not None and checkpoint is not None:
        raise typer.BadParameter(
            "give --run or --checkpoint, not both", param_hint="'--run' / '--checkpoint'"
        )
    from hashcli.workflows.query import query_images

    report = query_images(
        images or (),
        list_file=list_file,
        run=run,
        checkpoint=checkpoint,
        index=index,
        workdir=workdir,
        top=top,
        radius=radius,
        device=device,
        batch_size=batch_size,
        grid=grid,
        engine=engine,
    )
    out = Output(quiet=quiet)
    for note in report.notes:
        out.warning(note)
    if json_output:
        out.json_lines(result.to_dict() for result in report.results)
    else:
        root = _common_folder(report)
        for number, result in enumerate(report.results, start=1):
            out.table(_table(result, number, len(report.results), report, root))
    _summary(out, report)
    exit_fast()  # everything is written; skip the interpreter's tear-down (see app.main)


def _common_folder(report: QueryReport) -> str | None:
    """The folder all shown database paths lie in (the table shows paths relative to it, so
    that it fits an 80-column terminal; --json keeps the full paths)."""
    import os

    paths = [n.path for r in report.results for n in r.neighbours if n.path]
    if not paths or not all(os.path.isabs(p) for p in paths):
        return None
    folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    return folder if folder not in ("", os.sep) else None


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _table(
    result: QueryResult, number: int, total: int, report: QueryReport, root: str | None
) -> Table:
    import os

    from rich.table import Table

    known = (
        f"class {escape(_fmt(result.class_name) or _fmt(result.label))}, known from the "
        f"{result.label_source}"
        if result.label is not None
        else "class unknown"
    )
    from rich import box

    table = Table(
        title=f"Query {number}/{total}: {escape(result.query)} ({known})",
        title_justify="left",
        box=box.SIMPLE_HEAD,  # light rules: the columns fit an 80-column terminal
        pad_edge=False,
    )
    named = any(n.class_name is not None for n in result.neighbours)
    table.add_column("#", justify="right")
    table.add_column("dist", justify="right")
    # the class name when the database has names, else its label (--json has both)
    table.add_column("class" if named else "label", overflow="fold")
    table.add_column("path", overflow="fold")
    for n in result.neighbours:
        table.add_row(
            str(n.rank),
            str(n.distance),
            escape(_fmt(n.class_name) if named else _fmt(n.label)),
            escape(os.path.relpath(n.path, root) if root and n.path else n.path or ""),
        )
    if not result.neighbours:
        where = f"within distance {report.radius}" if report.radius is not None else ""
        table.caption = f"no database item {where}".strip()
    elif root is not None:
        table.caption = f"paths under {escape(root)}"
        table.caption_justify = "left"
    return table


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{1e3 * seconds:.1f} ms"


def _summary(out: Output, report: QueryReport) -> None:
    t = report.timings
    n = len(report.results)
    parts = ", ".join(
        f"{name} {_duration(t[name])}"
        for name in ("imports", "model", "index", "encode", "search", "grid", "total")
        if name in t
    )
    out.say(
        f"Searched {n:,} {'query' if n == 1 else 'queries'} in {report.index} "
        f"({report.index_type}, {report.ntotal:,} codes of {report.bits} bits) on "
        f"{report.device} ({report.engine}): {parts}"
    )
    if report.grid is not None:
        out.say(f"Wrote the contact sheet {report.grid}")
