"""The blockwise engine: histograms and index-order AP against per-query brute force."""

from __future__ import annotations

import numpy as np
import pytest

from hashcli.codes import pack_bits
from hashcli.index.kernels import FaissKernels
from hashcli.metrics import hamming, hamming_histograms
from hashcli.metrics.compiled import CompiledKernels
from hashcli.metrics.kernels import NumpyKernels


def _case(
    seed: int,
    *,
    multi: bool,
    sorted_database: bool = False,
    widths=(3, 8, 13, 24, 64),
    labels: int = 4,
):
    rng = np.random.default_rng(seed)
    bits = int(rng.choice(widths))
    nq, nd = int(rng.integers(1, 30)), int(rng.integers(1, 250))
    # Few distinct codes, so that distance ties are everywhere.
    pool = rng.standard_normal((int(rng.integers(2, 12)), bits))
    query_codes = pack_bits(pool[rng.integers(len(pool), size=nq)])
    database_codes = pack_bits(pool[rng.integers(len(pool), size=nd)])
    if multi:
        share = 0.35 if labels < 10 else 0.02  # about a third of the pairs relevant
        query_labels = rng.random((nq, labels)) < share
        database_labels = rng.random((nd, labels)) < share
    else:
        classes = int(rng.integers(1, 7))
        query_labels = rng.integers(0, classes + 1, nq)  # class `classes` may be absent
        database_labels = rng.integers(0, classes, nd)
        if sorted_database:  # like CUB's train split: the database in class order
            database_labels = np.sort(database_labels)
    return query_codes, database_codes, bits, query_labels, database_labels


def _reference(oracle, query_codes, database_codes, bits, query_labels, database_labels):
    dist = oracle.distances(query_codes, database_codes, bits)
    rel = oracle.relevance(query_labels, database_labels)
    all_counts = np.stack([np.bincount(d, minlength=bits + 1) for d in dist])
    relevant_counts = np.stack(
        [np.bincount(d[m], minlength=bits + 1) for d, m in zip(dist, rel, strict=True)]
    )
    stable = np.array(
        [oracle.stable_ap(d, m) if m.any() else np.nan for d, m in zip(dist, rel, strict=True)]
    )
    return all_counts, relevant_counts, stable


KERNELS = {"faiss": FaissKernels, "numpy": NumpyKernels}


@pytest.mark.parametrize("backend", ["faiss", "numpy"])
@pytest.mark.parametrize("path", ["table", "sort", "auto"])
@pytest.mark.parametrize("multi", [False, True])
def test_matches_brute_force(oracle, monkeypatch, backend, path, multi):
    # "table" and "sort" force one way of counting same-distance items before each relevant
    # item; "auto" lets the engine choose per step.
    threshold = {"table": 1e12, "sort": 0.0, "auto": hamming._SORT_WHEN_TABLE_PER_PAIR}[path]
    monkeypatch.setattr(hamming, "_SORT_WHEN_TABLE_PER_PAIR", threshold)
    for seed in range(12):
        case = _case(seed, multi=multi, sorted_database=seed % 2 == 1)
        all_counts, relevant_counts, stable = _reference(oracle, *case)
        for pairs_per_step in (5, 1 << 18):  # many small steps, and one step per block
            got = hamming_histograms(
                *case, kernels=KERNELS[backend](), pairs_per_step=pairs_per_step, threads=2
            )
            assert np.array_equal(got.all_counts, all_counts)
            assert np.array_equal(got.relevant_counts, relevant_counts)
            assert np.array_equal(np.isnan(got.ap_index_order), np.isnan(stable))
            ok = ~np.isnan(stable)
            assert np.abs(got.ap_index_order[ok] - stable[ok]).max(initial=0) <= 1e-12


