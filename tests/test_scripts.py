"""scripts/: the CUB subset builder keeps classes 1..N, shrinks images and scales their boxes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from builders import build_cub
from PIL import Image

from hashcli.data import load_dataset

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NAMES = {1: "001.A", 2: "002.B", 3: "003.C"}
# (image id, class id, is_train): class 3 is dropped with --classes 2.
IMAGES = [(10, 1, 1), (11, 1, 0), (20, 2, 1), (21, 2, 0), (30, 3, 1), (31, 3, 0)]


def test_cub_subset_keeps_the_first_classes_shrinks_images_and_scales_boxes(tmp_path):
    expected = build_cub(tmp_path / "src", IMAGES, NAMES)
    images = tmp_path / "src" / "CUB_200_2011" / "images"
    # One tall image to shrink (short side 40 -> 20), one small one to copy unchanged.
    Image.new("RGB", (40, 60), (200, 10, 10)).save(images / "001.A" / "img_00010.jpg")
    out = tmp_path / "cub2"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "make_cub_subset.py"),
            str(tmp_path / "src"),
            str(out),
            "--classes",
            "2",
            "--short-side",
            "20",
        ],
        check=True,
        capture_output=True,
    )
    dataset = load_dataset("cub", root=out)
    kept = {rel: e for rel, e in expected.items() if not rel.startswith("003")}
    base = out / "CUB_200_2011" / "images"
    got = {r.path.relative_to(base).as_posix(): r for r in dataset.records}
    assert set(got) == set(kept)
    for rel, record in got.items():
        assert dataset.classes[record.label] == kept[rel]["class"]
        assert record.split == kept[rel]["split"]
    with Image.open(base / "001.A" / "img_00010.jpg") as image:
        assert image.size == (20, 30)
    x, y, w, h = kept["001.A/img_00010.jpg"]["box"]
    assert got["001.A/img_00010.jpg"].box == pytest.approx((x / 2, y / 2, w / 2, h / 2), abs=0.01)
    small = "002.B/img_00020.jpg"
    assert (base / small).read_bytes() == (images / small).read_bytes()
    assert got[small].box == pytest.approx(kept[small]["box"])
    classes = (out / "CUB_200_2011" / "classes.txt").read_text().split()
    assert classes == ["1", "001.A", "2", "002.B"]


def test_cub_subset_refuses_a_folder_that_exists(tmp_path):
    build_cub(tmp_path / "src", IMAGES, NAMES)
    (tmp_path / "out" / "CUB_200_2011").mkdir(parents=True)
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "make_cub_subset.py"),
            str(tmp_path / "src"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error:")
