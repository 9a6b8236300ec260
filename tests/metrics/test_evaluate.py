"""evaluate(): every reported number against hand arithmetic or a per-query oracle."""

from __future__ import annotations

import numpy as np
import pytest

from hashcli.codes import CodeFile, pack_binary, pack_bits, write_codes
from hashcli.errors import HashretError
from hashcli.index.kernels import FaissKernels
from hashcli.metrics import evaluate, evaluate_code_files
from hashcli.metrics.compiled import CompiledKernels
from hashcli.metrics.kernels import NumpyKernels


def _hand_case():
    """4-bit codes. Query 0 (class 7) sees distances 0, 1, 1, 1, 2 to the database; relevant:
    items 2, 3, 4. Query 1 (class 99) has no relevant item."""
    database = pack_binary(
        np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    )
    queries = pack_binary(np.array([[0, 0, 0, 0], [1, 1, 1, 1]]))
    return queries, np.array([7, 99]), database, np.array([3, 3, 7, 7, 7])


def test_hand_derived_report():
    report = evaluate(*_hand_case(), bits=4, top_k=[2, 4])
    assert report.n_queries == 2 and report.n_database == 5
    assert report.n_queries_without_relevant == 1  # query 1: skipped, counted
    assert report.n_evaluated == 1
    # Group at distance 1 in index order: not relevant, relevant, relevant.
    assert report.map == pytest.approx(8 / 15, abs=1e-15)
    assert report.map_pessimistic == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3, abs=1e-15)
    assert report.map_optimistic == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3, abs=1e-15)
    assert report.map_index_order == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3, abs=1e-15)
    assert report.map_at_k == pytest.approx({2: 1 / 6, 4: 1 / 3}, abs=1e-15)
    assert report.precision_at_k == pytest.approx({2: 1 / 3, 4: 1 / 2}, abs=1e-15)
    assert report.recall_at_k == pytest.approx({2: 2 / 9, 4: 2 / 3}, abs=1e-15)
    # Within radius 2 lie all 5 items, 3 relevant.
    assert report.precision_at_radius_2 == pytest.approx(3 / 5)
    assert report.n_queries_empty_radius_2 == 0
    assert report.code_stats is None and "code_stats" not in report.to_dict()  # not asked for
    assert report.pr_curve.precision == pytest.approx([0, 2 / 4, 3 / 5, 3 / 5, 3 / 5])
    assert report.pr_curve.recall == pytest.approx([0, 2 / 3, 1, 1, 1])
    assert {k: (c.map, c.n_queries) for k, c in report.per_class.items()} == {
        7: (pytest.approx(8 / 15), 1)
    }
    assert np.isnan(report.per_query_ap[1])


def _heavy_ties(seed: int, multi: bool):
    rng = np.random.default_rng(seed)
    bits, nq, nd = 2, 9, 7  # 7 items over 3 distances: exact enumeration stays small
    query_codes = pack_bits(rng.standard_normal((nq, bits)))
    database_codes = pack_bits(rng.standard_normal((nd, bits)))
    if multi:
        return query_codes, rng.random((nq, 3)) < 0.4, database_codes, rng.random((nd, 3)) < 0.4
    return query_codes, rng.integers(0, 3, nq), database_codes, rng.integers(0, 3, nd)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_against_the_per_query_oracle(oracle, seed, multi):
    query_codes, query_labels, database_codes, database_labels = case = _heavy_ties(seed, multi)
    report = evaluate(*case, bits=2, top_k=[1, 3, 6, 50])
    dist = oracle.distances(query_codes, database_codes, 2)
    rel = oracle.relevance(query_labels, database_labels)
    keep = rel.any(axis=1)
    assert report.n_queries_without_relevant == int((~keep).sum())
    dist, rel = dist[keep], rel[keep]
    rows = list(zip(dist, rel, strict=True))

    def mean(metric):
        return np.mean([oracle.expected_over_ties(d, m, metric) for d, m in rows])

    assert report.map == pytest.approx(mean(oracle.ap_of_order), abs=1e-12)
    assert report.map_index_order == pytest.approx(
        np.mean([oracle.stable_ap(d, m) for d, m in rows]), abs=1e-12
    )
    assert report.map_pessimistic == pytest.approx(
        np.mean([min(map(oracle.ap_of_order, oracle.tie_orders(d, m))) for d, m in rows]),
        abs=1e-12,
    )
    assert report.map_optimistic == pytest.approx(
        np.mean([max(map(oracle.ap_of_order, oracle.tie_orders(d, m))) for d, m in rows]),
        abs=1e-12,
    )
    assert report.map_pessimistic <= report.map <= report.map_optimistic
    for k in (1, 3, 6, 50):
        cut = min(k, 7)
        assert report.map_at_k[k] == pytest.approx(
            mean(lambda o, k=k: oracle.ap_of_order(o, k)), abs=1e-12
        )
        assert report.precision_at_k[k] == pytest.approx(
            mean(lambda o, c=cut: o[:c].sum() / c), abs=1e-12
        )
        assert report.recall_at_k[k] == pytest.approx(
            mean(lambda o, c=cut: o[:c].sum() / o.sum()), abs=1e-12
        )
    # Radius 2 (= every item here) and the PR curve, query by query.
    for t in range(3):
        inside = dist <= t
        has = inside.any(axis=1)
        precision = [(m & i).sum() / i.sum() for i, m in zip(inside[has], rel[has], strict=True)]
        expected = np.mean(precision) if precision else None
        assert report.pr_curve.precision[t] == pytest.approx(expected)
        assert report.pr_curve.queries_with_items[t] == int(has.sum())
        recall = np.mean([(m & i).sum() / m.sum() for i, m in zip(inside, rel, strict=True)])
        assert report.pr_curve.recall[t] == pytest.approx(recall)


