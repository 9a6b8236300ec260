"""Code files: HDF5 v1 round trip, atomic writes, block reads, .npz input, format errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hashcli.codes import (
    FORMAT_NAME,
    CodeFile,
    iter_code_blocks,
    pack_bits,
    read_codes,
    store,
    write_codes,
)
from hashcli.errors import FormatError, HashretError


def _codes(n: int = 30, bits: int = 12, seed: int = 0, multi: bool = False) -> CodeFile:
    rng = np.random.default_rng(seed)
    labels = rng.random((n, 4)) < 0.4 if multi else rng.integers(0, 5, n)
    return CodeFile(
        codes=pack_bits(rng.standard_normal((n, bits))),
        bits=bits,
        labels=labels,
        paths=[f"images/{i:03d}/ünïcode bird {i}.jpg" for i in range(n)],
        ids=np.arange(100, 100 + n),
        attrs={"model_fingerprint": "abc123", "backbone": "resnet18", "split": "test"},
    )


@pytest.mark.parametrize("multi", [False, True])
def test_round_trip(tmp_path, multi):
    original = _codes(multi=multi)
    path = write_codes(tmp_path / "codes.h5", original)
    back = read_codes(path)
    assert back.bits == 12 and back.codes.dtype == np.uint8
    assert np.array_equal(back.codes, original.codes)
    assert np.array_equal(back.labels, original.labels)
    assert back.labels.dtype == (np.bool_ if multi else np.int64)
    assert back.paths == original.paths
    assert np.array_equal(back.ids, original.ids)
    assert back.attrs["backbone"] == "resnet18" and back.attrs["model_fingerprint"] == "abc123"
    assert back.attrs["created"].endswith("+00:00")  # added, UTC
    assert back.multi_label is multi
    with h5py.File(path) as f:  # the layout other tools rely on
        assert f.attrs["format"] == FORMAT_NAME and f.attrs["format_version"] == 1
        assert f.attrs["bits"] == 12
        assert f["codes"].chunks is not None
        assert f["labels"].dtype == (np.uint8 if multi else np.int64)


def test_a_few_lines_of_h5py_make_a_valid_file(tmp_path):
    # What docs/format.md tells other tools to do.
    path = tmp_path / "other.h5"
    bits01 = np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1, 1]], dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("codes", data=np.packbits(bits01, axis=1))
        f.create_dataset("labels", data=np.array([3], dtype=np.int64))
        f.attrs["format"] = "hashret.codes"
        f.attrs["format_version"] = 1
        f.attrs["bits"] = 10
    cf = read_codes(path)
    assert cf.codes.tolist() == [[0b10110001, 0b11000000]] and cf.labels.tolist() == [3]


def test_empty_file_round_trips(tmp_path):
    empty = CodeFile(np.zeros((0, 2), np.uint8), 16, labels=np.zeros(0, np.int64), paths=[])
    back = read_codes(write_codes(tmp_path / "empty.h5", empty))
    assert len(back) == 0 and back.paths == []
    assert list(iter_code_blocks(tmp_path / "empty.h5", 4)) == []


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_block_reading(tmp_path, suffix):
    cf = _codes(n=23)
    if suffix == ".h5":
        path = write_codes(tmp_path / "c.h5", cf)
    else:
        path = tmp_path / "c.npz"
        np.savez(path, codes=cf.codes, bits=cf.bits, labels=cf.labels)
    blocks = list(iter_code_blocks(path, block_rows=5))
    assert [b.start for b in blocks] == [0, 5, 10, 15, 20]
    assert np.array_equal(np.concatenate([b.codes for b in blocks]), cf.codes)
    assert np.array_equal(np.concatenate([b.labels for b in blocks]), cf.labels)


def _fail_mid_write(monkeypatch):
    real = store._write_datasets

    def boom(h5file, cf):
        real(h5file, cf)  # everything is written to the temporary file...
        raise KeyboardInterrupt  # ...then the user presses Ctrl-C

    monkeypatch.setattr(store, "_write_datasets", boom)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    _fail_mid_write(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_codes(tmp_path / "codes.h5", _codes())
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    old = _codes(seed=1)
    write_codes(tmp_path / "codes.h5", old)
    _fail_mid_write(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_codes(tmp_path / "codes.h5", _codes(seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["codes.h5"]
    assert np.array_equal(read_codes(tmp_path / "codes.h5").codes, old.codes)


def _write_raw(path, **changes):
    """A code file written by hand with h5py, with ``changes`` applied."""
    datasets = {
        "codes": np.zeros((3, 2), np.uint8),
        "labels": np.zeros(3, np.int64),
    }
    attrs = {"format": "hashret.codes", "format_version": 1, "bits": 16}
    for key, value in changes.items():
        target = attrs if key in attrs else datasets
        if value is None:
            target.pop(key)
        else:
            target[key] = value
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f.create_dataset(name, data=data)
        f.attrs.update(attrs)
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "something.else"}, "expected 'hashret.codes'"),
        ({"format": None}, "attribute 'format'"),
        ({"format_version": 2}, "format_version 2 is not supported.*upgrade hashret"),
        ({"bits": 0}, "'bits' must be a positive integer"),
        ({"bits": 24}, r"uint8 \(N, 3\) for 24 bits"),
        ({"codes": None}, "dataset 'codes' is missing"),
        ({"codes": np.zeros((3, 2), np.int32)}, "must be uint8"),
        ({"labels": np.zeros(4, np.int64)}, "4 labels for 3 codes"),
        ({"labels": np.zeros((3, 2), np.float32)}, "'labels' must be int64"),
        ({"labels": np.full((3, 2), 2, np.uint8)}, "only 0 and 1"),
        ({"bits": 14, "codes": np.full((3, 2), 1, np.uint8)}, "unused low bits"),
    ],
)
def test_format_errors_name_the_file_and_what_was_expected(tmp_path, changes, message):
    path = _write_raw(tmp_path / "bad.h5", **changes)
    with pytest.raises(FormatError, match=message) as info:
        read_codes(path)
    assert str(path) in str(info.value)


def test_not_hdf5_and_missing_files(tmp_path):
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        read_codes(tmp_path / "text.h5")
    with pytest.raises(HashretError, match="does not exist"):
        read_codes(tmp_path / "missing.h5")


def test_writing_checks_its_input(tmp_path):
    with pytest.raises(FormatError, match=r"uint8 of shape \(N, 2\)"):
        CodeFile(np.zeros((3, 3), np.uint8), 16)
    with pytest.raises(FormatError, match="2 labels for 3 codes"):
        CodeFile(np.zeros((3, 2), np.uint8), 16, labels=np.zeros(2, np.int64))
    with pytest.raises(FormatError, match="attribute 'bits' is set by hashret"):
        CodeFile(np.zeros((3, 2), np.uint8), 16, attrs={"bits": 3})
    with pytest.raises(HashretError, match="does not exist"):
        write_codes(tmp_path / "no" / "such" / "codes.h5", _codes())


# --------------------------------------------------------------------------------------------
# .npz from other projects


@pytest.mark.parametrize("style", ["signs", "zero_one", "bool", "signs_float", "packed"])
def test_npz_styles_give_the_same_codes(tmp_path, style):
    rng = np.random.default_rng(3)
    on = rng.random((9, 10)) < 0.5
    expected = np.packbits(on, axis=1)
    labels = rng.integers(0, 3, 9)
    entries = {
        "signs": {"codes": np.where(on, 1, -1)},
        "zero_one": {"codes": on.astype(np.int64)},
        "bool": {"codes": on},
        "signs_float": {"codes": np.where(on, 1.0, -1.0).astype(np.float32)},
        "packed": {"codes": expected, "bits": np.int64(10)},
    }[style]
    np.savez(tmp_path / "c.npz", labels=labels, **entries)
    cf = read_codes(tmp_path / "c.npz")
    assert cf.bits == 10
    assert np.array_equal(cf.codes, expected) and np.array_equal(cf.labels, labels)


def test_npz_multi_hot_labels_of_any_numeric_type(tmp_path):
    labels = np.array([[1, 0, 1], [0, 0, 1]], dtype=np.float32)
    np.savez(tmp_path / "c.npz", codes=np.array([[1, -1], [-1, 1]]), labels=labels)
    assert read_codes(tmp_path / "c.npz").labels.tolist() == [
        [True, False, True],
        [False] * 2 + [True],
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"codes": np.array([[1, 0, -1]])}, "only -1/\\+1 or only 0/1"),
        ({"codes": np.array([[0.3, 0.9]])}, "only -1/\\+1 or only 0/1"),
        ({"codes": np.array([[7, 200]], dtype=np.uint8)}, "need a 'bits' entry"),
        ({"codes": np.zeros((2, 2), np.uint8), "bits": np.int64(8)}, r"uint8 \(N, 1\)"),
        ({"labels": np.zeros(2)}, "no 'codes' array"),
    ],
)
def test_npz_errors(tmp_path, entries, message):
    np.savez(tmp_path / "c.npz", **entries)
    with pytest.raises(FormatError, match=message):
        read_codes(tmp_path / "c.npz")


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_header_and_chosen_rows_match_the_whole_file(tmp_path, multi, suffix):
    original = _codes(multi=multi)
    if suffix == ".npz":
        path = tmp_path / "codes.npz"
        np.savez(path, codes=original.codes, bits=12, labels=original.labels, paths=original.paths)
    else:
        path = write_codes(tmp_path / "codes.h5", original)
    whole = read_codes(path)
    header = store.read_header(path)
    assert (header.bits, header.n, header.has_labels, header.has_paths) == (12, 30, True, True)
    assert header.attrs == whole.attrs
    rows = [7, 3, 29, 3, 0]  # any order, repeats allowed
    paths, labels = store.read_rows(path, rows)
    assert paths == [whole.paths[r] for r in rows]
    assert np.array_equal(labels, whole.labels[rows]) and labels.dtype == whole.labels.dtype
    assert store.read_rows(path, [])[0] == []
