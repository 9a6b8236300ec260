"""The ``hashret`` command: every subcommand is wired here, and only here.

Each command lives in its own module under ``hashcli/cli/`` and stays thin: options in, one
library call, output rendered. Library code raises :class:`~hashcli.errors.HashretError`;
:class:`HashretGroup` turns it into one ``Error: ...`` line and exit status 1 (a traceback only
with ``HASHRET_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from hashcli import __version__
from hashcli.cli import data as data_cmd
from hashcli.cli import encode as encode_cmd
from hashcli.cli import eval as eval_cmd
from hashcli.cli import export as export_cmd
from hashcli.cli import index as index_cmd
from hashcli.cli import query as query_cmd
from hashcli.cli import runs as runs_cmd
from hashcli.cli import serve as serve_cmd
from hashcli.cli import train as train_cmd
from hashcli.cli._output import Output
from hashcli.errors import HashretError

DEBUG_ENV = "HASHRET_DEBUG"


class HashretGroup(TyperGroup):
    """The one error handler (STYLE.md point 7)."""

    def invoke(self, ctx):  # noqa: ANN001 - typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except HashretError as exc:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            Output().error(str(exc))
            raise typer.Exit(1) from None


app = typer.Typer(
    name="hashret",
    cls=HashretGroup,
    help="Deep-hashing image retrieval: train a network that turns images into short binary "
    "codes, search them by Hamming distance and measure retrieval exactly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        Output().line(f"hashret {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Deep-hashing image retrieval.

    Example: hashret data info digits
    """


# The whole command list, in the order of a session: train, encode, index, query, evaluate.
app.command("train")(train_cmd.train_command)
app.command("encode")(encode_cmd.encode_command)
app.add_typer(index_cmd.app, name="index")
app.command("query")(query_cmd.query_command)
app.command("eval")(eval_cmd.eval_command)
app.command("export")(export_cmd.export_command)
app.command("serve")(serve_cmd.serve_command)
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(data_cmd.app, name="data")


def main() -> None:
    """Console-script entry point.

    A command that asked for it (:func:`hashcli.cli._output.exit_fast`, ``hashret query``)
    ends with ``os._exit`` after flushing its output: the interpreter's tear-down (freeing
    torch, ONNX Runtime and FAISS) took 0.1 s with the ONNX engine and 0.9 s with torch, a
    large part of a cold query, and the command has nothing left to clean up.
    """
    from hashcli.cli import _output

    try:
        app()
    except SystemExit as exc:
        if not _output.fast_exit_requested():
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
