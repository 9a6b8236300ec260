"""Multi-GPU flat search held to a numpy XOR-popcount brute force, ties ordered by row.

The merge and tie-repair logic runs on the CPU here too: FAISS's IndexBinaryShards and
IndexBinaryReplicas accept CPU sub-indexes, so they stand in for the GPU copies. The tests
marked ``gpu`` clone onto real GPUs (skipped without CUDA or without a GPU build of FAISS).
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from hashcli.errors import HashretError
from hashcli.index import BinaryIndex, padded_code_bytes
from hashcli.index.multi_gpu import MultiGpuBinaryIndex, resolve_gpus, visible_gpus

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def brute_knn(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ascending distance, ties by ascending row (a stable sort)."""
    dist = POPCOUNT[xq[:, None, :] ^ xb[None, :, :]].sum(axis=2)
    rows = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, rows, axis=1), rows


def tie_heavy_codes(rng: np.random.Generator, n: int, bits: int, distinct: int = 12) -> np.ndarray:
    """n codes drawn from ``distinct`` different codes: every distance is a big tie."""
    palette = np.packbits(rng.integers(0, 2, (distinct, bits), dtype=np.uint8), axis=1)
    return palette[rng.integers(0, distinct, n)]


def cpu_stand_in(xb: np.ndarray, bits: int, parts: int, mode: str) -> MultiGpuBinaryIndex:
    """The layout FAISS's multi-GPU cloner makes, with CPU IndexBinaryFlat sub-indexes."""
    padded = padded_code_bytes(bits)
    x = np.zeros((len(xb), padded), dtype=np.uint8)
    x[:, : xb.shape[1]] = xb
    if mode == "shard":
        searcher = faiss.IndexBinaryShards(True, True)  # threaded, successive ids
        for i in range(parts):
            piece = faiss.IndexBinaryFlat(8 * padded)
            piece.add(x[i * len(x) // parts : (i + 1) * len(x) // parts])
            searcher.add_shard(piece)
    else:
        searcher = faiss.IndexBinaryReplicas(True)
        for _ in range(parts):
            piece = faiss.IndexBinaryFlat(8 * padded)
            piece.add(x)
            searcher.addIndex(piece)
    cpu = BinaryIndex.build(xb, bits, "flat")
    return MultiGpuBinaryIndex(cpu, searcher, gpus=list(range(parts)), mode=mode)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("mode", ["shard", "replicate"])
@pytest.mark.parametrize("k", [1, 5, 40, 700])
def test_stand_in_equals_brute_force_with_heavy_ties(rng, mode, k):
    xb = tie_heavy_codes(rng, 700, 24)
    xq = np.concatenate([xb[:3], tie_heavy_codes(rng, 9, 24)])
    index = cpu_stand_in(xb, 24, 3, mode)
    result = index.search(xq, k)
    expected_d, expected_rows = brute_knn(xq, xb, k)
    np.testing.assert_array_equal(result.rows, expected_rows)
    np.testing.assert_array_equal(result.distances, expected_d)
    assert result.rows.dtype == np.int64 and result.distances.dtype == np.int32


class HighestRowsInTies:
    """A searcher that keeps the HIGHEST rows of a cut tie group (as a GPU may): a flat index
    over the reversed database, rows mapped back."""

    def __init__(self, xb: np.ndarray, bits: int) -> None:
        padded = padded_code_bytes(bits)
        x = np.zeros((len(xb), padded), dtype=np.uint8)
        x[:, : xb.shape[1]] = xb[::-1]
        self.flat = faiss.IndexBinaryFlat(8 * padded)
        self.flat.add(x)
        self.ntotal = len(xb)

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        D, I = self.flat.search(xq, k)  # noqa: E741
        return D, np.where(I >= 0, self.ntotal - 1 - I, -1)


def test_cut_tie_groups_are_repaired_to_their_lowest_rows(rng):
    xb = tie_heavy_codes(rng, 600, 16)
    xq = tie_heavy_codes(rng, 8, 16)
    index = MultiGpuBinaryIndex(
        BinaryIndex.build(xb, 16, "flat"), HighestRowsInTies(xb, 16), gpus=[0], mode="shard"
    )
    expected_d, expected_rows = brute_knn(xq, xb, 10)
    unrepaired = index.search(xq, 10, exact_ties=False)
    assert not np.array_equal(unrepaired.rows, expected_rows)  # the searcher does cut ties
    result = index.search(xq, 10)
    np.testing.assert_array_equal(result.rows, expected_rows)
    np.testing.assert_array_equal(result.distances, expected_d)


def test_without_tie_repair_the_distances_still_match(rng):
    xb = tie_heavy_codes(rng, 500, 16)
    xq = tie_heavy_codes(rng, 6, 16)
    result = cpu_stand_in(xb, 16, 2, "shard").search(xq, 9, exact_ties=False)
    expected_d, _ = brute_knn(xq, xb, 9)
    np.testing.assert_array_equal(result.distances, expected_d)
    for q in range(len(xq)):  # ordered by (distance, row)
        keys = list(zip(result.distances[q], result.rows[q], strict=True))
        assert keys == sorted(keys)


def test_range_search_and_properties_come_from_the_cpu_copy(rng):
    xb = tie_heavy_codes(rng, 100, 16)
    index = cpu_stand_in(xb, 16, 2, "shard")
    assert (index.bits, index.ntotal, index.mode, index.gpus) == (16, 100, "shard", [0, 1])
    found = index.range_search(xb[:1], 0)
    expected = np.flatnonzero((xb == xb[0]).all(axis=1))
    np.testing.assert_array_equal(found[0][1], expected)


def test_a_non_flat_index_or_mismatched_copy_is_refused(rng):
    xb = tie_heavy_codes(rng, 200, 16)
    hnsw = BinaryIndex.build(xb, 16, "hnsw")
    with pytest.raises(HashretError, match="needs a flat index"):
        MultiGpuBinaryIndex(hnsw, faiss.IndexBinaryFlat(32), gpus=[0], mode="shard")
    flat = BinaryIndex.build(xb, 16, "flat")
    with pytest.raises(HashretError, match="holds 0 codes"):
        MultiGpuBinaryIndex(flat, faiss.IndexBinaryFlat(32), gpus=[0], mode="shard")


def test_unknown_mode_is_refused_before_looking_for_gpus(rng):
    with pytest.raises(HashretError, match="unknown multi-GPU mode 'mirror'"):
        MultiGpuBinaryIndex.build(tie_heavy_codes(rng, 10, 16), 16, mode="mirror")


@pytest.mark.skipif(visible_gpus() > 0, reason="FAISS sees a GPU here")
def test_without_gpus_the_error_says_use_cpu(rng):
    with pytest.raises(HashretError, match="use --device cpu"):
        MultiGpuBinaryIndex.build(tie_heavy_codes(rng, 10, 16), 16)


# -- real GPUs ---------------------------------------------------------------------------------


@pytest.fixture
def gpus() -> list[int]:
    if visible_gpus() == 0:
        pytest.skip("this FAISS sees no GPU")
    return resolve_gpus(None)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["shard", "replicate"])
def test_all_gpus_equal_brute_force(gpus, rng, mode):
    xb = tie_heavy_codes(rng, 20_000, 48)
    xq = np.concatenate([xb[:5], tie_heavy_codes(rng, 20, 48)])
    index = MultiGpuBinaryIndex.build(xb, 48, mode=mode)
    assert index.gpus == gpus
    for k in (1, 10, 2048):
        result = index.search(xq, k)
        expected_d, expected_rows = brute_knn(xq, xb, k)
        np.testing.assert_array_equal(result.rows, expected_rows)
        np.testing.assert_array_equal(result.distances, expected_d)


@pytest.mark.gpu
def test_two_shards_on_one_gpu_equal_brute_force(gpus, rng):
    xb = tie_heavy_codes(rng, 5_001, 32)
    xq = tie_heavy_codes(rng, 16, 32)
    index = MultiGpuBinaryIndex.build(xb, 32, gpus=[gpus[0], gpus[0]], mode="shard")
    result = index.search(xq, 25)
    expected_d, expected_rows = brute_knn(xq, xb, 25)
    np.testing.assert_array_equal(result.rows, expected_rows)
    np.testing.assert_array_equal(result.distances, expected_d)


@pytest.mark.gpu
def test_load_a_saved_flat_index_onto_the_gpus(gpus, rng, tmp_path):
    xb = np.packbits(rng.integers(0, 2, (3_000, 64), dtype=np.uint8), axis=1)
    BinaryIndex.build(xb, 64, "flat", model_fingerprint="abc").save(tmp_path / "db.faiss")
    index = MultiGpuBinaryIndex.load(tmp_path / "db.faiss")
    assert index.ntotal == 3_000 and index.model_fingerprint == "abc"
    result = index.search(xb[:7], 5)
    expected_d, expected_rows = brute_knn(xb[:7], xb, 5)
    np.testing.assert_array_equal(result.rows, expected_rows)
    np.testing.assert_array_equal(result.distances, expected_d)
    with pytest.raises(HashretError, match="at most 2048"):
        index.search(xb[:1], 2049)


@pytest.mark.gpu
def test_missing_gpu_number_is_refused(gpus):
    with pytest.raises(HashretError, match="does not exist"):
        resolve_gpus([len(gpus)])
