"""List-file datasets, the HashNet / DeepHash-pytorch format: NUS-WIDE, MS-COCO, ImageNet-100
and anyone's own lists.

``--data-root`` is a folder holding:

- ``train.txt`` and ``test.txt`` (required), ``database.txt`` (optional: without it the
  database is the train split): one image per line, a path (relative to the folder, or
  absolute; the first whitespace-separated field) and then its label vector, C values 0 or 1
  separated by spaces. The same C in every line of every file;
- ``classes.txt`` (optional): C class names, one per line (default: ``0`` .. ``C-1``).

When every line of every file has exactly one 1, the dataset is single-label (each image's class
is that position); otherwise it is multi-label, and an image may have several classes or none.
The lines of ``train.txt`` are the train split (validation is carved from it as for every
dataset), ``test.txt`` the queries, ``database.txt`` the database, each in file order; an image
may appear in several files (NUS-WIDE's database holds its train images). A bad line is an error
naming the file and the line number. Image files are not opened here (``hashret data check``
decodes them all).
"""

from __future__ import annotations

from pathlib import Path

from hashcli.data.records import ImageDataset, ImageRecord
from hashcli.errors import DataError

FILES = {"train": "train.txt", "test": "test.txt", "database": "database.txt"}
CLASSES = "classes.txt"


def _read_list(
    path: Path, folder: Path, width: int | None
) -> tuple[list[tuple[Path, tuple[int, ...]]], int | None]:
    """([(image path, positive classes)], C) of one list file; ``width`` the expected C (None:
    the first line's)."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        name, values = fields[0], fields[1:]
        if not values:
            raise DataError(f"{path}:{number}: no label vector after the path {name!r}")
        if any(v not in ("0", "1") for v in values):
            bad = next(v for v in values if v not in ("0", "1"))
            raise DataError(f"{path}:{number}: label values must be 0 or 1, got {bad!r}")
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise DataError(
                f"{path}:{number}: {len(values)} label values where the lists have {width}"
            )
        image = Path(name).expanduser()
        rows.append((image if image.is_absolute() else folder / image, _positives(values)))
    return rows, width


def _positives(values: list[str]) -> tuple[int, ...]:
    return tuple(i for i, v in enumerate(values) if v == "1")


def read_lists(data_root: Path) -> ImageDataset:
    """The list-file dataset in ``data_root`` (see the module docstring)."""
    folder = Path(data_root)
    missing = [FILES[s] for s in ("train", "test") if not (folder / FILES[s]).is_file()]
    if missing:
        raise DataError(
            f"no {' or '.join(missing)} in {folder}: a list dataset is a folder with train.txt, "
            "test.txt and optionally database.txt and classes.txt (one line per image: a path, "
            "then its 0/1 label vector)"
        )
    width: int | None = None
    rows: dict[str, list[tuple[Path, tuple[int, ...]]]] = {}
    for split, name in FILES.items():
        if (folder / name).is_file():
            rows[split], width = _read_list(folder / name, folder, width)
    if width is None or not rows["train"] or not rows["test"]:
        raise DataError(f"{folder}: train.txt and test.txt must each list at least one image")
    classes = [str(i) for i in range(width)]
    if (folder / CLASSES).is_file():
        classes = [line.strip() for line in (folder / CLASSES).read_text().splitlines()]
        classes = [c for c in classes if c]
        if len(classes) != width:
            raise DataError(
                f"{folder / CLASSES} names {len(classes)} classes; the label vectors have {width}"
            )
    multi = any(len(labels) != 1 for split_rows in rows.values() for _, labels in split_rows)
    records = [
        ImageRecord(
            path,
            labels[0] if labels else -1,
            split,
            labels=labels if multi else None,
        )
        for split, split_rows in rows.items()
        for path, labels in split_rows
    ]
    return ImageDataset(
        name="lists",
        root=folder,
        classes=classes,
        records=records,
        database_splits=("database",) if "database" in rows else ("train", "val"),
        multi_label=multi,
    )
