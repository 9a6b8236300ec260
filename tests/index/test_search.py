"""Search results held to a numpy XOR-popcount brute force, ties ordered by database row."""

# ruff: noqa: E741  (D, I: FAISS's own names for distances and ids)

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hashcli.errors import HashretError
from hashcli.index import INDEX_TYPES, BinaryIndex, padded_code_bytes
from hashcli.index import binary_index as binary_index_module
from hashcli.index.ordering import cut_tie_groups, order_rows

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def hamming(xq: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """(nq, nb) Hamming distances between packed codes, one byte-table lookup per byte."""
    return POPCOUNT[xq[:, None, :] ^ xb[None, :, :]].sum(axis=2)


def brute_knn(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented rule: ascending distance, ties by ascending row (a stable sort)."""
    dist = hamming(xq, xb)
    rows = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, rows, axis=1), rows


def random_codes(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    return np.packbits(rng.integers(0, 2, (n, bits), dtype=np.uint8), axis=1)


def tie_heavy_codes(rng: np.random.Generator, n: int, bits: int, distinct: int = 12) -> np.ndarray:
    """n codes drawn from only ``distinct`` different codes: every distance is a big tie."""
    palette = random_codes(rng, distinct, bits)
    return palette[rng.integers(0, distinct, n)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def force_tie_repair(monkeypatch):
    """Make CPU flat distrust FAISS's tie handling, so the range-search repair path runs."""
    monkeypatch.setattr(binary_index_module, "_flat_keeps_lowest_rows", lambda code_size: False)


# -- flat == brute force -----------------------------------------------------------------------


@pytest.mark.parametrize("repair", [False, True], ids=["faiss-ties", "range-repair"])
def test_flat_equals_brute_force_with_heavy_ties(rng, request, repair):
    if repair:
        request.getfixturevalue("force_tie_repair")
    xb = tie_heavy_codes(rng, 3000, 32)
    xq = np.concatenate([xb[:3], random_codes(rng, 5, 32)])
    index = BinaryIndex.build(xb, 32)
    for k in (1, 7, 250, 2999, 3000):  # each k cuts through a tie group or takes everything
        result = index.search(xq, k)
        want_d, want_rows = brute_knn(xq, xb, k)
        assert result.rows.dtype == np.int64 and result.distances.dtype == np.int32
        np.testing.assert_array_equal(result.distances, want_d)
        np.testing.assert_array_equal(result.rows, want_rows)


def test_tie_groups_really_are_cut(rng):
    # Guard for the test above: with these data a k-NN that kept arbitrary members of the
    # k-th tie group, or left them unsorted, would fail.
    xb = tie_heavy_codes(rng, 3000, 32)
    dist = hamming(xb[:3], xb)
    for k in (7, 250):
        kth = np.sort(dist, axis=1)[:, k - 1]
        assert ((dist <= kth[:, None]).sum(axis=1) > k).all()


def test_k_larger_than_database_returns_everything_in_order(rng):
    xb = tie_heavy_codes(rng, 40, 16, distinct=4)
    index = BinaryIndex.build(xb, 16)
    result = index.search(xb[:2], 1000)
    assert result.rows.shape == (2, 40)
    want_d, want_rows = brute_knn(xb[:2], xb, 40)
    np.testing.assert_array_equal(result.rows, want_rows)
    np.testing.assert_array_equal(result.distances, want_d)
    assert (result.rows >= 0).all()


def test_flat_faiss_keeps_lowest_rows_in_this_build():
    # The zero-cost fast path rests on this; if a FAISS upgrade breaks it, search falls back
    # to the repair path (still correct, slower) and this test says why.
    assert binary_index_module._flat_keeps_lowest_rows(8)


def test_faiss_answers_are_reordered_by_distance_then_row():
    # FAISS backends that return ties unordered (GPU) or short (-1 slots) are normalised.
    D = np.array([[5, 3, 3, 2147483647, 3], [1, 1, 0, 0, 2]], dtype=np.int32)
    I = np.array([[4, 9, 2, -1, 7], [8, 6, 5, 1, 0]], dtype=np.int64)
    D2, I2 = order_rows(D, I)
    np.testing.assert_array_equal(I2, [[2, 7, 9, 4, -1], [1, 5, 6, 8, 0]])
    np.testing.assert_array_equal(D2, [[3, 3, 3, 5, 2147483647], [0, 0, 1, 1, 2]])


def test_a_cut_tie_group_is_seen_in_the_extra_column_or_assumed_without_one():
    # Three queries, k = 2, ordered answers with a third (k+1-th) column: the first query's
    # 2nd and 3rd neighbours tie (cut), the second's do not, the third has no 3rd neighbour.
    D = np.array([[0, 4, 4], [1, 2, 3], [5, 6, -1]], dtype=np.int32)
    I = np.array([[3, 0, 1], [2, 5, 4], [1, 0, -1]], dtype=np.int64)
    assert cut_tie_groups(D, I, 2, ntotal=10).tolist() == [True, False, False]
    # Only k columns (FAISS's GPU limit): any query with a k-th neighbour may be cut ...
    short_I = np.array([[3, 0], [2, -1]], dtype=np.int64)
    short_D = np.array([[0, 4], [1, -1]], dtype=np.int32)
    assert cut_tie_groups(short_D, short_I, 2, ntotal=10).tolist() == [True, False]
    # ... unless k is the whole database.
    assert cut_tie_groups(short_D, short_I, 2, ntotal=2).tolist() == [False, False]


def test_empty_index_and_no_queries(rng):
    index = BinaryIndex(64)
    assert index.search(random_codes(rng, 3, 64), 5).rows.shape == (3, 0)
    index.add(random_codes(rng, 10, 64))
    assert index.search(np.zeros((0, 8), dtype=np.uint8), 5).rows.shape == (0, 5)


# -- padding -----------------------------------------------------------------------------------


def test_padding_rule():
    assert [padded_code_bytes(b) for b in (8, 12, 16, 24, 32, 40, 48, 64)] == [
        4,
        4,
        4,
        4,
        4,
        8,
        8,
        8,
    ]
    assert [padded_code_bytes(b) for b in (72, 128, 136, 160, 192, 256, 384, 512, 520)] == [
        16, 16, 20, 20, 32, 32, 64, 64, 65,
    ]  # fmt: skip


@pytest.mark.parametrize("bits", [12, 16, 24, 48, 72])
def test_padding_keeps_distances(rng, bits):
    xb = tie_heavy_codes(rng, 1500, bits, distinct=40)
    if bits % 8:  # unused low bits of the last byte are zero
        xb[:, -1] &= 0xFF << (8 - bits % 8) & 0xFF
    xq = np.concatenate([xb[:2], random_codes(rng, 4, bits)])
    if bits % 8:
        xq[:, -1] &= 0xFF << (8 - bits % 8) & 0xFF
    index = BinaryIndex.build(xb, bits)
    assert index.padded_bytes > xb.shape[1]
    result = index.search(xq, 60)
    want_d, want_rows = brute_knn(xq, xb, 60)
    np.testing.assert_array_equal(result.distances, want_d)
    np.testing.assert_array_equal(result.rows, want_rows)
    # queries already padded with zeros give the same answer
    padded = np.zeros((len(xq), index.padded_bytes), dtype=np.uint8)
    padded[:, : xq.shape[1]] = xq
    np.testing.assert_array_equal(index.search(padded, 60).rows, want_rows)


# -- range search ------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_range_search_is_inclusive_and_ordered(rng, index_type):
    xb = tie_heavy_codes(rng, 2000, 48, distinct=30)
    xq = np.concatenate([xb[:2], random_codes(rng, 3, 48)])
    params = {"nlist": 8, "nprobe": 8} if index_type == "ivf" else None
    index = BinaryIndex.build(xb, 48, index_type, params=params)
    dist = hamming(xq, xb)
    radius = int(np.median(dist))
    assert (dist == radius).any()  # items sit exactly on the radius
    results = index.range_search(xq, radius)
    assert len(results) == len(xq)
    for q, (d, rows) in enumerate(results):
        want = np.flatnonzero(dist[q] <= radius)
        want = want[np.lexsort((want, dist[q][want]))]
        np.testing.assert_array_equal(rows, want)
        np.testing.assert_array_equal(d, dist[q][want])
    capped = index.range_search(xq, radius, top=5)
    for (d, rows), (full_d, full_rows) in zip(capped, results, strict=True):
        np.testing.assert_array_equal(rows, full_rows[:5])
        np.testing.assert_array_equal(d, full_d[:5])
    exact = index.range_search(xb[:1], 0)[0][1]
    np.testing.assert_array_equal(exact, np.flatnonzero((xb == xb[0]).all(axis=1)))


# -- approximate indexes -----------------------------------------------------------------------


def _check_valid(index, xq, xb, k):
    result = index.search(xq, k)
    dist = hamming(xq, xb)
    for q in range(len(xq)):
        d, rows = result.neighbours(q)
        assert len(np.unique(rows)) == len(rows)
        np.testing.assert_array_equal(d, dist[q][rows])  # true distances of the rows returned
        assert (np.lexsort((rows, d)) == np.arange(len(rows))).all()  # (distance, row) order
        missing = result.rows[q] < 0
        assert (result.distances[q][missing] == -1).all()
        assert not missing[: len(rows)].any()  # missing slots come last
    return result


def _recall_at(result, want_rows):
    hits = [len(np.intersect1d(r[r >= 0], w)) for r, w in zip(result.rows, want_rows, strict=True)]
    return sum(hits) / want_rows.size


@pytest.mark.parametrize(
    ("index_type", "params", "min_recall"),
    [("hnsw", {"m": 16, "ef_search": 128}, 0.85), ("ivf", {"nlist": 16, "nprobe": 4}, 0.4)],
)
def test_approximate_indexes_valid_with_recall(rng, index_type, params, min_recall):
    xb = random_codes(rng, 3000, 64)
    xq = random_codes(rng, 40, 64)
    index = BinaryIndex.build(xb, 64, index_type, params=params)
    result = _check_valid(index, xq, xb, 10)
    recall = _recall_at(result, brute_knn(xq, xb, 10)[1])
    assert recall >= min_recall, recall
    # A random answer would have recall ~ 10 / 3000.


@pytest.mark.parametrize(
    ("index_type", "params"),
    [("hash", {"b": 16, "nflip": 2}), ("multihash", {"nhash": 4, "b": 16, "nflip": 1})],
)
def test_hash_indexes_find_near_duplicates(rng, index_type, params):
    xb = random_codes(rng, 3000, 64)
    rows = rng.choice(len(xb), 30, replace=False)
    xq = xb[rows].copy()
    flip = rng.integers(0, 64, (30, 2))  # flip up to 2 bits of each query
    for q, bits in enumerate(flip):
        for bit in bits:
            xq[q, bit // 8] ^= 0x80 >> (bit % 8)
    index = BinaryIndex.build(xb, 64, index_type, params=params)
    result = _check_valid(index, xq, xb, 5)
    np.testing.assert_array_equal(result.rows[:, 0], rows)
    _check_valid(index, xq, xb, 3000)  # far more than the buckets hold: missing slots


def test_ivf_probing_every_list_equals_flat(rng):
    xb = tie_heavy_codes(rng, 2500, 32, distinct=60)
    xq = np.concatenate([xb[:3], random_codes(rng, 5, 32)])
    ivf = BinaryIndex.build(xb, 32, "ivf", params={"nlist": 10, "nprobe": 10})
    for k in (5, 100):
        want_d, want_rows = brute_knn(xq, xb, k)
        result = ivf.search(xq, k)
        np.testing.assert_array_equal(result.distances, want_d)
        np.testing.assert_array_equal(result.rows, want_rows)
    # FAISS's own IVF answer keeps arbitrary members of the cut tie groups: the repair matters.
    _, raw_rows = ivf._index.search(xq, 100)
    assert not np.array_equal(np.sort(raw_rows, axis=1), np.sort(want_rows, axis=1))


def test_ivf_nlist_clamped_for_small_databases(rng):
    index = BinaryIndex.build(random_codes(rng, 200, 32), 32, "ivf", params={"nlist": 64})
    assert index.params == {"nlist": 5, "nprobe": 5}
    assert any("nlist lowered from 64 to 5" in note for note in index.notes)


def test_set_search_params(rng):
    xb = random_codes(rng, 1000, 32)
    index = BinaryIndex.build(xb, 32, "ivf", params={"nlist": 8, "nprobe": 1})
    index.set_search_params(nprobe=8)
    np.testing.assert_array_equal(index.search(xb[:5], 20).rows, brute_knn(xb[:5], xb, 20)[1])
    with pytest.raises(HashretError, match="nlist cannot change"):
        index.set_search_params(nlist=4)


# -- input contract ----------------------------------------------------------------------------


@pytest.fixture
def small_index(rng) -> BinaryIndex:
    return BinaryIndex.build(random_codes(rng, 100, 48), 48)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((2, 6), dtype=np.int64), "uint8 array of shape"),
        (np.zeros((2, 6), dtype=np.float32), "uint8"),
        (np.zeros((2, 5), dtype=np.uint8), r"shape \(2, 5\)"),
        (np.zeros((2, 48), dtype=np.uint8), "np.packbits"),
        (np.zeros(6, dtype=np.uint8), r"codes\[None, :\]"),
        (np.zeros((2, 3, 6), dtype=np.uint8), "uint8 array of shape"),
        ([[0, 0, 0, 0, 0, 0]], "got list"),
        (np.ones((2, 8), dtype=np.uint8), "padding bytes"),
    ],
)
def test_bad_query_codes(small_index, bad, match):
    with pytest.raises(HashretError, match=match):
        small_index.search(bad, 3)


