"""Small helpers shared by the dataset readers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from hashcli.data.records import ImageDataset
from hashcli.errors import DataError

MARKER = ".hashret-complete"
"""The file that marks a complete extraction (written last, inside the folder)."""

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


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hashret``, else ``~/.cache/hashret``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hashret"


def extract_once(target: Path, write: Callable[[Path], None], what: str) -> tuple[Path, list[str]]:
    """The folder ``target`` filled by ``write(folder)`` once, atomically, plus warnings.

    ``write`` fills a temporary folder beside the target, which gets :data:`MARKER` and is
    renamed only when complete, so an interrupted run never leaves half a folder (and two
    concurrent extractions both end with the complete one). When ``target``'s parent is not
    writable, the folder goes to the user cache (:func:`user_cache_dir`) with a warning.
    ``what`` names the content in messages ("the built-in digits").
    """
    try:
        return _extract_into(target, write, what), []
    except DataError:
        raise
    except OSError as exc:
        fallback = user_cache_dir() / target.name
        try:
            folder = _extract_into(fallback, write, what)
        except OSError as cache_exc:
            raise DataError(
                f"cannot write {what} to {target} ({exc.strerror or exc}) nor to "
                f"{fallback} ({cache_exc.strerror or cache_exc}); pass a writable --data-root"
            ) from None
        return folder, [
            f"{target.parent} is not writable ({exc.strerror or exc}); {what} are in {folder}"
        ]


def _extract_into(target: Path, write: Callable[[Path], None], what: str) -> Path:
    if (target / MARKER).is_file():
        return target
    if target.exists():
        raise DataError(
            f"{target} exists but is not a complete extraction of {what} (no {MARKER} file); "
            "remove or rename it and run again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(scratch)
        (scratch / MARKER).write_text(f"hashret: {what}\n")
        try:
            os.rename(scratch, target)
        except OSError:
            if not (target / MARKER).is_file():  # not a concurrent extraction that won the race
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target
