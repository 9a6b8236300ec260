"""Rich progress bars on stderr, off when stderr is not a terminal or with --quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
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
def progress_callback(
    description: str, total: int | None = None, quiet: bool = False
) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback for library functions, drawn as one bar."""
    with make_progress(quiet) as progress:
        task = progress.add_task(description, total=total)

        def update(done: int, total_now: int) -> None:
            progress.update(task, completed=done, total=total_now)

        yield update
