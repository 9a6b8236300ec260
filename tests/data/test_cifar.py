"""CIFAR-10: the official python batches read safely, the three protocols' split counts, a
split that never moves, and the database role."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter

import numpy as np
import pytest
from builders import CIFAR_NAMES, build_cifar
from PIL import Image

from hashcli.data import cifar, load_dataset
from hashcli.errors import DataError

FULL_LABELS = (np.arange(60000) % 10).tolist()
# Small protocols for a small archive (12 images per class): test, train per class.
SMALL = {
    "cifar10": (2, 5, False, True),
    "cifar10-1": (2, 5, True, True),
    "cifar10-2": (3, 9, True, False),
}


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("cifar10", {"test": 1000, "train": 5000, "database": 54000}),
        ("cifar10-1", {"test": 1000, "train": 5000, "database": 54000}),
        ("cifar10-2", {"test": 10000, "train": 50000, "": 0}),
    ],
)
def test_protocol_counts_at_full_size(protocol, expected):
    splits = cifar.protocol_splits(FULL_LABELS, protocol)
    counts = Counter(splits)
    assert {k: counts.get(k, 0) for k in expected} == expected
    per_class = Counter((label, split) for label, split in zip(FULL_LABELS, splits, strict=True))
    test, train = cifar.PROTOCOLS[protocol][:2]
    for label in range(10):
        assert per_class[(label, "test")] == test and per_class[(label, "train")] == train


def test_the_split_is_fixed_by_the_documented_rule():
    """Per class, images sorted by SHA-256 of "cifar10:0:<index>": the first 100 are test, the
    next 500 train. Pinned values: a change of the rule shows here."""
    splits = cifar.protocol_splits(FULL_LABELS, "cifar10")
    class_0 = [i for i in range(60000) if FULL_LABELS[i] == 0]
    ordered = sorted(class_0, key=lambda i: hashlib.sha256(f"cifar10:0:{i}".encode()).digest())
    assert [i for i in class_0 if splits[i] == "test"] == sorted(ordered[:100])
    assert [i for i in class_0 if splits[i] == "train"] == sorted(ordered[100:600])
    assert sorted(ordered[:100])[:5] == [140, 480, 740, 1090, 1740]
    # cifar10 and cifar10-1 test and train on the same images
    assert cifar.protocol_splits(FULL_LABELS, "cifar10-1") == splits


@pytest.fixture
def archive(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "PROTOCOLS", SMALL)
    images, labels = build_cifar(tmp_path / "data", per_class=12)
    return tmp_path / "data", images, labels


def test_reads_pixels_labels_and_roles(archive):
    root, images, labels = archive
    dataset = load_dataset("cifar10", root)
    assert dataset.classes == CIFAR_NAMES
    assert dataset.counts() == {"train": 40, "val": 10, "test": 20, "database": 50}
    assert dataset.role_counts() == {"train": 40, "val": 10, "database": 50, "test": 20}
    for record in dataset.records:
        index = int(record.path.stem)
        assert record.label == labels[index]
        assert record.path.parent.name == CIFAR_NAMES[labels[index]]
        with Image.open(record.path) as image:
            assert np.array_equal(np.asarray(image), images[index])
    roles = {name: {r.path for r in dataset.role(name)} for name in ("train", "val", "test")}
    database = {r.path for r in dataset.role("database")}
    assert not database & (roles["train"] | roles["val"] | roles["test"])
    assert len(database | roles["train"] | roles["val"] | roles["test"]) == 120


def test_the_other_protocols_databases(archive):
    root, _, _ = archive
    one = load_dataset("cifar10-1", root)
    assert one.role_counts() == {"train": 40, "val": 10, "database": 100, "test": 20}
    train = {r.path for r in one.role("train") + one.role("val")}
    assert train < {r.path for r in one.role("database")}
    two = load_dataset("cifar10-2", root)
    assert two.counts() == {"train": 80, "val": 10, "test": 30, "database": 0}
    assert {r.path for r in two.role("database")} == {
        r.path for r in two.role("train") + two.role("val")
    }


def test_the_split_does_not_follow_the_training_seed(archive):
    root, _, _ = archive
    a, b = load_dataset("cifar10", root, seed=0), load_dataset("cifar10", root, seed=3)
    for role in ("test", "database"):
        assert [r.path for r in a.role(role)] == [r.path for r in b.role(role)]
    train_a = {r.path for r in a.role("train") + a.role("val")}
    assert train_a == {r.path for r in b.role("train") + b.role("val")}


def test_later_loads_read_no_batch_and_the_root_may_be_the_batches_folder(archive):
    root, _, _ = archive
    first = load_dataset("cifar10", root)
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        (root / cifar.BATCHES / name).write_bytes(b"not a pickle")
    again = load_dataset("cifar10", root / cifar.BATCHES)
    assert [(r.path, r.label, r.split) for r in again.records] == [
        (r.path, r.label, r.split) for r in first.records
    ]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_batch_that_would_run_code_is_refused(archive, monkeypatch):
    root, _, _ = archive
    monkeypatch.chdir(root)
    batch = {b"data": _RunsCode(), b"labels": []}
    (root / cifar.BATCHES / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR-10 python batch.*posix"):
        load_dataset("cifar10", root)
    assert not (root / "pwned").exists()
    assert not (root / cifar.PNG_FOLDER).exists()  # nothing half-written


def test_missing_files_are_named(archive, tmp_path):
    root, _, _ = archive
    (root / cifar.BATCHES / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        load_dataset("cifar10", root)
    with pytest.raises(DataError, match="hashret data download cifar10"):
        load_dataset("cifar10", tmp_path / "empty")


def test_too_few_images_per_class_for_the_protocol(tmp_path):
    build_cifar(tmp_path, per_class=12)
    with pytest.raises(DataError, match="100 test and 500 train images of each class"):
        load_dataset("cifar10", tmp_path)
