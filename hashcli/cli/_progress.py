"""Rich progress bars on stderr, off when stderr is not a terminal or with --quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hashcli.cli._console import err


def make_progress(quiet: bool = False, *extra_columns) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=quiet or not err.is_terminal,
    )


@contextmanager
def progress_bar(
    description: str,
    *,
    total: int | None = None,
    quiet: bool = False,
    columns: Sequence[ProgressColumn] | None = None,
) -> Iterator[Callable[[int, int | None], None]]:
    """One transient bar on stderr; yields ``progress(done, total)`` for library functions.

    ``columns`` replaces the default bar / count / ETA columns (e.g. bytes for downloads).
    """
    parts = columns or (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(
        TextColumn("[bold]{task.description}"),
        *parts,
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total)

        def update(done: int, total_now: int | None) -> None:
            progress.update(task, completed=done, total=total_now)

        yield update
