"""Saving, loading and appending: round trips, the metadata record and its checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashcli.errors import FormatError, HashretError
from hashcli.index import BinaryIndex, metadata_path, read_index_metadata

FINGERPRINT = "a3f1c2" * 8


def random_codes(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    return np.packbits(rng.integers(0, 2, (n, bits), dtype=np.uint8), axis=1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def saved(tmp_path, rng):
    """A saved 48-bit flat index over 500 codes, and the codes."""
    xb = random_codes(rng, 500, 48)
    index = BinaryIndex.build(
        xb, 48, model_fingerprint=FINGERPRINT, source_path="runs/r1/codes/train.h5"
    )
    path = index.save(tmp_path / "db" / "index.faiss")
    return path, xb


@pytest.mark.parametrize(
    ("index_type", "params"),
    [
        ("flat", None),
        ("hnsw", {"m": 8, "ef_search": 32}),
        ("ivf", {"nlist": 8, "nprobe": 3}),
        ("hash", {"b": 12, "nflip": 1}),
        ("multihash", {"nhash": 3, "b": 10, "nflip": 1}),
    ],
)
def test_round_trip_gives_same_results_and_metadata(tmp_path, rng, index_type, params):
    xb = random_codes(rng, 800, 48)
    xq = np.concatenate([xb[:3], random_codes(rng, 3, 48)])
    index = BinaryIndex.build(xb, 48, index_type, params=params, model_fingerprint=FINGERPRINT)
    before = index.search(xq, 12)
    path = index.save(tmp_path / "index.faiss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss", "index.faiss.json"]

    loaded = BinaryIndex.load(path)
    after = loaded.search(xq, 12)
    np.testing.assert_array_equal(after.rows, before.rows)
    np.testing.assert_array_equal(after.distances, before.distances)
    assert (loaded.index_type, loaded.bits, loaded.ntotal) == (index_type, 48, 800)
    assert loaded.params == index.params
    assert loaded.model_fingerprint == FINGERPRINT

    record = json.loads(metadata_path(path).read_text())
    assert record["format"] == "hashret.index" and record["format_version"] == 1
    assert (record["bits"], record["code_bytes"], record["padded_bytes"]) == (48, 6, 8)
    assert record["index_type"] == index_type and record["params"] == index.params
    assert record["sources"] == [{"path": None, "rows": 800}]
    assert record["created"] and record["data_bytes"] == path.stat().st_size


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_memory_mapped_load(tmp_path, rng, index_type):
    # A reader's load (mmap=True, flat codes mapped from the file): the same results as a
    # plain load, and still after a writer replaces the file (the mapping keeps the old one).
    xb = random_codes(rng, 800, 48)
    xq = np.concatenate([xb[:3], random_codes(rng, 3, 48)])
    params = {"nlist": 8, "nprobe": 8} if index_type == "ivf" else None
    index = BinaryIndex.build(xb, 48, index_type, params=params)
    path = index.save(tmp_path / "index.faiss")
    plain = BinaryIndex.load(path)
    mapped = BinaryIndex.load(path, mmap=True)
    index.add(random_codes(rng, 5, 48))
    index.save(path)
    for got, expected in ((mapped.search(xq, 12), plain.search(xq, 12)),):
        np.testing.assert_array_equal(got.rows, expected.rows)
        np.testing.assert_array_equal(got.distances, expected.distances)
    for (d, r), (de, re) in zip(
        mapped.range_search(xq, 20), plain.range_search(xq, 20), strict=True
    ):
        np.testing.assert_array_equal(r, re)
        np.testing.assert_array_equal(d, de)
    assert mapped.ntotal == 800 and BinaryIndex.load(path, mmap=True).ntotal == 805


def test_metadata_records_source_and_reads_without_faiss(saved):
    path, _ = saved
    meta = read_index_metadata(path)
    assert meta.sources == [{"path": "runs/r1/codes/train.h5", "rows": 500}]
    assert meta.source_rows == meta.ntotal == 500
    assert meta.model_fingerprint == FINGERPRINT and meta.path == path


def test_add_appends_and_row_numbers_continue(tmp_path, saved, rng):
    path, xb = saved
    index = BinaryIndex.load(path)
    extra = random_codes(rng, 120, 48)
    new_rows = index.add(extra, source_path="new.h5", model_fingerprint=FINGERPRINT)
    assert new_rows == range(500, 620) and index.ntotal == 620
    # an appended code is found at its new row number
    hit = index.search(extra[7:8], 1)
    assert hit.rows[0, 0] == 507 and hit.distances[0, 0] == 0
    whole = BinaryIndex.build(np.concatenate([xb, extra]), 48)
    xq = random_codes(rng, 6, 48)
    np.testing.assert_array_equal(index.search(xq, 30).rows, whole.search(xq, 30).rows)

    index.add(extra[:5], source_path="new.h5")
    index.save(path)
    meta = read_index_metadata(path)
    assert meta.sources == [
        {"path": "runs/r1/codes/train.h5", "rows": 500},
        {"path": "new.h5", "rows": 125},
    ]
    assert BinaryIndex.load(path).ntotal == 625
    with pytest.raises(HashretError, match="another model"):
        index.add(extra, model_fingerprint="ffff" * 10)


def test_check_compatible(saved):
    path, _ = saved
    index = BinaryIndex.load(path)
    index.check_compatible(48, FINGERPRINT)
    index.check_compatible(48)  # no fingerprint to compare
    with pytest.raises(
        HashretError, match=r"48-bit codes but the query codes have 32 bits.*hashret index"
    ):
        index.check_compatible(32, FINGERPRINT)
    with pytest.raises(HashretError, match=r"another model.*hashret index"):
        index.check_compatible(48, "0" * 48)
    with pytest.raises(HashretError, match="another model"):
        read_index_metadata(path).check_compatible(48, "0" * 48)
    unknown = BinaryIndex(48)  # built from bare arrays: no fingerprint recorded
    unknown.check_compatible(48, FINGERPRINT)


def test_truncated_index_file(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=rf"{path.name}.*truncated"):
        BinaryIndex.load(path)
    # the same truncation with a record that agrees on the size: FAISS's own reader notices
    record = json.loads(metadata_path(path).read_text())
    record["data_bytes"] = len(data) // 2
    metadata_path(path).write_text(json.dumps(record))
    with pytest.raises(FormatError, match=rf"{path.name} is not a readable FAISS binary index"):
        BinaryIndex.load(path)


def test_not_an_index_file(saved):
    path, _ = saved
    junk = b"this is a JPEG, honest" * 10
    path.write_bytes(junk)
    record = json.loads(metadata_path(path).read_text())
    record["data_bytes"] = len(junk)
    metadata_path(path).write_text(json.dumps(record))
    with pytest.raises(FormatError, match=rf"{path.name} is not a readable FAISS binary index"):
        BinaryIndex.load(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format_version": 2}, "version 2.*upgrade hashret"),
        ({"format": "something"}, "not a valid hashret index record"),
        ({"bits": None}, "malformed"),
        ({"index_type": "lsh"}, "unknown index type"),
        ({"ntotal": 499}, "sources hold 500 rows but ntotal is 499"),
    ],
)
def test_bad_records(saved, change, match):
    path, _ = saved
    record = json.loads(metadata_path(path).read_text())
    record.update(change)
    metadata_path(path).write_text(json.dumps(record))
    with pytest.raises(FormatError, match=match):
        BinaryIndex.load(path)


def test_record_disagreeing_with_the_index(saved):
    path, _ = saved
    record = json.loads(metadata_path(path).read_text())
    record["ntotal"] = 400
    record["sources"][0]["rows"] = 400
    metadata_path(path).write_text(json.dumps(record))
    with pytest.raises(FormatError, match="holds 500 codes.*record says 400"):
        BinaryIndex.load(path)
    record.update(ntotal=500, index_type="hnsw")
    record["sources"][0]["rows"] = 500
    metadata_path(path).write_text(json.dumps(record))
    with pytest.raises(FormatError, match="IndexBinaryFlat but its record says hnsw"):
        BinaryIndex.load(path)


def test_missing_files(tmp_path, saved):
    with pytest.raises(HashretError, match="no index at .*hashret index"):
        BinaryIndex.load(tmp_path / "nothing.faiss")
    path, _ = saved
    metadata_path(path).unlink()
    with pytest.raises(FormatError, match="no record index.faiss.json"):
        BinaryIndex.load(path)
    metadata_path(path).write_text("{not json")
    with pytest.raises(FormatError, match="not readable JSON"):
        BinaryIndex.load(path)


def test_save_replaces_atomically_and_leaves_no_temp_files(saved, rng):
    path, _ = saved
    bigger = BinaryIndex.build(random_codes(rng, 900, 48), 48)
    bigger.save(path)
    assert BinaryIndex.load(path).ntotal == 900
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.faiss", "index.faiss.json"]


def test_empty_ivf_cannot_be_saved(tmp_path):
    with pytest.raises(HashretError, match="no codes cannot be saved"):
        BinaryIndex(32, "ivf").save(tmp_path / "x.faiss")


def test_unwritable_destination_is_a_clear_error(tmp_path, rng):
    (tmp_path / "taken").mkdir()
    index = BinaryIndex.build(random_codes(rng, 10, 32), 32)
    with pytest.raises(HashretError, match="could not write the index"):
        index.save(tmp_path / "taken")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