def test_bits_past_code_length_rejected(rng):
    codes = np.packbits(rng.integers(0, 2, (10, 12), dtype=np.uint8), axis=1)
    index = BinaryIndex.build(codes, 12)
    bad = codes[:1].copy()
    bad[0, 1] |= 0x01
    with pytest.raises(HashretError, match="past the 12-bit"):
        index.search(bad, 3)


def test_non_contiguous_queries_are_copied(rng, small_index):
    xb = random_codes(rng, 100, 48)
    index = BinaryIndex.build(xb, 48)
    strided = np.asfortranarray(xb[::3])
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(index.search(strided, 4).rows, brute_knn(xb[::3], xb, 4)[1])


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_bad_k(small_index, k):
    with pytest.raises(HashretError, match="k must be an integer"):
        small_index.search(np.zeros((1, 6), dtype=np.uint8), k)


def test_bad_radius_and_hnsw_radius(rng, small_index):
    with pytest.raises(HashretError, match="radius must be"):
        small_index.range_search(np.zeros((1, 6), dtype=np.uint8), -1)
    hnsw = BinaryIndex.build(random_codes(rng, 50, 48), 48, "hnsw")
    with pytest.raises(HashretError, match="flat index"):
        hnsw.range_search(np.zeros((1, 6), dtype=np.uint8), 3)


