"""Oracles for the metric tests: plain per-query loops, written for clarity, not speed.

Exposed through the ``oracle`` fixture (test modules here are not importable packages).
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest


def distances(query_codes: np.ndarray, database_codes: np.ndarray, bits: int) -> np.ndarray:
    """int (nq, nd) Hamming distances, bit by bit."""
    q = np.unpackbits(query_codes, axis=1, count=bits).astype(int)
    d = np.unpackbits(database_codes, axis=1, count=bits).astype(int)
    return (q[:, None, :] != d[None, :, :]).sum(axis=2)


def relevance(query_labels: np.ndarray, database_labels: np.ndarray) -> np.ndarray:
    """bool (nq, nd): same class, or at least one shared label."""
    if query_labels.ndim == 1:
        return query_labels[:, None] == database_labels[None, :]
    return np.array([[bool(np.any(q & d)) for d in database_labels] for q in query_labels])


def ap_of_order(relevant_in_order: np.ndarray, k: int | None = None) -> float:
    """AP of one ranked list; with k, AP@k normalised by min(k, R)."""
    total = int(relevant_in_order.sum())
    cut = len(relevant_in_order) if k is None else min(k, len(relevant_in_order))
    hits, acc = 0, 0.0
    for place, rel in enumerate(relevant_in_order[:cut], start=1):
        if rel:
            hits += 1
            acc += hits / place
    return acc / (total if k is None else min(cut, total))


def hashnet_ap_of_order(relevant_in_order: np.ndarray, k: int) -> float:
    """The field's AP@k, as DeepHash-pytorch's CalcTopMap writes it for one query: the mean of
    (hits so far) / place over the relevant items in the first k places; 0 when there are none."""
    top = relevant_in_order[:k]
    places = [place for place, rel in enumerate(top, start=1) if rel]
    if not places:
        return 0.0
    return sum((hit / place for hit, place in enumerate(places, start=1))) / len(places)


def stable_ap(dist_row: np.ndarray, rel_row: np.ndarray) -> float:
    """AP with ties broken by database index."""
    return ap_of_order(rel_row[np.argsort(dist_row, kind="stable")])


def tie_orders(dist_row: np.ndarray, rel_row: np.ndarray):
    """Every ranking of the items that respects distance, as relevance lists (all orders within
    each tie group, with repeats: each permutation of the group's items counts once)."""
    groups = [rel_row[dist_row == d] for d in np.unique(dist_row)]
    for parts in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield np.concatenate([np.array(p, dtype=bool) for p in parts])


def expected_over_ties(dist_row: np.ndarray, rel_row: np.ndarray, metric) -> float:
    """Mean of ``metric(order)`` over every order within tie groups (exact enumeration)."""
    values = [metric(order) for order in tie_orders(dist_row, rel_row)]
    return math.fsum(values) / len(values)


@pytest.fixture
def oracle() -> SimpleNamespace:
    return SimpleNamespace(
        distances=distances,
        relevance=relevance,
        ap_of_order=ap_of_order,
        hashnet_ap_of_order=hashnet_ap_of_order,
        stable_ap=stable_ap,
        tie_orders=tie_orders,
        expected_over_ties=expected_over_ties,
    )
