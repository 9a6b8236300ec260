"""CUB-200-2011 in its official layout.

``CUB_200_2011/`` holds ``images/<NNN.Class_Name>/<file>.jpg`` and the lists ``images.txt``
("<id> <relative path>"), ``image_class_labels.txt`` ("<id> <class id>"),
``train_test_split.txt`` ("<id> <1 train | 0 test>"), ``classes.txt`` ("<class id> <name>") and,
optionally, ``bounding_boxes.txt`` ("<id> <x> <y> <width> <height>"). The lists are joined by
image id, never by line number: ids may come in any order and need not be contiguous.

Subsets are allowed: classes without any image are dropped and the remaining ones re-indexed
0..C-1 in class-id order, keeping their names from ``classes.txt`` (e.g.
"001.Black_footed_Albatross"). Image counts other than the official 5,994 train / 5,794 test give
a warning, not an error. Bounding boxes are read whenever ``bounding_boxes.txt`` is present
(``record.box``); cropping happens only when the image loader is asked to crop.
"""

from __future__ import annotations

from pathlib import Path

from hashcli.data._common import check_official_counts, first_few, plural
from hashcli.data.records import ImageDataset, ImageRecord
from hashcli.errors import DataError

FOLDER = "CUB_200_2011"
LIST_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
BOXES_FILE = "bounding_boxes.txt"
OFFICIAL_COUNTS = {"train": 5994, "test": 5794}
OFFICIAL_CLASSES = 200


def find_root(root: Path) -> Path:
    """The CUB_200_2011 folder: ``root`` itself or ``root/CUB_200_2011``."""
    for candidate in (root, root / FOLDER):
        if (candidate / "images.txt").is_file():
            return candidate
    where = f"{root} does not exist" if not root.exists() else f"nothing usable in {root}"
    raise DataError(
        f"CUB-200-2011 not found ({where}): expected the official layout, {root}/{FOLDER}/ "
        f"(or {root} itself) holding {', '.join(LIST_FILES)} and images/<NNN.Class_Name>/*.jpg; "
        f"get it with `hashret data download cub --to {root}` or pass --data-root"
    )


def _read_pairs(path: Path, n_values: int) -> dict[int, list[str]]:
    """``{id: [values...]}`` from a whitespace-separated list file with an integer id column."""
    table: dict[int, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.strip().split(maxsplit=n_values)
            if not fields:
                continue
            if len(fields) != n_values + 1:
                raise DataError(
                    f"{path}, line {line_number}: expected an id and {n_values} value(s), "
                    f"got {line.strip()!r}"
                )
            try:
                key = int(fields[0])
            except ValueError:
                raise DataError(
                    f"{path}, line {line_number}: the id {fields[0]!r} is not an integer"
                ) from None
            if key in table:
                raise DataError(f"{path}, line {line_number}: id {key} appears twice")
            table[key] = fields[1:]
    return table


def _to_int(path: Path, key: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}: id {key} has {value!r} where an integer is expected") from None


def read_cub(root: Path, *, boxes: bool = False) -> ImageDataset:
    """Read CUB-200-2011 from ``root`` (the CUB_200_2011 folder or its parent).

    ``boxes=True`` makes ``bounding_boxes.txt`` required (it is read anyway when present).
    """
    cub = find_root(Path(root))
    missing_lists = [name for name in LIST_FILES if not (cub / name).is_file()]
    if boxes and not (cub / BOXES_FILE).is_file():
        missing_lists.append(BOXES_FILE)
    if missing_lists:
        raise DataError(
            f"{cub} is missing {', '.join(missing_lists)}; the official CUB_200_2011 layout has "
            f"{', '.join(LIST_FILES)}, {BOXES_FILE} and images/"
        )

    images = {key: v[0] for key, v in _read_pairs(cub / "images.txt", 1).items()}
    labels_path = cub / "image_class_labels.txt"
    labels = {k: _to_int(labels_path, k, v[0]) for k, v in _read_pairs(labels_path, 1).items()}
    split_path = cub / "train_test_split.txt"
    is_train = {k: _to_int(split_path, k, v[0]) for k, v in _read_pairs(split_path, 1).items()}
    class_names = {key: v[0] for key, v in _read_pairs(cub / "classes.txt", 1).items()}
    box_table: dict[int, tuple[float, float, float, float]] = {}
    if (cub / BOXES_FILE).is_file():
        for key, values in _read_pairs(cub / BOXES_FILE, 4).items():
            try:
                x, y, w, h = (float(v) for v in values)
            except ValueError:
                raise DataError(f"{cub / BOXES_FILE}: id {key} has a non-numeric box") from None
            box_table[key] = (x, y, w, h)

    ids = sorted(images)
    if not ids:
        raise DataError(f"{cub / 'images.txt'} lists no images")
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        absent = [i for i in ids if i not in table]
        if absent:
            raise DataError(
                f"{name} has no entry for {plural(len(absent), 'image id')} of images.txt "
                f"(ids {first_few(absent)}); the lists are joined by image id"
            )
    bad_split = [i for i in ids if is_train[i] not in (0, 1)]
    if bad_split:
        raise DataError(
            f"train_test_split.txt must give 1 (train) or 0 (test); ids {first_few(bad_split)} "
            "have other values"
        )
    unknown = sorted({labels[i] for i in ids} - set(class_names))
    if unknown:
        listed = f"{min(class_names)}..{max(class_names)}" if class_names else "none"
        raise DataError(
            f"image_class_labels.txt uses class {plural(len(unknown), 'id')} that classes.txt "
            f"does not list: {first_few(unknown)} (classes.txt lists ids {listed}) in {cub}"
        )
    if boxes:
        no_box = [i for i in ids if i not in box_table]
        if no_box:
            raise DataError(
                f"{BOXES_FILE} has no box for {plural(len(no_box), 'image id')} "
                f"(ids {first_few(no_box)})"
            )

    image_dir = cub / "images"
    missing = [images[i] for i in ids if not (image_dir / images[i]).is_file()]
    if missing:
        raise DataError(
            f"images.txt names {plural(len(missing), 'image')} that do not exist under "
            f"{image_dir}: {first_few(missing)}"
        )

    used = sorted({labels[i] for i in ids})
    index_of = {class_id: index for index, class_id in enumerate(used)}
    records = [
        ImageRecord(
            path=image_dir / images[i],
            label=index_of[labels[i]],
            split="train" if is_train[i] == 1 else "test",
            box=box_table.get(i),
        )
        for i in ids
    ]
    dataset = ImageDataset(
        name="cub", root=cub, classes=[class_names[c] for c in used], records=records
    )
    check_official_counts(dataset, "CUB-200-2011", OFFICIAL_COUNTS, OFFICIAL_CLASSES)
    return dataset
