"""Any tree of labelled images: ``<root>/<class>/<image>``.

- With ``train/`` and ``test/`` subtrees (``<root>/train/<class>/<image>`` ...), those are the
  splits; an optional ``val/`` subtree becomes the validation split (no validation is carved
  from train then). The class list is the sorted union of the class folders of all subtrees.
- Otherwise every class folder is split with a stratified split: 20% of each class goes to test
  (see :mod:`hashcli.data.splits` for the rounding rule), drawn with the FIXED seed
  :data:`TEST_SPLIT_SEED`, so the test set does not move when a training seed changes.

Images are the files with the extensions in :data:`~hashcli.data.images.IMAGE_EXTENSIONS`
(case-insensitive) anywhere below a class folder (sub-folders are walked); hidden files and
folders (names starting with ".") are ignored. A class folder without images is dropped with a
warning (not an error); only a tree without any image is an error. Classes are sorted by name
(plain string order) and numbered 0..C-1 in that order.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from hashcli.data._common import first_few, plural
from hashcli.data.images import IMAGE_EXTENSIONS, is_image_file
from hashcli.data.records import ImageDataset, ImageRecord
from hashcli.data.splits import stratified_split
from hashcli.errors import DataError

TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0
SUBTREES = ("train", "val", "test")


def _layout_help(root: Path) -> str:
    return (
        f"expected {root}/<class>/<image> (extensions {' '.join(IMAGE_EXTENSIONS)}), optionally "
        f"as {root}/train/<class>/<image> and {root}/test/<class>/<image>; pass --data-root "
        "pointing at the tree"
    )


def _scan(directory: Path) -> tuple[dict[str, list[Path]], int, int]:
    """({class: sorted image paths}, non-image files, loose files) below ``directory``."""
    classes: dict[str, list[Path]] = {}
    other_files = 0
    loose_files = 0
    with os.scandir(directory) as entries:
        children = sorted(entries, key=lambda e: e.name)
    for entry in children:
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            loose_files += 1
            continue
        images: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(entry.path, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in filenames:
                if filename.startswith("."):
                    continue
                if is_image_file(filename):
                    images.append(Path(dirpath) / filename)
                else:
                    other_files += 1
        classes[entry.name] = sorted(images)
    return classes, other_files, loose_files


def read_folder(
    root: Path, *, test_fraction: float = TEST_FRACTION, name: str = "folder"
) -> ImageDataset:
    """Read a ``<root>/<class>/<image>`` tree (see the module docstring for the rules)."""
    root = Path(root)
    if not root.is_dir():
        where = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"no image folder: {root} {where}; {_layout_help(root)}")

    has_subtrees = (root / "train").is_dir() and (root / "test").is_dir()
    if not has_subtrees and ((root / "train").is_dir() or (root / "test").is_dir()):
        present = "train" if (root / "train").is_dir() else "test"
        absent = "test" if present == "train" else "train"
        raise DataError(
            f"{root} has a {present}/ folder but no {absent}/ folder: give both, or put the "
            f"class folders directly under {root} for a seeded {test_fraction:.0%} test split"
        )

    warnings: list[str] = []
    scanned: dict[str, dict[str, list[Path]]] = {}
    other_files = loose_files = 0
    subtrees = [s for s in SUBTREES if (root / s).is_dir()] if has_subtrees else [""]
    for subtree in subtrees:
        classes, other, loose = _scan(root / subtree if subtree else root)
        scanned[subtree] = classes
        other_files += other
        loose_files += loose

    all_names = sorted({c for classes in scanned.values() for c in classes})
    empty = [c for c in all_names if not any(scanned[s].get(c) for s in scanned)]
    class_names = [c for c in all_names if c not in empty]
    if not class_names:
        raise DataError(f"no images found under {root}; {_layout_help(root)}")
    if empty:
        warnings.append(
            f"{plural(len(empty), 'class folder')} without images, skipped: {first_few(empty)}"
        )
    if other_files:
        warnings.append(
            f"{plural(other_files, 'file')} with other extensions ignored (images are "
            f"{' '.join(IMAGE_EXTENSIONS)})"
        )
    if loose_files:
        where = ", ".join(f"{root / s}" for s in subtrees if s) or str(root)
        warnings.append(
            f"{plural(loose_files, 'file')} directly in {where}, outside any class folder, ignored"
        )

    label_of = {c: i for i, c in enumerate(class_names)}
    records: list[ImageRecord] = []
    if has_subtrees:
        for split in subtrees:
            for class_name in class_names:
                for path in scanned[split].get(class_name, []):
                    records.append(ImageRecord(path, label_of[class_name], split))
        for split in ("train", "test"):
            absent = [c for c in class_names if not scanned[split].get(c)]
            if absent:
                warnings.append(
                    f"{plural(len(absent), 'class')} with no {split} images: {first_few(absent)}"
                )
    else:
        for class_name in class_names:
            for path in scanned[""][class_name]:
                records.append(ImageRecord(path, label_of[class_name], "train"))
        _, test_positions = stratified_split(
            [r.label for r in records], test_fraction, TEST_SPLIT_SEED
        )
        for position in test_positions:
            records[position] = replace(records[position], split="test")
    return ImageDataset(
        name=name, root=root, classes=class_names, records=records, warnings=warnings
    )
