"""``hashret eval``: placeholder, replaced by the evaluator work."""

from __future__ import annotations


def eval_command() -> None:
    """Evaluate retrieval (not wired yet)."""