@pytest.mark.parametrize("multi", [False, True])
def test_compiled_kernels_match_brute_force(oracle, monkeypatch, multi):
    # One word (codes up to 64 bits) and several (65-200 bits) take different loops; blocks
    # of one or a few queries as well as whole classes.
    for max_relevant in (3, 1 << 23):
        monkeypatch.setattr(hamming, "MAX_BLOCK_RELEVANT_COMPILED", max_relevant)
        for seed in range(16):
            widths = (3, 8, 13, 24, 64) if seed % 2 else (65, 100, 128, 200)
            # label bit sets of one 64-bit word, and of two (70 labels)
            labels = 70 if seed % 4 >= 2 else 4
            case = _case(
                seed, multi=multi, sorted_database=seed % 4 == 1, widths=widths, labels=labels
            )
            all_counts, relevant_counts, stable = _reference(oracle, *case)
            got = hamming_histograms(*case, kernels=CompiledKernels(), threads=2)
            assert np.array_equal(got.all_counts, all_counts)
            assert np.array_equal(got.relevant_counts, relevant_counts)
            assert np.array_equal(np.isnan(got.ap_index_order), np.isnan(stable))
            ok = ~np.isnan(stable)
            assert np.abs(got.ap_index_order[ok] - stable[ok]).max(initial=0) <= 1e-12


def test_compiled_kernels_on_a_large_database(oracle):
    # Several database tiles (compiled.TILE items each) with relevant items in all of them.
    rng = np.random.default_rng(3)
    pool = rng.standard_normal((6, 20))
    query_codes = pack_bits(pool[rng.integers(6, size=9)])
    noise = rng.normal(0, 0.5, (10_000, 20))
    database_codes = pack_bits(pool[rng.integers(6, size=10_000)] + noise)
    case = (query_codes, database_codes, 20, rng.integers(0, 3, 9), rng.integers(0, 3, 10_000))
    all_counts, relevant_counts, stable = _reference(oracle, *case)
    got = hamming_histograms(*case, kernels=CompiledKernels())
    assert np.array_equal(got.all_counts, all_counts)
    assert np.array_equal(got.relevant_counts, relevant_counts)
    assert np.abs(got.ap_index_order - stable).max() <= 1e-12


@pytest.mark.parametrize("path", ["table", "sort", "compiled"])
def test_field_ap_at_k_in_index_order_matches_brute_force(oracle, monkeypatch, path):
    # HashNet's AP@k with ties in database order, per query, against a stable argsort of each
    # query's distances; blocks split by relevant items too (MAX_BLOCK_RELEVANT), and steps of
    # a few pairs, so that relevant items come from many chunks.
    threshold = {"table": 1e12, "sort": 0.0, "compiled": 0.0}[path]
    monkeypatch.setattr(hamming, "_SORT_WHEN_TABLE_PER_PAIR", threshold)
    monkeypatch.setattr(hamming, "MAX_BLOCK_RELEVANT", 50)
    monkeypatch.setattr(hamming, "MAX_BLOCK_RELEVANT_COMPILED", 50)
    kernels = CompiledKernels() if path == "compiled" else FaissKernels()
    ks = (1, 3, 10, 1000)
    for seed in range(8):
        case = _case(seed, multi=seed % 2 == 1, sorted_database=seed % 4 == 2)
        dist = oracle.distances(*case[:3])
        rel = oracle.relevance(*case[3:])
        for pairs_per_step in (7, 1 << 18):
            got = {k: np.full(len(dist), np.nan) for k in ks}
            for block in hamming.iter_rank_blocks(
                *case, kernels=kernels, pairs_per_step=pairs_per_step, hashnet_ks=ks
            ):
                for k in ks:
                    got[k][block.queries] = block.hashnet_index_order[k]
            for k in ks:
                expected = [
                    oracle.hashnet_ap_of_order(m[np.argsort(d, kind="stable")], k)
                    for d, m in zip(dist, rel, strict=True)
                ]
                assert np.abs(got[k] - expected).max(initial=0) <= 1e-12


def test_blocks_cover_every_query_once_and_report_progress():
    case = _case(5, multi=False)
    seen: list[tuple[int, int]] = []
    blocks = list(
        hamming.iter_rank_blocks(*case, progress=lambda done, total: seen.append((done, total)))
    )
    queries = np.concatenate([b.queries for b in blocks])
    assert sorted(queries.tolist()) == list(range(len(case[0])))
    assert seen[-1] == (len(case[0]), len(case[0]))


def test_label_kinds_must_agree():
    codes = np.zeros((2, 1), np.uint8)
    with pytest.raises(ValueError, match="single-label or both multi-label"):
        hamming_histograms(codes, codes, 8, np.zeros(2, np.int64), np.zeros((2, 3), bool))
