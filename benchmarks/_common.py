"""Helpers shared by the benchmark scripts (run as `python benchmarks/bench_*.py`, so this
folder is on sys.path)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def start(doc: str, quick_help: str, settings: str) -> argparse.Namespace:
    """Parse ``--quick``, ``--rounds`` (default 2, 1 with --quick) and ``--cub`` (bench_encode,
    bench_train), then print the report's first lines: load, cores, torch and ``settings``."""
    import torch

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--rounds", type=int, default=None, help="passes per variant (2)")
    parser.add_argument("--cub", type=Path, default=CUB25, help="the CUB subset (cub25)")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 2)
    print(
        f"load average at start: {load_average()}\n"
        f"cores: {os.cpu_count()}, torch {torch.__version__}, intra-op threads: "
        f"{torch.get_num_threads()}, {settings}; best of {args.rounds} round(s)"
    )
    return args


@contextlib.contextmanager
def digits_and_cub(cub_root: Path, prefix: str) -> Iterator[tuple[Any, Any]]:
    """(digits, CUB subset or None): the built-in digits extracted to a temporary folder, and
    the CUB subset when it is there. At the end, says what was skipped and the load average."""
    from hashcli.data import load_dataset

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        digits = load_dataset("digits", Path(tmp) / "data")
        found = (cub_root / "CUB_200_2011" / "images.txt").is_file()
        yield digits, load_dataset("cub", cub_root) if found else None
    if not found:
        print(f"\n(resnet18 @ 224 px on CUB skipped: {cub_root} not found)")
    print(f"\nload average at the end: {load_average()}")


def rate_rows(
    variants: dict[str, Callable[[], float]], images: int, rounds: int, digits: int = 0
) -> list[tuple[str, float, float]]:
    """Each variant (a call returning its seconds for ``images`` images) run ``rounds`` times,
    side by side; (variant, best images/s, ratio to the first variant) per variant."""
    best = {key: float("inf") for key in variants}
    for round_index in range(rounds):
        for key, fn in variants.items():
            best[key] = min(best[key], fn())
            log(f"  round {round_index + 1}: {key}: {images / best[key]:,.{digits}f} images/s")
    baseline = images / next(iter(best.values()))
    return [(key, images / seconds, images / seconds / baseline) for key, seconds in best.items()]
