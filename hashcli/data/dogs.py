"""Stanford Dogs in its official layout.

The dataset folder (the data root itself, or ``StanfordDogs``, ``Stanford_Dogs`` or
``stanford_dogs`` under it) holds ``Images/<wnid-Breed>/<file>.jpg`` and the MATLAB lists
``lists/train_list.mat`` and ``lists/test_list.mat`` (also accepted beside ``Images/``, where the
official ``lists.tar`` puts them). Each list has ``file_list`` (a cell array of paths relative to
``Images/``) and ``labels`` (1..120).

Class names are the full folder names (e.g. "n02085620-Chihuahua": unique, and the same string
as on disk); classes are ordered by label and re-indexed 0..C-1 over the labels in use, so a
subset works. Bounding boxes come from ``Annotation/<wnid-Breed>/<file stem>`` (PASCAL VOC XML)
and are read only when asked for (``boxes=True``): parsing 20,580 XML files is not free. A file
with several dogs gets the box enclosing all of them.
"""

from __future__ import annotations

from pathlib import Path

from hashcli.data._common import check_official_counts, first_few, plural
from hashcli.data.records import ImageDataset, ImageRecord
from hashcli.errors import DataError

FOLDER_NAMES = ("StanfordDogs", "Stanford_Dogs", "stanford_dogs")
OFFICIAL_COUNTS = {"train": 12000, "test": 8580}
OFFICIAL_CLASSES = 120


def _lists_dir(candidate: Path) -> Path | None:
    for lists in (candidate / "lists", candidate):
        if (lists / "train_list.mat").is_file() and (lists / "test_list.mat").is_file():
            return lists
    return None


def find_root(root: Path) -> Path:
    """The Stanford Dogs folder: ``root`` itself or one of :data:`FOLDER_NAMES` under it."""
    candidates = [root, *(root / name for name in FOLDER_NAMES)]
    for candidate in candidates:
        if (candidate / "Images").is_dir() and _lists_dir(candidate) is not None:
            return candidate
    for candidate in candidates:
        if (candidate / "Images").is_dir():
            raise DataError(
                f"{candidate} has Images/ but no lists/train_list.mat and lists/test_list.mat "
                "(from the official lists.tar)"
            )
    where = f"{root} does not exist" if not root.exists() else f"nothing usable in {root}"
    raise DataError(
        f"Stanford Dogs not found ({where}): expected the official layout, {root}/StanfordDogs/ "
        f"(or Stanford_Dogs, stanford_dogs, or {root} itself) holding Images/<wnid-Breed>/*.jpg "
        f"and lists/train_list.mat, lists/test_list.mat; get it with "
        f"`hashret data download dogs --to {root}` or pass --data-root"
    )


def _cell_strings(path: Path, cell: object) -> list[str]:
    """Strings from a MATLAB cell array as loadmat returns it (nested 1-element arrays)."""
    import numpy as np

    strings = []
    for item in np.asarray(cell, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            if item.size != 1:
                raise DataError(f"{path}: file_list holds a {item.shape} array, not a path")
            item = item.ravel()[0]
        strings.append(str(item).strip())
    return strings


def read_list(path: Path) -> list[tuple[str, int]]:
    """(relative path, label 1..120) pairs from a ``*_list.mat`` file."""
    import numpy as np
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... on bad files
        raise DataError(f"cannot read {path} as a MATLAB file: {exc}") from None
    for key in ("file_list", "labels"):
        if key not in mat:
            raise DataError(f"{path} has no {key!r} field (fields: {', '.join(sorted(mat))})")
    files = _cell_strings(path, mat["file_list"])
    raw_labels = np.asarray(mat["labels"]).ravel()
    if len(files) != len(raw_labels):
        raise DataError(f"{path}: {len(files)} files but {len(raw_labels)} labels")
    try:
        labels = raw_labels.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: labels are not numbers") from None
    if not np.all(labels == np.round(labels)):
        raise DataError(f"{path}: labels are not whole numbers")
    return list(zip(files, (int(v) for v in labels), strict=True))


def read_box(path: Path) -> tuple[float, float, float, float]:
    """(x, y, width, height) enclosing every object of a PASCAL VOC annotation file."""
    import xml.etree.ElementTree as ET

    try:
        objects = ET.parse(path).getroot().findall("object")
        corners = [
            tuple(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            for obj in objects
        ]
    except (ET.ParseError, TypeError, ValueError, OSError) as exc:
        raise DataError(f"cannot read the annotation {path}: {exc}") from None
    if not corners:
        raise DataError(f"the annotation {path} has no <object><bndbox>")
    x0 = min(c[0] for c in corners)
    y0 = min(c[1] for c in corners)
    x1 = max(c[2] for c in corners)
    y1 = max(c[3] for c in corners)
    return (x0, y0, x1 - x0, y1 - y0)


def read_dogs(root: Path, *, boxes: bool = False) -> ImageDataset:
    """Read Stanford Dogs from ``root`` (see the module docstring for the accepted layouts)."""
    dogs = find_root(Path(root))
    lists = _lists_dir(dogs)
    assert lists is not None  # find_root checked it
    entries = [
        (file, label, split)
        for split in ("train", "test")
        for file, label in read_list(lists / f"{split}_list.mat")
    ]
    if not entries:
        raise DataError(f"the lists in {lists} name no images")

    out_of_range = sorted({lab for _, lab, _ in entries if not 1 <= lab <= OFFICIAL_CLASSES})
    if out_of_range:
        raise DataError(
            f"the lists in {lists} use labels outside the {OFFICIAL_CLASSES} classes "
            f"(1..{OFFICIAL_CLASSES}): {first_few(out_of_range)}"
        )
    folder_of: dict[int, str] = {}
    label_of: dict[str, int] = {}
    for file, label, _ in entries:
        folder = file.replace("\\", "/").split("/")[0]
        if folder_of.setdefault(label, folder) != folder:
            raise DataError(
                f"label {label} is given to images of two folders, {folder_of[label]} and "
                f"{folder}, in {lists}"
            )
        if label_of.setdefault(folder, label) != label:
            raise DataError(
                f"the folder {folder} has images with labels {label_of[folder]} and {label} "
                f"in {lists}"
            )

    image_dir = dogs / "Images"
    missing = [file for file, _, _ in entries if not (image_dir / file).is_file()]
    if missing:
        raise DataError(
            f"the lists in {lists} name {plural(len(missing), 'image')} that do not exist under "
            f"{image_dir}: {first_few(missing)}"
        )

    box_of: dict[str, tuple[float, float, float, float]] = {}
    if boxes:
        annotations = dogs / "Annotation"
        no_annotation = [
            file
            for file, _, _ in entries
            if not (annotations / Path(file).parent / Path(file).stem).is_file()
        ]
        if no_annotation:
            raise DataError(
                f"bounding boxes asked for, but {plural(len(no_annotation), 'image')} have no "
                f"annotation file under {annotations} (from annotation.tar): "
                f"{first_few(no_annotation)}"
            )
        for file, _, _ in entries:
            box_of[file] = read_box(annotations / Path(file).parent / Path(file).stem)

    used = sorted(folder_of)
    index_of = {label: index for index, label in enumerate(used)}
    records = [
        ImageRecord(path=image_dir / file, label=index_of[label], split=split, box=box_of.get(file))
        for file, label, split in entries
    ]
    dataset = ImageDataset(
        name="dogs", root=dogs, classes=[folder_of[label] for label in used], records=records
    )
    check_official_counts(dataset, "Stanford Dogs", OFFICIAL_COUNTS, OFFICIAL_CLASSES)
    return dataset
