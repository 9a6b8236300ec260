"""Builders for tiny datasets written on the fly: each returns what it wrote (the oracle).

Shared by the test folders (``pythonpath = ["tests"]`` in pyproject.toml): ``from builders
import build_cub``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 5)) -> Path:
    """A solid-colour image (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _color(i: int) -> tuple[int, int, int]:
    return (37 * i % 256, 91 * i % 256, 53 * i % 256)


def build_cub(
    base: Path,
    images: list[tuple[int, int, int]],
    class_names: dict[int, str],
    *,
    seed: int = 0,
    skip_files: tuple[int, ...] = (),
    boxes: bool = True,
) -> dict[str, dict]:
    """Write CUB_200_2011/ under ``base``: ``images`` = [(image id, class id, is_train)].

    Every list file is shuffled with its own order, so only a join by id reads it right.
    Returns {relative path: {"class": name, "split": ..., "box": (x, y, w, h), "id": id}}.
    """
    cub = base / "CUB_200_2011"
    (cub / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    expected = {}
    lines = {"images": [], "labels": [], "split": [], "boxes": []}
    for image_id, class_id, is_train in images:
        rel = f"{class_names[class_id]}/img_{image_id:05d}.jpg"
        box = (float(image_id % 3), float(image_id % 2), 3.5, 2.0 + image_id % 3)
        expected[rel] = {
            "class": class_names[class_id],
            "split": "train" if is_train else "test",
            "box": box,
            "id": image_id,
        }
        if image_id not in skip_files:
            write_image(cub / "images" / rel, _color(image_id))
        lines["images"].append(f"{image_id} {rel}")
        lines["labels"].append(f"{image_id} {class_id}")
        lines["split"].append(f"{image_id} {int(is_train)}")
        lines["boxes"].append(f"{image_id} {box[0]} {box[1]} {box[2]} {box[3]}")
    class_lines = [f"{cid} {name}" for cid, name in class_names.items()]
    files = {
        "images.txt": lines["images"],
        "image_class_labels.txt": lines["labels"],
        "train_test_split.txt": lines["split"],
        "classes.txt": class_lines,
    }
    if boxes:
        files["bounding_boxes.txt"] = lines["boxes"]
    for name, content in files.items():
        content = list(content)
        rng.shuffle(content)
        (cub / name).write_text("\n".join(content) + "\n")
    return expected


def build_dogs(
    folder: Path,
    train: list[tuple[str, int]],
    test: list[tuple[str, int]],
    *,
    skip_files: tuple[str, ...] = (),
    boxes: dict[str, list[tuple[int, int, int, int]]] | None = None,
    lists_subdir: bool = True,
) -> None:
    """Write a Stanford Dogs tree: Images/<rel>, lists/{train,test}_list.mat, Annotation/."""
    from scipy.io import savemat

    for i, (rel, _) in enumerate(train + test):
        if rel not in skip_files:
            write_image(folder / "Images" / rel, _color(i))
    lists = folder / "lists" if lists_subdir else folder
    lists.mkdir(parents=True, exist_ok=True)
    for split, entries in (("train", train), ("test", test)):
        # MATLAB cell arrays of strings: an object array of 1-element string arrays, (N, 1).
        cell = np.empty((len(entries), 1), dtype=object)
        for i, (rel, _) in enumerate(entries):
            cell[i, 0] = np.array([rel])
        annotations = np.empty((len(entries), 1), dtype=object)
        for i, (rel, _) in enumerate(entries):
            annotations[i, 0] = np.array([rel.rsplit(".", 1)[0]])
        labels = np.array([[label] for _, label in entries], dtype=np.uint8)
        savemat(
            lists / f"{split}_list.mat",
            {"file_list": cell, "annotation_list": annotations, "labels": labels},
        )
    for rel, objects in (boxes or {}).items():
        xml = "".join(
            f"<object><name>dog</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
            f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
            for a, b, c, d in objects
        )
        path = folder / "Annotation" / rel.rsplit(".", 1)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<annotation><size><width>6</width></size>{xml}</annotation>")


CIFAR_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def build_cifar(base: Path, per_class: int, *, seed: int = 0):
    """Write ``base/cifar-10-batches-py`` as the official python archive lays it out: five
    data batches and a test batch (pickled dicts with bytes keys, ``data`` an (N, 3072) uint8
    array of channel planes), ``batches.meta`` with the label names.

    ``per_class`` images of each of the 10 classes, shuffled, 5/6 of them over the data
    batches. Returns (images uint8 (N, 32, 32, 3), labels int64 (N,)) in the merged order.
    """
    import pickle

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    images = rng.integers(0, 256, size=(len(labels), 32, 32, 3), dtype=np.uint8)
    folder = base / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    n_train = len(labels) * 5 // 6
    bounds = np.linspace(0, n_train, 6).astype(int)
    parts = [(f"data_batch_{i + 1}", bounds[i], bounds[i + 1]) for i in range(5)]
    parts.append(("test_batch", n_train, len(labels)))
    for name, start, stop in parts:
        rows = images[start:stop].transpose(0, 3, 1, 2).reshape(stop - start, 3072)
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels[start:stop].tolist(),
            b"data": rows,
            b"filenames": [f"img_{i}.png".encode() for i in range(start, stop)],
        }
        # the official archive was pickled by numpy 1 under Python 2: numpy.core's name
        data = pickle.dumps(batch, protocol=2)
        (folder / name).write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    meta = {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in CIFAR_NAMES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return images, labels.astype(np.int64)


def build_lists(
    base: Path, rows: dict[str, list[tuple[int, ...]]], classes: int, *, names: bool = True
) -> dict[str, list[tuple[Path, tuple[int, ...]]]]:
    """A list-file dataset in ``base``: for each of train / test / database, one noise image
    per row of positive classes, listed as ``images/<file>.png v1 .. vC``. Returns the oracle:
    {split: [(image path, positives)]}."""
    rng = np.random.default_rng(len(rows))
    written: dict[str, list[tuple[Path, tuple[int, ...]]]] = {}
    base.mkdir(parents=True, exist_ok=True)
    for split, positives in rows.items():
        lines, written[split] = [], []
        for i, labels in enumerate(positives):
            rel = f"images/{split}_{i:03d}.png"
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            (base / "images").mkdir(exist_ok=True)
            Image.fromarray(pixels).save(base / rel)
            vector = " ".join("1" if c in labels else "0" for c in range(classes))
            lines.append(f"{rel} {vector}\n")
            written[split].append((base / rel, tuple(sorted(labels))))
        (base / f"{split}.txt").write_text("".join(lines))
    if names:
        (base / "classes.txt").write_text("".join(f"class {c}\n" for c in range(classes)))
    return written