def test_multi_label_relevance_is_any_shared_label():
    # One query with labels {0, 2}; the database shares label 2, nothing, label 0, nothing.
    codes = np.zeros((4, 1), np.uint8)
    query_labels = np.array([[True, False, True]])
    database_labels = np.array(
        [[False, False, True], [False, True, False], [True, True, False], [False, False, False]]
    )
    report = evaluate(codes[:1], query_labels, codes, database_labels, bits=8)
    # All four at distance 0: the tie-aware AP of 2 relevant among 4 tied items, by hand:
    # 6 equally likely placements of the relevant pair among places 1-4.
    placements = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    expected = np.mean([(1 / a + 2 / b) / 2 for a, b in placements])
    assert report.map == pytest.approx(expected, abs=1e-15)
    assert report.map_index_order == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert report.per_class.keys() == {0, 2}
    as_uint8 = evaluate(
        codes[:1], query_labels.astype(np.uint8), codes, database_labels.astype(np.uint8), bits=8
    )
    assert as_uint8.map == report.map and as_uint8.per_class.keys() == {0, 2}


def test_radius_2_skips_queries_with_nothing_within_radius():
    # 8-bit codes; query 0 has one relevant item at distance 1; query 1 has none within 2.
    database = pack_binary(np.array([[0] * 8, [1] * 8]))
    queries = pack_binary(np.array([[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]]))
    report = evaluate(queries, np.array([0, 0]), database, np.array([0, 1]), bits=8)
    assert report.precision_at_radius_2 == 1.0  # not (1 + 0) / 2
    assert report.n_queries_empty_radius_2 == 1


def _files(tmp_path, bits=16, n=(40, 300), multi=False):
    rng = np.random.default_rng(7)
    for name, count in zip(("q", "d"), n, strict=True):
        out = rng.standard_normal((count, bits))
        labels = rng.random((count, 3)) < 0.4 if multi else rng.integers(0, 4, count)
        write_codes(tmp_path / f"{name}.h5", CodeFile(pack_bits(out), bits, labels=labels))
        np.savez(tmp_path / f"{name}.npz", codes=np.where(out >= 0, 1, -1), labels=labels)
    return tmp_path / "q", tmp_path / "d"


def test_npz_and_h5_give_the_same_numbers(tmp_path):
    q, d = _files(tmp_path)
    from_h5 = evaluate_code_files(q.with_suffix(".h5"), d.with_suffix(".h5"), top_k=[10])
    from_npz = evaluate_code_files(q.with_suffix(".npz"), d.with_suffix(".npz"), top_k=[10])
    assert from_h5.to_dict(per_class=True) == from_npz.to_dict(per_class=True)
    assert 0 < from_h5.map < 1


def test_threads_and_backends_agree(tmp_path):
    q, d = _files(tmp_path, multi=True)
    one = evaluate_code_files(q.with_suffix(".h5"), d.with_suffix(".h5"), threads=1)
    two = evaluate_code_files(q.with_suffix(".h5"), d.with_suffix(".h5"), threads=2)
    assert one.to_dict() == two.to_dict()
    rng = np.random.default_rng(0)
    case = (
        pack_bits(rng.standard_normal((30, 40))),
        rng.integers(0, 3, 30),
        pack_bits(rng.standard_normal((200, 40))),
        rng.integers(0, 3, 200),
    )
    plain = evaluate(*case, bits=40, top_k=[5], kernels=NumpyKernels()).to_dict()
    for kernels in (FaissKernels(), CompiledKernels()):
        fast = evaluate(*case, bits=40, top_k=[5], kernels=kernels).to_dict()
        assert fast.keys() == plain.keys()
        for key in ("map", "map_index_order", "map_pessimistic", "map_optimistic"):
            assert fast[key] == pytest.approx(plain[key], abs=1e-14)
        for k in ("map_at_k_hashnet", "map_at_k_hashnet_index_order"):
            assert fast[k]["5"] == pytest.approx(plain[k]["5"], abs=1e-14)


