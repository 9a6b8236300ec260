"""Helpers shared by the benchmark scripts (run as `python benchmarks/bench_*.py`, so this
folder is on sys.path)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The real CUB subset beside the checkout (absent in a user's clone: benchmarks skip it).
CUB25 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub25"


def load_average() -> str:
    """The 1-minute load average: other processes share these cores (figures are noisy)."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def log(message: str) -> None:
    """Progress for people, on stderr (stdout holds the markdown tables)."""
    print(message, file=sys.stderr, flush=True)


def print_rate_table(
    title: str, rows: list[tuple[str, float, float]], baseline: str, digits: int = 0
) -> None:
    """A markdown table of (variant, images/s, ratio to ``baseline``)."""
    print(f"\n### {title}\n")
    print(f"| variant | images/s | ratio to {baseline} |")
    print("|---|---:|---:|")
    for key, ips, ratio in rows:
        print(f"| {key} | {ips:,.{digits}f} | {ratio:.2f} |")
