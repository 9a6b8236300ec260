"""List-file datasets (HashNet / DeepHash-pytorch format): single- and multi-label, the three
files' roles, and errors that name the file and line."""

from __future__ import annotations

import pytest
from builders import build_lists

from hashcli.data import load_dataset
from hashcli.errors import DataError

ONE_HOT = {
    "train": [(0,), (1,), (2,), (0,), (1,), (2,)],
    "test": [(0,), (2,)],
    "database": [(1,), (2,), (0,)],
}
MULTI = {
    "train": [(0, 2), (1,), (), (0, 1, 2), (2,), (1, 2)],
    "test": [(0,), (1, 2)],
    "database": [(0, 1), (), (2,)],
}


def _records(dataset, split):
    return [(r.path, r.label, r.labels) for r in dataset.records if r.split == split]


def test_one_hot_lists_are_single_label(tmp_path):
    written = build_lists(tmp_path, ONE_HOT, 3)
    dataset = load_dataset("lists", tmp_path, val_fraction=0)
    assert not dataset.multi_label and dataset.classes == ["class 0", "class 1", "class 2"]
    for split, rows in written.items():
        assert _records(dataset, split) == [(p, labels[0], None) for p, labels in rows]
    assert dataset.database_splits == ("database",)
    assert [r.path for r in dataset.role("database")] == [p for p, _ in written["database"]]


def test_multi_hot_lists_are_multi_label(tmp_path):
    written = build_lists(tmp_path, MULTI, 3, names=False)
    dataset = load_dataset("lists", tmp_path, val_fraction=0)
    assert dataset.multi_label and dataset.classes == ["0", "1", "2"]
    for split, rows in written.items():
        expected = [(p, labels[0] if labels else -1, labels) for p, labels in rows]
        assert _records(dataset, split) == expected


def test_without_database_txt_the_database_is_the_train_split(tmp_path):
    build_lists(tmp_path, {"train": ONE_HOT["train"], "test": ONE_HOT["test"]}, 3)
    dataset = load_dataset("lists", tmp_path)
    assert dataset.role_counts()["database"] == 6 and dataset.database_splits == ("train", "val")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("images/x.png 0 1", r"test.txt:3: 2 label values where the lists have 3"),
        ("images/x.png 0 2 0", r"test.txt:3: label values must be 0 or 1, got '2'"),
        ("images/x.png", r"test.txt:3: no label vector after the path 'images/x.png'"),
    ],
)
def test_a_bad_line_names_the_file_and_line(tmp_path, line, message):
    build_lists(tmp_path, ONE_HOT, 3)
    with (tmp_path / "test.txt").open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset("lists", tmp_path)


def test_missing_files_and_class_names(tmp_path):
    with pytest.raises(DataError, match="no train.txt or test.txt in"):
        load_dataset("lists", tmp_path)
    build_lists(tmp_path, ONE_HOT, 3)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="names 2 classes; the label vectors have 3"):
        load_dataset("lists", tmp_path)