def test_errors(tmp_path):
    q, d = _files(tmp_path)
    other = CodeFile(pack_bits(np.ones((3, 24))), 24, labels=np.zeros(3, np.int64))
    write_codes(tmp_path / "bits24.h5", other)
    with pytest.raises(HashretError, match="16-bit codes but .*24-bit codes"):
        evaluate_code_files(q.with_suffix(".h5"), tmp_path / "bits24.h5")
    multi = CodeFile(pack_bits(np.ones((3, 16))), 16, labels=np.ones((3, 2), bool))
    with pytest.raises(HashretError, match="multi-label but .* single-label"):
        evaluate_code_files(multi, d.with_suffix(".h5"))
    empty = CodeFile(np.zeros((0, 2), np.uint8), 16, labels=np.zeros(0, np.int64))
    with pytest.raises(HashretError, match="holds no codes"):
        evaluate_code_files(q.with_suffix(".h5"), empty)
    unlabelled = CodeFile(pack_bits(np.ones((3, 16))), 16)
    with pytest.raises(HashretError, match="has no labels"):
        evaluate_code_files(unlabelled, d.with_suffix(".h5"))
    strangers = CodeFile(pack_bits(np.ones((3, 16))), 16, labels=np.full(3, 1000))
    with pytest.raises(HashretError, match="none of the 3 queries has a relevant item"):
        evaluate_code_files(strangers, d.with_suffix(".h5"))


def test_code_stats_when_asked_for():
    """The database 0000, 1000, 0100, 0010, 1100 (classes 3, 3, 7, 7, 7): 5 distinct codes,
    bit shares 2/5, 2/5, 1/5, 0; the queries 0000 and 1111 of classes 7 and 99."""
    report = evaluate(*_hand_case(), bits=4, code_stats=True)
    stats, query_stats = report.code_stats, report.query_code_stats
    assert stats.ones_share_per_bit == pytest.approx([0.4, 0.4, 0.2, 0.0])
    assert (stats.n_codes, stats.distinct_codes, stats.worst_bit) == (5, 5, 3)
    assert stats.mean_hamming_within_class == pytest.approx(7 / 4)  # (1 + 2 + 1 + 3) / 4
    assert query_stats.n_codes == 2 and query_stats.mean_hamming_between_classes == 4.0
    data = report.to_dict()
    assert data["code_stats"]["distinct_codes"] == 5
    assert data["query_code_stats"]["effective_bits"] == 4.0


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_the_fields_map_at_k_against_the_per_query_oracle(oracle, seed, multi):
    """HashNet's / DeepHash-pytorch's mAP@k: the mean over every query (none relevant: 0), tie-
    aware against every order of the ties, index order against a stable sort."""
    query_codes, query_labels, database_codes, database_labels = case = _heavy_ties(seed, multi)
    query_labels = query_labels.copy()
    query_labels[0] = False if multi else 7  # a query with no relevant item counts 0
    case = (query_codes, query_labels, database_codes, database_labels)
    ks = [1, 3, 6, 50]
    report = evaluate(*case, bits=2, top_k=ks)
    dist = oracle.distances(query_codes, database_codes, 2)
    rel = oracle.relevance(query_labels, database_labels)
    for k in ks:
        tie_aware = np.mean(
            [
                oracle.expected_over_ties(d, m, lambda o, k=k: oracle.hashnet_ap_of_order(o, k))
                for d, m in zip(dist, rel, strict=True)
            ]
        )
        stable = np.mean(
            [
                oracle.hashnet_ap_of_order(m[np.argsort(d, kind="stable")], k)
                for d, m in zip(dist, rel, strict=True)
            ]
        )
        assert report.map_at_k_hashnet[k] == pytest.approx(tie_aware, abs=1e-12)
        assert report.map_at_k_hashnet_index_order[k] == pytest.approx(stable, abs=1e-12)
    assert report.to_dict()["map_at_k_hashnet"] == {str(k): report.map_at_k_hashnet[k] for k in ks}


@pytest.mark.parametrize(("classes", "multi"), [(3, False), (60, False), (5, True)])
def test_the_fields_index_order_map_at_k_on_a_larger_database(oracle, classes, multi):
    """Every path of the ranking engine (dense classes by sorting, sparse ones by segments,
    multi-label) against a direct stable-sort re-implementation, to 1e-9."""
    rng = np.random.default_rng(classes)
    bits, nq, nd = 8, 40, 2500
    query_codes = pack_bits(rng.standard_normal((nq, bits)))
    database_codes = pack_bits(rng.standard_normal((nd, bits)))
    if multi:
        query_labels, database_labels = (
            rng.random((nq, classes)) < 0.3,
            rng.random((nd, classes)) < 0.3,
        )
    else:
        query_labels, database_labels = rng.integers(0, classes, nq), rng.integers(0, classes, nd)
    ks = [1, 10, 100, 1000, 5000]
    report = evaluate(query_codes, query_labels, database_codes, database_labels, bits, top_k=ks)
    dist = oracle.distances(query_codes, database_codes, bits)
    rel = oracle.relevance(query_labels, database_labels)
    for k in ks:
        expected = np.mean(
            [
                oracle.hashnet_ap_of_order(m[np.argsort(d, kind="stable")], k)
                for d, m in zip(dist, rel, strict=True)
            ]
        )
        assert report.map_at_k_hashnet_index_order[k] == pytest.approx(expected, abs=1e-9)
        # ties make the two conventions differ, but not by much on random codes
        assert abs(report.map_at_k_hashnet[k] - expected) < 0.05
