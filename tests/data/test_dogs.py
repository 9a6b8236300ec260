"""Stanford Dogs: .mat lists written with scipy.io.savemat, folder names, boxes, errors."""

from __future__ import annotations

import pytest

from hashcli.data import load_dataset
from hashcli.data.dogs import read_dogs
from hashcli.errors import DataError

TRAIN = [
    ("n02085620-Chihuahua/n02085620_1.jpg", 1),
    ("n02099601-golden_retriever/n02099601_7.jpg", 77),
    ("n02085620-Chihuahua/n02085620_2.jpg", 1),
    ("n02113978-Mexican_hairless/n02113978_3.jpg", 120),
]
TEST = [
    ("n02099601-golden_retriever/n02099601_9.jpg", 77),
    ("n02113978-Mexican_hairless/n02113978_4.jpg", 120),
]


@pytest.mark.parametrize("folder", ["StanfordDogs", "Stanford_Dogs", "stanford_dogs", ""])
def test_lists_are_read_and_joined(tmp_path, dogs_builder, folder):
    dogs_builder(tmp_path / folder, TRAIN, TEST)
    dataset = read_dogs(tmp_path)
    assert dataset.root == tmp_path / folder
    assert dataset.classes == [
        "n02085620-Chihuahua",
        "n02099601-golden_retriever",
        "n02113978-Mexican_hairless",
    ]  # labels 1, 77, 120 re-indexed 0, 1, 2
    expected = [
        (rel, split) for split, entries in (("train", TRAIN), ("test", TEST)) for rel, _ in entries
    ]
    got = [
        (r.path.relative_to(dataset.root / "Images").as_posix(), r.split) for r in dataset.records
    ]
    assert got == expected
    for r in dataset.records:
        assert dataset.classes[r.label] == r.path.parent.name
    assert "12,000" in dataset.warnings[0]


def test_lists_beside_images(tmp_path, dogs_builder):
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, TEST, lists_subdir=False)
    assert len(read_dogs(tmp_path).records) == 6


def test_boxes_from_annotations(tmp_path, dogs_builder):
    boxes = {rel: [(1, 2, 4, 5)] for rel, _ in TRAIN + TEST}
    boxes[TRAIN[1][0]] = [(1, 2, 4, 5), (0, 3, 3, 6)]  # two dogs: the enclosing box
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, TEST, boxes=boxes)
    assert not read_dogs(tmp_path).has_boxes  # parsed only when asked
    dataset = load_dataset("dogs", tmp_path, boxes=True)
    by_rel = {
        r.path.relative_to(dataset.root / "Images").as_posix(): r.box for r in dataset.records
    }
    assert by_rel[TRAIN[0][0]] == (1, 2, 3, 3)
    assert by_rel[TRAIN[1][0]] == (0, 2, 4, 4)


def test_boxes_asked_but_annotations_missing(tmp_path, dogs_builder):
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, TEST, boxes={TRAIN[0][0]: [(0, 0, 1, 1)]})
    with pytest.raises(DataError, match="5 images have no annotation file"):
        read_dogs(tmp_path, boxes=True)


def test_missing_images(tmp_path, dogs_builder):
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, TEST, skip_files=(TEST[0][0],))
    with pytest.raises(DataError, match=r"name 1 image that do not exist .*n02099601_9\.jpg"):
        read_dogs(tmp_path)


def test_label_outside_the_classes(tmp_path, dogs_builder):
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, [(TEST[0][0], 121)])
    with pytest.raises(DataError, match=r"labels outside the 120 classes .*: 121"):
        read_dogs(tmp_path)


def test_one_label_for_two_folders(tmp_path, dogs_builder):
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, [(TEST[0][0], 1)])
    with pytest.raises(DataError, match="label 1 is given to images of two folders"):
        read_dogs(tmp_path)


def test_missing_root_names_the_layout(tmp_path):
    with pytest.raises(DataError) as info:
        read_dogs(tmp_path)
    message = str(info.value)
    for part in ("StanfordDogs", "Stanford_Dogs", "stanford_dogs", "Images/", "train_list.mat"):
        assert part in message


def test_images_without_lists(tmp_path):
    (tmp_path / "StanfordDogs" / "Images").mkdir(parents=True)
    with pytest.raises(DataError, match="no lists/train_list.mat"):
        read_dogs(tmp_path)


def test_not_a_mat_file(tmp_path, dogs_builder):
    dogs_builder(tmp_path / "StanfordDogs", TRAIN, TEST)
    (tmp_path / "StanfordDogs" / "lists" / "test_list.mat").write_text("hello")
    with pytest.raises(DataError, match="test_list.mat as a MATLAB file"):
        read_dogs(tmp_path)
