"""Small helpers shared by the dataset readers."""

from __future__ import annotations

from collections.abc import Sequence

from hashcli.data.records import ImageDataset

SHOWN = 5
"""How many offending items an error message shows."""


def first_few(items: Sequence[object], shown: int = SHOWN) -> str:
    """``a, b, c (and 12 more)``: the first items of a list, for error messages."""
    head = ", ".join(str(item) for item in items[:shown])
    rest = len(items) - shown
    return f"{head} (and {rest} more)" if rest > 0 else head


def plural(n: int, word: str) -> str:
    """``1 image``, ``3 images``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def check_official_counts(
    dataset: ImageDataset, title: str, official: dict[str, int], official_classes: int
) -> None:
    """Add a warning to ``dataset`` when its split sizes differ from the official ones."""
    counts = dataset.counts()
    if (counts["train"], counts["test"]) != (official["train"], official["test"]):
        dataset.warnings.append(
            f"{counts['train']:,} train / {counts['test']:,} test images in "
            f"{len(dataset.classes)} classes; the official {title} has {official['train']:,} / "
            f"{official['test']:,} in {official_classes}, so results are not comparable "
            "with published ones"
        )
