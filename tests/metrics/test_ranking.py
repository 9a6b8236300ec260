"""Closed-form ranking metrics from histograms, against hand arithmetic and exact enumeration."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from hashcli.metrics import ap_bounds, harmonic_numbers, tie_aware_ap, tie_aware_top_k
from hashcli.metrics.ranking import _tie_group_sums, hashnet_ap_at_k

# The 5-item database used throughout: distances 0, 1, 1, 1, 2; relevant: no, then two of the
# three items at distance 1, and the item at distance 2 (R = 3).
N_HAND = np.array([[1, 3, 1, 0, 0]])
R_HAND = np.array([[0, 2, 1, 0, 0]])


def test_hand_derived_five_item_case():
    # Places 2-4 hold the distance-1 group; its non-relevant item is at place 2, 3 or 4.
    #   place 2: precisions 1/3, 2/4, 3/5;  place 3: 1/2, 2/4, 3/5;  place 4: 1/2, 2/3, 3/5
    orders = [
        Fraction(1, 3) + Fraction(2, 4) + Fraction(3, 5),
        Fraction(1, 2) + Fraction(2, 4) + Fraction(3, 5),
        Fraction(1, 2) + Fraction(2, 3) + Fraction(3, 5),
    ]
    tie_aware = sum(orders) / 3 / 3
    assert tie_aware == Fraction(8, 15)
    assert tie_aware_ap(N_HAND, R_HAND)[0] == pytest.approx(8 / 15, abs=1e-15)
    pessimistic, optimistic = ap_bounds(N_HAND, R_HAND)
    assert pessimistic[0] == pytest.approx(float(orders[0] / 3), abs=1e-15)  # 43/90
    assert optimistic[0] == pytest.approx(float(orders[2] / 3), abs=1e-15)  # 53/90
    assert float(orders[0] / 3) == pytest.approx(43 / 90) and float(orders[2] / 3) == 53 / 90


@pytest.mark.parametrize(
    ("k", "ap_k", "precision_k", "recall_k"),
    [
        # top 2: place 1 is not relevant; place 2 is relevant with probability 2/3, precision 1/2
        (2, Fraction(2, 3) * Fraction(1, 2) / 2, Fraction(2, 3) / 2, Fraction(2, 3) / 3),
        # top 4: the whole group: mean of (1/3+2/4), (1/2+2/4), (1/2+2/3) = 1, over min(4, 3)
        (4, Fraction(1, 3), Fraction(2, 4), Fraction(2, 3)),
        # k beyond the database: the whole list, k' = 5
        (100, Fraction(8, 15), Fraction(3, 5), Fraction(1)),
    ],
)
def test_hand_derived_top_k(k, ap_k, precision_k, recall_k):
    got = [v[0] for v in tie_aware_top_k(N_HAND, R_HAND, k)]
    assert got == pytest.approx([float(ap_k), float(precision_k), float(recall_k)], abs=1e-15)


def test_harmonic_numbers_are_exact_to_rounding():
    h = harmonic_numbers(300)
    exact = [Fraction(0)]
    for m in range(1, 301):
        exact.append(exact[-1] + Fraction(1, m))
    assert np.allclose(h, [float(x) for x in exact], rtol=2e-15, atol=0)


def test_closed_form_matches_the_direct_sum():
    # (r/n) sum_{p=1..t} (R_d + 1 + (p-1)(r-1)/(n-1)) / (N_d + p), summed term by term
    rng = np.random.default_rng(0)
    h = harmonic_numbers(5000)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        r = int(rng.integers(0, n + 1))
        before = int(rng.integers(0, 3000))
        relevant_before = int(rng.integers(0, before + 1))
        t = int(rng.integers(0, n + 1))
        slope = Fraction(r - 1, n - 1) if n > 1 else Fraction(0)
        direct = Fraction(r, n) * sum(
            (relevant_before + 1 + (p - 1) * slope) / Fraction(before + p) for p in range(1, t + 1)
        )
        got = _tie_group_sums(
            np.array([[n]]),
            np.array([[r]]),
            np.array([[before]]),
            np.array([[relevant_before]]),
            np.array([[t]]),
            h,
        )[0, 0]
        # Exact up to rounding: the two terms of the closed form cancel when b (N_d + 1) is
        # large, so the absolute error grows like eps * N_d (1e-10 at a million items).
        assert abs(got - float(direct)) <= 1e-14 * (before + 1)


def _random_rows(rng, count, size, bits):
    for _ in range(count):
        dist = rng.integers(0, bits + 1, size)
        rel = rng.random(size) < rng.uniform(0.2, 0.8)
        if not rel.any():
            rel[rng.integers(size)] = True
        yield dist, rel


def _hist(dist, rel, bits):
    return (
        np.bincount(dist, minlength=bits + 1)[None, :],
        np.bincount(dist[rel], minlength=bits + 1)[None, :],
    )


def test_tie_aware_ap_is_the_mean_over_every_order_within_ties(oracle):
    rng = np.random.default_rng(1)
    for dist, rel in _random_rows(rng, 60, size=7, bits=2):  # heavy ties: 7 items, 3 distances
        expected = oracle.expected_over_ties(dist, rel, oracle.ap_of_order)
        n, r = _hist(dist, rel, 2)
        assert tie_aware_ap(n, r)[0] == pytest.approx(expected, abs=1e-12)
        pessimistic, optimistic = ap_bounds(n, r)
        orders = [oracle.ap_of_order(o) for o in oracle.tie_orders(dist, rel)]
        # the bounds are the worst and best orders, and bracket the expectation
        assert pessimistic[0] == pytest.approx(min(orders), abs=1e-12)
        assert optimistic[0] == pytest.approx(max(orders), abs=1e-12)
        assert pessimistic[0] <= expected + 1e-12 <= optimistic[0] + 2e-12


def test_top_k_metrics_are_expectations_over_orders(oracle):
    rng = np.random.default_rng(2)
    for dist, rel in _random_rows(rng, 25, size=7, bits=3):
        n, r = _hist(dist, rel, 3)
        total = rel.sum()
        for k in range(1, 9):
            cut = min(k, len(dist))
            ap_k, precision_k, recall_k = (v[0] for v in tie_aware_top_k(n, r, k))
            assert ap_k == pytest.approx(
                oracle.expected_over_ties(dist, rel, lambda o, k=k: oracle.ap_of_order(o, k)),
                abs=1e-12,
            )
            found = oracle.expected_over_ties(dist, rel, lambda o, c=cut: o[:c].sum())
            assert precision_k == pytest.approx(found / cut, abs=1e-12)
            assert recall_k == pytest.approx(found / total, abs=1e-12)


def test_without_ties_all_three_coincide(oracle):
    rng = np.random.default_rng(3)
    dist = rng.permutation(9)  # distances 0..8, all distinct
    rel = rng.random(9) < 0.5
    rel[0] = True
    n, r = _hist(dist, rel, 8)
    expected = oracle.stable_ap(dist, rel)
    pessimistic, optimistic = ap_bounds(n, r)
    for value in (tie_aware_ap(n, r)[0], pessimistic[0], optimistic[0]):
        assert value == pytest.approx(expected, abs=1e-14)


def test_query_without_relevant_items_is_nan():
    n = np.array([[2, 3], [1, 4]])
    r = np.array([[0, 0], [1, 0]])
    ap = tie_aware_ap(n, r)
    assert np.isnan(ap[0]) and ap[1] == 1.0
    assert all(np.isnan(v[0]) for v in tie_aware_top_k(n, r, 3))
    assert all(np.isnan(v[0]) for v in ap_bounds(n, r))


def test_bad_histograms_are_refused():
    with pytest.raises(ValueError):
        tie_aware_ap(np.array([[1, 1]]), np.array([[2, 0]]))
    with pytest.raises(ValueError):
        tie_aware_top_k(N_HAND, R_HAND, 0)


def _arrangements(n_row, r_row):
    """Every placement of each group's relevant items among its places (all equally likely
    under a uniformly random order within ties), as relevance lists."""
    groups = []
    for n_d, r_d in zip(n_row, r_row, strict=True):
        groups.append(
            [np.isin(np.arange(n_d), chosen) for chosen in itertools.combinations(range(n_d), r_d)]
        )
    for parts in itertools.product(*groups):
        yield np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


@pytest.mark.parametrize("seed", range(6))
def test_hashnet_ap_at_k_is_the_expectation_over_tie_orders(oracle, seed):
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 6, size=(12, 4))
    r = rng.integers(0, 6, size=(12, 4)) % (n + 1)
    r[0] = 0  # a query without any relevant item: 0
    for k in (1, 2, 4, 7, 11, 100):
        got = hashnet_ap_at_k(n, r, k)
        for q in range(len(n)):
            orders = list(_arrangements(n[q], r[q]))
            values = [oracle.hashnet_ap_of_order(o, k) for o in orders]
            assert got[q] == pytest.approx(math.fsum(values) / len(values), abs=1e-12), (q, k)
        # few terms held at once: the same numbers
        assert np.array_equal(hashnet_ap_at_k(n, r, k, max_pairs=1), got)
    with pytest.raises(ValueError, match="at least 1"):
        hashnet_ap_at_k(n, r, 0)


def test_hashnet_ap_at_k_by_hand():
    # The 5-item case at k = 2: place 1 not relevant; place 2 relevant with probability 2/3,
    # then precision 1/2 over one relevant item: 1/3. (hashret's own AP@2 divides by 2: 1/6.)
    assert hashnet_ap_at_k(N_HAND, R_HAND, 2)[0] == pytest.approx(1 / 3, abs=1e-15)
    # k = 4: the whole group; orders give (1/3 + 2/4) / 2, (1/2 + 2/4) / 2, (1/2 + 2/3) / 2
    expected = (Fraction(5, 6) + Fraction(1) + Fraction(7, 6)) / 2 / 3
    assert hashnet_ap_at_k(N_HAND, R_HAND, 4)[0] == pytest.approx(float(expected), abs=1e-15)
