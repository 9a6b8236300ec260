"""The built-in digits: extracted as real PNG files that match the packaged arrays."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from hashcli.data import load_dataset
from hashcli.data._common import MARKER
from hashcli.data.digits import builtin_digits, ensure_digits
from hashcli.errors import DataError


def test_extraction_matches_the_npz(tmp_path):
    dataset = load_dataset("digits", tmp_path)
    images, labels = builtin_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert dataset.root == tmp_path / "digits"
    assert dataset.classes == [str(d) for d in range(10)]
    assert len(dataset.records) == 1797
    assert dataset.image_size == 32 and dataset.hflip is False
    rows = set()
    for record in dataset.records:
        row = int(record.path.stem)
        rows.add(row)
        split_dir = record.path.parent.parent.name
        assert split_dir == ("test" if record.split == "test" else "train")
        assert record.path.parent.name == str(labels[row]) == dataset.classes[record.label]
    assert rows == set(range(1797))
    # Pixel values: 0..16 scaled to 0..255, rounded half up (no exact halves occur anyway).
    for record in dataset.records[::97]:
        row = int(record.path.stem)
        png = np.asarray(Image.open(record.path))
        assert png.dtype == np.uint8 and png.shape == (8, 8)
        assert np.array_equal(png, (images[row].astype(np.int64) * 255 + 8) // 16)
    assert (tmp_path / "digits" / "DIGITS_README.md").read_text().startswith("# Built-in")


def test_fixed_stratified_80_20_split(tmp_path):
    dataset = load_dataset("digits", tmp_path, val_fraction=0)
    per_class = Counter(r.label for r in dataset.records)
    test = Counter(r.label for r in dataset.records if r.split == "test")
    for label, n in per_class.items():
        assert test[label] == round(n * 0.2)
    # The split on disk does not depend on the val seed.
    again = load_dataset("digits", tmp_path, seed=9)
    assert {r.path for r in again.records if r.split == "test"} == {
        r.path for r in dataset.records if r.split == "test"
    }


def test_second_call_reuses_the_files(tmp_path):
    folder, warnings = ensure_digits(tmp_path)
    assert warnings == []
    sample = folder / "train" / "0" / "0000.png"
    stamp = sample.stat().st_mtime_ns
    os.utime(sample, ns=(stamp - 10**9, stamp - 10**9))
    assert ensure_digits(tmp_path) == (folder, [])
    assert sample.stat().st_mtime_ns == stamp - 10**9  # not rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # no temporary folder left
    assert (folder / MARKER).is_file()


def test_an_incomplete_folder_is_not_trusted(tmp_path):
    (tmp_path / "digits" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="not a complete extraction"):
        load_dataset("digits", tmp_path)


def test_an_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch):
    real_save = Image.Image.save
    calls = []

    def save_then_fail(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 300:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        ensure_digits(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither digits/ nor the temporary folder
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert len(load_dataset("digits", tmp_path).records) == 1797


def test_unwritable_data_root_falls_back_to_the_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a data root that is a file cannot hold folders")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dataset = load_dataset("digits", blocker)
    assert dataset.root == tmp_path / "cache" / "hashret" / "digits"
    assert len(dataset.records) == 1797
    assert "not writable" in dataset.warnings[0] and str(dataset.root) in dataset.warnings[0]