def test_bad_construction():
    with pytest.raises(HashretError, match="expected one of flat, hnsw, ivf, hash, multihash"):
        BinaryIndex(32, "lsh")
    with pytest.raises(HashretError, match="unknown parameter.*nlist"):
        BinaryIndex(32, "hnsw", params={"nlist": 4})
    with pytest.raises(HashretError, match="exceeds the 32-bit"):
        BinaryIndex(32, "multihash", params={"nhash": 4, "b": 16})
    with pytest.raises(HashretError, match="positive number of bits"):
        BinaryIndex(0)
    assert INDEX_TYPES[0] == "flat"


def test_cuda_without_gpu_is_a_clear_error():
    faiss = pytest.importorskip("faiss")
    if faiss.get_num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(HashretError, match="device cuda needs a GPU build of FAISS"):
        BinaryIndex(64, device="cuda")


@pytest.mark.gpu
def test_gpu_flat_equals_brute_force(rng):
    xb = tie_heavy_codes(rng, 3000, 48)
    xq = np.concatenate([xb[:3], random_codes(rng, 5, 48)])
    index = BinaryIndex.build(xb, 48, device="cuda")
    for k in (1, 7, 250, 3000):
        result = index.search(xq, k)
        want_d, want_rows = brute_knn(xq, xb, k)
        np.testing.assert_array_equal(result.distances, want_d)
        np.testing.assert_array_equal(result.rows, want_rows)
    big = BinaryIndex.build(random_codes(rng, 3000, 48), 48, device="cuda")
    with pytest.raises(HashretError, match="at most 2048"):
        big.search(xq, 2049)
    with pytest.raises(HashretError, match="CPU only"):
        BinaryIndex(48, "hnsw", device="cuda")


def test_importing_the_package_does_not_import_faiss():
    code = "import sys, hashcli.index; assert 'faiss' not in sys.modules, 'faiss imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
