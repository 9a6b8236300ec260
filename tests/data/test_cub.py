"""CUB-200-2011 reader: join by id, subsets, boxes, and the errors a person can act on."""

from __future__ import annotations

import pytest

from hashcli.data import load_dataset
from hashcli.data.cub import read_cub
from hashcli.errors import DataError

NAMES = {
    3: "003.Sooty_Albatross",
    7: "007.Parakeet_Auklet",
    12: "012.Yellow_headed_Blackbird",
    40: "040.Olive_sided_Flycatcher",
}
# (image id, class id, is_train): ids not contiguous, not starting at 1; class 40 has no image.
IMAGES = [
    (905, 12, 1),
    (17, 3, 0),
    (230, 7, 1),
    (18, 3, 1),
    (4001, 12, 0),
    (231, 7, 0),
    (19, 3, 1),
    (232, 7, 1),
    (906, 12, 1),
]


def _check_against(dataset, expected, base):
    assert len(dataset.records) == len(expected)
    images = base / "CUB_200_2011" / "images"
    for record in dataset.records:
        rel = record.path.relative_to(images).as_posix()
        want = expected[rel]
        assert dataset.classes[record.label] == want["class"], rel
        assert record.split == want["split"], rel
        assert record.box == pytest.approx(want["box"]), rel


def test_ids_out_of_line_order_are_joined_by_id(tmp_path, cub_builder):
    expected = cub_builder(tmp_path, IMAGES, NAMES, seed=1)
    dataset = read_cub(tmp_path)
    _check_against(dataset, expected, tmp_path)
    # Records come in image-id order.
    ids = [
        expected[r.path.relative_to(dataset.root / "images").as_posix()]["id"]
        for r in dataset.records
    ]
    assert ids == sorted(ids)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_other_shuffles_give_the_same_dataset(tmp_path, cub_builder, seed):
    expected = cub_builder(tmp_path, IMAGES, NAMES, seed=seed)
    _check_against(read_cub(tmp_path / "CUB_200_2011"), expected, tmp_path)


def test_class_subset_drops_empty_classes_and_reindexes(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES)
    dataset = read_cub(tmp_path)
    # Class 40 has no image: dropped; the others keep classes.txt order and names.
    assert dataset.classes == [NAMES[3], NAMES[7], NAMES[12]]
    assert sorted({r.label for r in dataset.records}) == [0, 1, 2]
    assert dataset.counts() == {"train": 6, "val": 0, "test": 3, "database": 0}
    assert len(dataset.warnings) == 1 and "5,994" in dataset.warnings[0]


def test_root_may_be_the_folder_or_its_parent(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES)
    a = read_cub(tmp_path)
    b = read_cub(tmp_path / "CUB_200_2011")
    assert a.root == b.root == tmp_path / "CUB_200_2011"
    assert a.records == b.records


def test_missing_root_says_which_layout_and_files(tmp_path):
    with pytest.raises(DataError) as info:
        read_cub(tmp_path / "nowhere")
    message = str(info.value)
    assert "does not exist" in message
    for name in ("CUB_200_2011", "images.txt", "image_class_labels.txt", "train_test_split.txt"):
        assert name in message


def test_missing_list_file_is_named(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES)
    (tmp_path / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(DataError, match="missing train_test_split.txt"):
        read_cub(tmp_path)


def test_missing_images_are_counted_and_the_first_shown(tmp_path, cub_builder):
    missing_ids = (17, 230, 231, 232, 905, 906, 4001)
    cub_builder(tmp_path, IMAGES, NAMES, skip_files=missing_ids)
    with pytest.raises(DataError) as info:
        read_cub(tmp_path)
    message = str(info.value)
    assert "7 images that do not exist" in message
    assert "img_00017.jpg" in message  # first few shown, in id order
    assert "(and 2 more)" in message


def test_label_outside_classes_txt(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES)
    labels = tmp_path / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("230 7", "230 205"))
    with pytest.raises(DataError, match=r"classes\.txt does not list: 205"):
        read_cub(tmp_path)


def test_image_without_a_label_entry(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES)
    labels = tmp_path / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(
        "\n".join(x for x in labels.read_text().splitlines() if not x.startswith("19 "))
    )
    with pytest.raises(
        DataError, match=r"image_class_labels\.txt has no entry for 1 image id .*19"
    ):
        read_cub(tmp_path)


def test_malformed_line_is_located(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES)
    split = tmp_path / "CUB_200_2011" / "train_test_split.txt"
    split.write_text(split.read_text() + "oops 1\n")
    with pytest.raises(DataError, match=r"train_test_split\.txt, line 10: the id 'oops'"):
        read_cub(tmp_path)


def test_boxes_optional_unless_asked(tmp_path, cub_builder):
    cub_builder(tmp_path, IMAGES, NAMES, boxes=False)
    dataset = read_cub(tmp_path)
    assert not dataset.has_boxes
    with pytest.raises(DataError, match="bounding_boxes.txt"):
        read_cub(tmp_path, boxes=True)


def test_load_dataset_carves_val_from_train(tmp_path, cub_builder):
    many = [(100 + i, 3 if i % 2 else 7, int(i % 5 != 0)) for i in range(40)]
    cub_builder(tmp_path, many, NAMES)
    plain = read_cub(tmp_path)
    dataset = load_dataset("cub", tmp_path, val_fraction=0.25, seed=5)
    counts, before = dataset.counts(), plain.counts()
    assert counts["test"] == before["test"]
    assert counts["train"] + counts["val"] == before["train"]
    # 16 train images per class: round(16 * 0.25) = 4 of each class become val.
    for label in (0, 1):
        assert sum(r.split == "val" and r.label == label for r in dataset.records) == 4
    # Only train images move, and paths/labels are unchanged.
    for old, new in zip(plain.records, dataset.records, strict=True):
        assert (old.path, old.label) == (new.path, new.label)
        assert new.split == old.split or (old.split, new.split) == ("train", "val")


def test_real_cub_subset(cub25_root):
    dataset = load_dataset("cub", cub25_root)
    counts = dataset.counts()
    assert dataset.num_classes == 25
    assert counts["train"] + counts["val"] == 750
    assert counts["val"] == 75  # 3 of each class's 29-31 train images
    assert counts["test"] == 652
    assert dataset.has_boxes
    assert dataset.warnings and "5,994" in dataset.warnings[0]
    # The same ids, looked up independently in the list files.
    lists = cub25_root / "CUB_200_2011"
    path_of = dict(line.split() for line in (lists / "images.txt").read_text().splitlines())
    train_of = dict(
        line.split() for line in (lists / "train_test_split.txt").read_text().splitlines()
    )
    class_of = dict(
        line.split() for line in (lists / "image_class_labels.txt").read_text().splitlines()
    )
    names = dict(line.split() for line in (lists / "classes.txt").read_text().splitlines())
    by_path = {r.path.relative_to(lists / "images").as_posix(): r for r in dataset.records}
    for image_id, rel in path_of.items():
        record = by_path[rel]
        assert dataset.classes[record.label] == names[class_of[image_id]]
        assert (record.split == "test") == (train_of[image_id] == "0")
