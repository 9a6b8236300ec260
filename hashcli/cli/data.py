"""``hashret data``: inspect, check and download datasets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect, check and download datasets.", no_args_is_help=True)


@app.command("info")
def info() -> None:
    """Placeholder, replaced by the data work."""
