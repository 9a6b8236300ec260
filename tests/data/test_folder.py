"""Folder datasets: with and without train/test subtrees, extensions, hidden and empty folders."""

from __future__ import annotations

from collections import Counter

import pytest

from hashcli.data import load_dataset
from hashcli.data.folder import read_folder
from hashcli.errors import DataError


def _tree(root, layout, writer):
    """layout: {relative path: colour index}; returns the set of written image paths."""
    written = set()
    for i, rel in enumerate(layout):
        written.add(writer(root / rel, (i, 2 * i % 256, 3 * i % 256)))
    return written


def test_flat_tree_gets_a_stratified_test_split(tmp_path, image_writer):
    layout = [f"cat/{i}.jpg" for i in range(10)] + [f"dog/{i}.PNG" for i in range(5)]
    layout += ["solo/only.bmp"]
    written = _tree(tmp_path, layout, image_writer)
    dataset = read_folder(tmp_path)
    assert dataset.classes == ["cat", "dog", "solo"]
    assert {r.path for r in dataset.records} == written
    for r in dataset.records:
        assert dataset.classes[r.label] == r.path.parent.name
    test = Counter(dataset.classes[r.label] for r in dataset.records if r.split == "test")
    assert test == {"cat": 2, "dog": 1}  # 20%; a single image stays in train
    assert read_folder(tmp_path).records == dataset.records  # fixed seed


def test_test_fraction_option(tmp_path, image_writer):
    _tree(tmp_path, [f"a/{i}.png" for i in range(10)], image_writer)
    dataset = load_dataset("folder", tmp_path, test_fraction=0.5, val_fraction=0.2)
    assert dataset.counts() == {"train": 4, "val": 1, "test": 5, "database": 0}


def test_train_test_subtrees(tmp_path, image_writer):
    layout = ["train/b/1.jpg", "train/b/2.jpg", "train/a/1.jpeg", "test/a/9.png", "test/c/1.tif"]
    written = _tree(tmp_path, layout, image_writer)
    dataset = read_folder(tmp_path)
    assert dataset.classes == ["a", "b", "c"]  # union, sorted
    assert {r.path for r in dataset.records} == written
    for r in dataset.records:
        rel = r.path.relative_to(tmp_path)
        assert r.split == rel.parts[0]
        assert dataset.classes[r.label] == rel.parts[1]
    assert any("no test images: b" in w for w in dataset.warnings)
    assert any("no train images: c" in w for w in dataset.warnings)


def test_val_subtree_is_used_instead_of_carving(tmp_path, image_writer):
    _tree(tmp_path, ["train/a/1.png", "train/a/2.png", "val/a/3.png", "test/a/4.png"], image_writer)
    dataset = load_dataset("folder", tmp_path)
    assert dataset.counts() == {"train": 2, "val": 1, "test": 1, "database": 0}


def test_hidden_non_image_and_nested_files(tmp_path, image_writer):
    written = _tree(tmp_path, ["a/1.jpg", "a/sub/2.webp", "b/3.GIF"], image_writer)
    _tree(tmp_path, ["a/.hidden.jpg", ".cache/x/1.jpg", "a/.git/4.png"], image_writer)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "loose.jpg").write_bytes(b"")
    dataset = read_folder(tmp_path)
    assert dataset.classes == ["a", "b"]
    assert {r.path for r in dataset.records} == written
    assert any("other extensions" in w for w in dataset.warnings)
    assert any("outside any class folder" in w for w in dataset.warnings)


def test_empty_class_folder_is_a_warning(tmp_path, image_writer):
    _tree(tmp_path, ["a/1.jpg", "a/2.jpg"], image_writer)
    (tmp_path / "empty").mkdir()
    dataset = read_folder(tmp_path)
    assert dataset.classes == ["a"]
    assert any("without images, skipped: empty" in w for w in dataset.warnings)


def test_no_images_at_all(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images found"):
        read_folder(tmp_path)


def test_missing_root_explains_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*<class>/<image>.*--data-root"):
        read_folder(tmp_path / "absent")


def test_train_without_test_is_an_error(tmp_path, image_writer):
    _tree(tmp_path, ["train/a/1.jpg"], image_writer)
    with pytest.raises(DataError, match="train/ folder but no test/"):
        read_folder(tmp_path)
