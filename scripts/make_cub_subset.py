"""Build the CUB subset of docs/results.md from the official CUB-200-2011 archive.

    python scripts/make_cub_subset.py ~/data/CUB_200_2011 cub25 --classes 25 --short-side 256

Keeps the images of classes 1 .. ``--classes`` in the official layout (``<out>/CUB_200_2011/``
with ``images/`` and the five list files), shrinks every image whose shorter side is longer than
``--short-side`` to that size (Pillow, Lanczos, JPEG quality 95; smaller images are copied as
they are) and scales its bounding box with it. The list files keep the original image ids and
order, restricted to the kept images, so ``hashret train --dataset cub --data-root <out>`` reads
the subset as it reads the whole dataset. The source is the folder ``CUB_200_2011`` itself or
the folder holding it (what ``tar xzf CUB_200_2011.tgz`` makes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from PIL import Image

LISTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="CUB_200_2011, or the folder holding it")
    parser.add_argument("out", type=Path, help="a new folder; CUB_200_2011/ is made inside")
    parser.add_argument("--classes", type=int, default=25, help="keep classes 1 .. N")
    parser.add_argument("--short-side", type=int, default=256, help="shrink to this (pixels)")
    args = parser.parse_args(argv)
    source = args.source if (args.source / "images.txt").is_file() else args.source / "CUB_200_2011"
    if not (source / "images.txt").is_file():
        sys.exit(f"Error: no CUB_200_2011/images.txt under {args.source}")
    target = args.out / "CUB_200_2011"
    if target.exists():
        sys.exit(f"Error: {target} exists already; choose a new folder")

    labels = dict(_rows(source / "image_class_labels.txt"))
    kept = {image_id for image_id, class_id in labels.items() if int(class_id) <= args.classes}
    paths = dict(_rows(source / "images.txt"))
    scales = {}
    for image_id in sorted(kept, key=int):
        scales[image_id] = _shrink(
            source / "images" / paths[image_id], target / "images" / paths[image_id], args
        )

    for name in LISTS:
        lines = []
        for image_id, rest in _rows(source / name):
            if image_id not in kept:
                continue
            if name == "bounding_boxes.txt":
                sx, sy = scales[image_id]
                x, y, w, h = (float(v) for v in rest.split())
                rest = f"{x * sx:.2f} {y * sy:.2f} {w * sx:.2f} {h * sy:.2f}"
            lines.append(f"{image_id} {rest}\n")
        (target / name).write_text("".join(lines))
    classes = [f"{cid} {name}\n" for cid, name in _rows(source / "classes.txt")]
    (target / "classes.txt").write_text(
        "".join(line for line in classes if int(line.split()[0]) <= args.classes)
    )
    print(f"{len(kept)} images of {args.classes} classes in {target}", file=sys.stderr)


def _rows(path: Path) -> list[tuple[str, str]]:
    """The lines of an official list file as (id, the rest of the line)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            key, rest = line.strip().split(" ", 1)
            rows.append((key, rest))
    return rows


def _shrink(src: Path, dst: Path, args: argparse.Namespace) -> tuple[float, float]:
    """Copy ``src`` to ``dst``, shrunk to ``args.short_side``; the (x, y) scale applied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as image:
        width, height = image.size
        if min(width, height) <= args.short_side:
            shutil.copyfile(src, dst)
            return 1.0, 1.0
        ratio = args.short_side / min(width, height)
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(dst, quality=95)
    return size[0] / width, size[1] / height


if __name__ == "__main__":
    main()
