"""Rich consoles: stdout for data, stderr for people (STYLE.md point 8)."""

from __future__ import annotations

from rich.console import Console

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str, *, quiet: bool = False) -> None:
    """A status line for people, on stderr: plain text (paths with brackets print as they are),
    never wrapped, so paths stay copyable."""
    if not quiet:
        err.print(message, markup=False)
