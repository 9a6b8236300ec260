"""The one output object of the CLI (STYLE.md points 5d and 8; model: huggingface_hub's
``cli/_output.py``). Commands print through an :class:`Output` and nothing else.

Where each kind of output goes is decided here, once:

==========================  =======  ===================================================
method                      stream   what
==========================  =======  ===================================================
``json``                    stdout   the ``--json`` result: one JSON document on one line
``json_lines``              stdout   one JSON object per line (``hashret query --json``)
``table(t, data=True)``     stdout   a table that *is* the command's data (``hashret runs``,
                                     as ``ls`` lists files); whole rows when piped
``line``                    stdout   a line of plain text that is the data (``--version``)
``table(t)``                stderr   a table for people (eval's metrics, query's results)
``result``                  stderr   a command's answer in plain text for people
``say``                     stderr   a status line; off with ``--quiet``
``warning``                 stderr   ``Warning: ...``; off with ``--quiet``
``error``                   stderr   ``Error: ...`` (the one error handler in ``app.py``)
``progress``, ``_bar``      stderr   progress bars; off with ``--quiet`` or when stderr is
                                     not a terminal
==========================  =======  ===================================================

So stdout holds data only: ``hashret ... --json | jq`` and ``hashret runs | grep`` always work.

JSON has one layout everywhere: ``json.dumps`` defaults (ASCII, ``", "`` and ``": "``), one
document per line, no indentation; NaN and infinities, which JSON lacks, are written as
``null``. Text for people (``result``, ``say``, ``warning``, ``error``) is printed as plain text
(square brackets in a path stay as they are, no markup or emoji codes) and never wrapped, so
paths stay copyable. ``--quiet`` silences status lines, warnings and progress bars, not a
command's answer (tables, ``result``) nor errors.
"""

from __future__ import annotations

import json as _json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn
    from rich.table import Table

# Module level, so progress bars, tables and lines of one process share one stderr console
# (rich prints a line above a live bar only through the bar's own console). Both consoles look
# up sys.stdout / sys.stderr when they print, so typer's CliRunner captures them.
_stdout = Console(soft_wrap=True, highlight=False)
_stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def unseen_class_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """Table rows of the unseen-class protocol's figures (``hashret train``'s summary and
    ``hashret eval``): the left-out classes, then each figure's mAP with its bounds."""
    classes = figures["unseen_classes"]
    rows = [(f"unseen classes ({len(classes)})", str(classes))]
    for key in ("seen@seen", "unseen@unseen", "unseen@all"):
        figure = figures[key]
        rows.append(
            (
                f"  {key} mAP (tie-aware, bounds)",
                f"{figure['map']:.4f} ({figure['map_pessimistic']:.4f} .. "
                f"{figure['map_optimistic']:.4f})",
            )
        )
    return rows


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN and infinity replaced by None (inside dicts, lists, tuples)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


class Output:
    """Prints a command's data on stdout and everything for people on stderr (see the module
    docstring for the policy). ``quiet``: the command's ``--quiet``."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    # -- data, on stdout --------------------------------------------------------------------

    def json(self, value: Any) -> None:
        """``value`` as one line of JSON (NaN and infinities as null)."""
        self.line(_json.dumps(_json_safe(value), allow_nan=False))

    def json_lines(self, values: Iterable[Any]) -> None:
        """One line of JSON per value (JSON lines)."""
        for value in values:
            self.json(value)

    def line(self, text: str) -> None:
        """A line of plain text that is the command's data."""
        typer.echo(text)

    def table(self, table: Table, *, data: bool = False) -> None:
        """A rich table: for people on stderr, or with ``data=True`` the command's data on
        stdout. Piped, a data table drops its rules and is never squeezed to a terminal width,
        so that every row stays one whole line for grep and awk."""
        if not data:
            _stderr.print(table)
        elif _stdout.is_terminal:
            _stdout.print(table)
        else:
            table.box = None
            Console(file=_stdout.file, width=10_000, color_system=None, highlight=False).print(
                table
            )

    # -- for people, on stderr --------------------------------------------------------------

    def result(self, message: str) -> None:
        """A command's answer for people, in plain text (printed even with --quiet)."""
        _stderr.print(message, markup=False, highlight=False, emoji=False)

    def say(self, message: str) -> None:
        """A status line (what was written where, how long it took); off with --quiet."""
        if not self.quiet:
            self.result(message)

    def warning(self, message: str) -> None:
        """``Warning: message``; off with --quiet."""
        self.say(f"Warning: {message}")

    def error(self, message: str) -> None:
        """``Error: message``, always."""
        self.result(f"Error: {message}")

    @property
    def live(self) -> bool:
        """Whether progress bars show: stderr is a terminal and there is no --quiet."""
        return not self.quiet and _stderr.is_terminal

    def progress(self, *extra_columns: ProgressColumn) -> Progress:
        """Bars with count, elapsed time and ETA (``extra_columns`` after the count) that stay
        when done; add tasks to it inside ``with``. Disabled (``.disable``) with --quiet or when
        stderr is not a terminal (see :attr:`live`)."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            *extra_columns,
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=_stderr,
            transient=False,
            disable=not self.live,
        )

    @contextmanager
    def progress_bar(
        self,
        description: str,
        *,
        total: int | None = None,
        columns: Sequence[ProgressColumn] | None = None,
    ) -> Iterator[Callable[[int, int | None], None]]:
        """One bar that disappears when done; yields ``progress(done, total)`` for library
        functions. ``columns`` replaces the default bar / count / ETA columns (e.g. bytes for
        downloads)."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        parts = columns or (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(
            TextColumn("[bold]{task.description}"),
            *parts,
            console=_stderr,
            transient=True,
            disable=not self.live,
        ) as progress:
            task = progress.add_task(description, total=total)

            def update(done: int, total_now: int | None) -> None:
                progress.update(task, completed=done, total=total_now)

            yield update


_FAST_EXIT = False


def exit_fast() -> None:
    """Ask :func:`hashcli.cli.app.main` to end the process with ``os._exit`` once the command
    returns (its output flushed; no interpreter tear-down). Only for commands that have written
    everything and hold nothing to clean up."""
    global _FAST_EXIT
    _FAST_EXIT = True


def fast_exit_requested() -> bool:
    return _FAST_EXIT
