"""Ranking metrics in closed form from per-distance histograms.

Every function here takes, for a batch of queries, two histograms over Hamming distance
``d = 0..bits``:

* ``all_counts[q, d]`` (n_d): database items at distance d from query q;
* ``relevant_counts[q, d]`` (r_d): relevant items among them;

and returns per-query values (float64, NaN for a query with no relevant item). No sort, no
per-item loop: O(bits) per query. Notation: N_d and R_d are the counts at distances below d,
R the number of relevant items.

**Tie-aware AP** (McSherry & Najork 2008) is the expected AP when items at equal distance come
in uniformly random order. Within the tie group at distance d, the item at position p (1-based)
is relevant with probability r_d / n_d and, given that, the expected number of relevant items up
to it is ``a + b (p - 1)`` with ``a = R_d + 1`` and ``b = (r_d - 1) / (n_d - 1)`` (0 if n_d = 1),
so the group contributes ``(r_d / n_d) sum_{p=1..t} (a + b (p - 1)) / (N_d + p)`` for its first
t positions. Writing ``a + b (p - 1) = (a - b (N_d + 1)) + b (N_d + p)``:

    sum_{p=1..t} (a + b (p - 1)) / (N_d + p) = (a - b (N_d + 1)) (H[N_d + t] - H[N_d]) + b t

with H the harmonic numbers. ``t = n_d`` gives the whole group (AP); a cut at rank k gives
``t = clip(k - N_d, 0, n_d)`` (AP@k, P@k, R@k as exact expectations). The two terms cancel
when ``b (N_d + 1)`` is large, so a group's sum carries a rounding error of about
``1e-15 * N_d`` (1e-9 at a million items): far below any digit a report shows.

**Bounds**: relevant items first (optimistic) or last (pessimistic) within each tie group; the
i-th relevant item of the group then has precision ``(R_d + i) / (M + i)`` with ``M = N_d``
or ``M = N_d + n_d - r_d``, and ``sum_{i=1..r} (R_d + i) / (M + i) = r + (R_d - M) (H[M + r]
- H[M])``.
"""

from __future__ import annotations

import numpy as np


def harmonic_numbers(n_max: int) -> np.ndarray:
    """H[0..n_max] as float64, ``H[m] = 1 + 1/2 + ... + 1/m`` (H[0] = 0).

    Through the digamma function (``H[m] = psi(m + 1) + Euler's gamma``), which is accurate to
    a few ulps at every m; a running sum of 1/m would accumulate rounding error.
    """
    from scipy.special import digamma

    return digamma(np.arange(1, n_max + 2, dtype=np.float64)) + np.euler_gamma


class _Cells:
    """The (query, distance) cells that hold relevant items; nothing else contributes to AP.

    Working on these cells only (instead of the dense (n_queries, bits + 1) arrays) skips the
    many empty cells: a query has relevant items at a few distances only.
    """

    def __init__(self, all_counts: np.ndarray, relevant_counts: np.ndarray) -> None:
        n = np.asarray(all_counts, dtype=np.int64)
        r = np.asarray(relevant_counts, dtype=np.int64)
        if n.ndim != 2 or n.shape != r.shape:
            raise ValueError(
                f"histograms must be two (n_queries, bits + 1) arrays, got {n.shape} and {r.shape}"
            )
        if np.any(r > n) or np.any(r < 0):
            raise ValueError("relevant counts must lie between 0 and the item counts")
        self.n_queries = len(n)
        self.all_counts, self.relevant_counts = n, r  # dense, for the cut of the field's AP@k
        self.cum_all, self.cum_relevant = np.cumsum(n, axis=1), np.cumsum(r, axis=1)
        self.total_relevant = r.sum(axis=1)
        self.database = n.sum(axis=1)
        self.query, self.distance = np.nonzero(r)
        distance = self.distance
        self.n = n[self.query, distance]
        self.r = r[self.query, distance]
        self.closer = (self.cum_all - n)[self.query, distance]  # N_d
        self.relevant_closer = (self.cum_relevant - r)[self.query, distance]  # R_d

    def per_query(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.query, weights=values, minlength=self.n_queries)


def _harmonic(h: np.ndarray | None, cells: _Cells) -> np.ndarray:
    needed = int(cells.database.max()) if cells.n_queries else 0
    if h is None or len(h) <= needed:
        h = harmonic_numbers(needed)
    return h


def _per_query(total: np.ndarray, norm: np.ndarray) -> np.ndarray:
    out = np.full(total.shape, np.nan)
    np.divide(total, norm, out=out, where=norm > 0)
    return out


def _tie_group_sums(
    n: np.ndarray,
    r: np.ndarray,
    closer: np.ndarray,
    relevant_closer: np.ndarray,
    taken: np.ndarray,
    h: np.ndarray,
) -> np.ndarray:
    """Expected sum of precision over relevant items in the first ``taken`` places of each group."""
    nf = n.astype(np.float64)
    slope = np.zeros_like(nf)
    np.divide(r - 1, n - 1, out=slope, where=n > 1)  # b: 0 for single-item groups
    start = (relevant_closer + 1) - slope * (closer + 1)  # a - b (N_d + 1)
    inner = start * (h[closer + taken] - h[closer]) + slope * taken
    share = np.zeros_like(nf)
    np.divide(r, nf, out=share, where=n > 0)  # r_d / n_d
    return share * inner


def _ap(cells: _Cells, h: np.ndarray) -> np.ndarray:
    sums = _tie_group_sums(cells.n, cells.r, cells.closer, cells.relevant_closer, cells.n, h)
    return _per_query(cells.per_query(sums), cells.total_relevant)


def _bounds(cells: _Cells, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    def bound(before: np.ndarray) -> np.ndarray:
        # sum_{i=1..r} (R_d + i) / (before + i), per group
        sums = cells.r + (cells.relevant_closer - before) * (h[before + cells.r] - h[before])
        return _per_query(cells.per_query(sums), cells.total_relevant)

    return bound(cells.closer + cells.n - cells.r), bound(cells.closer)


def _top_k(cells: _Cells, k: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    cut = np.minimum(k, cells.database)
    taken = np.clip(cut[cells.query] - cells.closer, 0, cells.n)
    sums = _tie_group_sums(cells.n, cells.r, cells.closer, cells.relevant_closer, taken, h)
    found = cells.per_query(cells.r * taken / cells.n)
    total = cells.total_relevant
    has_relevant = total > 0
    ap = _per_query(cells.per_query(sums), np.where(has_relevant, np.minimum(cut, total), 0))
    precision = _per_query(found, np.where(has_relevant, cut, 0))
    recall = _per_query(found, total)
    return ap, precision, recall


def tie_aware_ap(
    all_counts: np.ndarray, relevant_counts: np.ndarray, harmonic: np.ndarray | None = None
) -> np.ndarray:
    """Tie-aware average precision over the whole database.

    Args:
        all_counts: int (n_queries, bits + 1), items per distance.
        relevant_counts: int (n_queries, bits + 1), relevant items per distance.
        harmonic: optional precomputed :func:`harmonic_numbers` table (at least database size).

    Returns:
        float64 (n_queries,): expected AP over uniformly random orders within ties; NaN where a
        query has no relevant item.
    """
    cells = _Cells(all_counts, relevant_counts)
    return _ap(cells, _harmonic(harmonic, cells))


def ap_bounds(
    all_counts: np.ndarray, relevant_counts: np.ndarray, harmonic: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pessimistic, optimistic) AP: relevant items last / first within every tie group.

    Same arguments as :func:`tie_aware_ap`; each result is float64 (n_queries,), NaN where a
    query has no relevant item.
    """
    cells = _Cells(all_counts, relevant_counts)
    return _bounds(cells, _harmonic(harmonic, cells))


def tie_aware_top_k(
    all_counts: np.ndarray,
    relevant_counts: np.ndarray,
    k: int,
    harmonic: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AP@k, precision@k, recall@k), each the expectation over random orders within ties.

    The ranked list is cut after ``k' = min(k, database size)`` items; when the cut falls inside
    a tie group, the expected share of that group's relevant items (and of their precision) is
    counted. AP@k sums precision at the relevant items within the first k' places and divides
    by ``min(k', R)``; precision@k divides the expected number of relevant items in the first
    k' places by k', recall@k by R.

    Returns:
        Three float64 (n_queries,) arrays; NaN where a query has no relevant item.
    """
    cells = _Cells(all_counts, relevant_counts)
    return _top_k(cells, k, _harmonic(harmonic, cells))


def ranking_summary(
    all_counts: np.ndarray,
    relevant_counts: np.ndarray,
    ks: list[int] | tuple[int, ...] = (),
    harmonic: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """All of the above in one pass over the histograms (what the evaluator uses).

    Returns float64 (n_queries,) arrays under ``ap``, ``ap_pessimistic``, ``ap_optimistic``
    and, for each k, ``ap@k``, ``precision@k``, ``recall@k`` and the field's ``hashnet@k``
    (:func:`hashnet_ap_at_k`).
    """
    cells = _Cells(all_counts, relevant_counts)
    h = _harmonic(harmonic, cells)
    out = {"ap": _ap(cells, h)}
    out["ap_pessimistic"], out["ap_optimistic"] = _bounds(cells, h)
    for k in ks:
        out[f"ap@{k}"], out[f"precision@{k}"], out[f"recall@{k}"] = _top_k(cells, k, h)
        out[f"hashnet@{k}"] = _hashnet(cells, k, h)
    return out


def hashnet_ap_at_k(
    all_counts: np.ndarray,
    relevant_counts: np.ndarray,
    k: int,
    harmonic: np.ndarray | None = None,
    *,
    max_pairs: int = 1 << 22,
) -> np.ndarray:
    """The field's AP@k (HashNet's and DeepHash-pytorch's ``CalcTopMap``), tie-aware.

    That convention divides the sum of precision at the relevant items within the first k
    places by the number X of relevant items there (not by ``min(k, R)``), and scores 0 when
    X = 0; the field then averages over *all* queries. With ties ordered uniformly at random
    this is the expectation of a ratio, computed exactly: only the tie group that the cut at
    ``k' = min(k, database size)`` falls into is random in X. If that group (n items, r
    relevant, N items and R_b relevant items closer) gives t = k' - N places, the number x of
    its relevant items among them is hypergeometric, those x are a uniformly random x-subset
    of the t places, and the closer groups' sum S does not depend on x, so

        E[AP@k] = sum_x P(X_g = x) (S + B(x)) / (R_b + x),   0 when R_b + x = 0,

    with B(x) the expected precision sum of x relevant items in t places, the same closed form
    as a whole tie group (module docstring) with n -> t, r -> x.

    Args:
        all_counts, relevant_counts: int (n_queries, bits + 1) histograms.
        k: the cut-off, at least 1.
        harmonic: optional precomputed :func:`harmonic_numbers` table.
        max_pairs: (query, x) terms held at once (memory bound).

    Returns:
        float64 (n_queries,): 0 for a query without a relevant item in its first k places
        (or at all): average over every query to get the field's mAP@k.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    cells = _Cells(all_counts, relevant_counts)
    return _hashnet(cells, k, _harmonic(harmonic, cells), max_pairs=max_pairs)


def _hashnet(cells: _Cells, k: int, h: np.ndarray, *, max_pairs: int = 1 << 22) -> np.ndarray:
    """:func:`hashnet_ap_at_k` on prepared cells."""
    from scipy.special import gammaln

    n, r = cells.all_counts, cells.relevant_counts
    nq = len(n)
    out = np.zeros(nq)
    if nq == 0:
        return out
    cut = np.minimum(k, n.sum(axis=1))
    cum = cells.cum_all
    group = np.argmax(cum >= cut[:, None], axis=1)  # the tie group holding place k'
    rows = np.arange(nq)
    g_n, g_r = n[rows, group], r[rows, group]
    g_closer = cum[rows, group] - g_n
    g_relevant_closer = (cells.cum_relevant - r)[rows, group]
    taken = cut - g_closer  # t >= 1 places of the group (t = 0 only for an empty database)
    # S: whole groups closer than the cut group, each in its closed form.
    full = np.where(cells.distance < group[cells.query], cells.n, 0)
    closer_sums = cells.per_query(
        _tie_group_sums(cells.n, cells.r, cells.closer, cells.relevant_closer, full, h)
    )
    # x ranges over max(0, t - (n - r)) .. min(r, t), query by query.
    low = np.maximum(0, taken - (g_n - g_r))
    high = np.minimum(g_r, taken)
    sizes = np.where(cut > 0, high - low + 1, 0)
    ends = np.cumsum(sizes)
    start = 0
    while start < nq:
        # as many queries as fit in max_pairs terms (at least one)
        before = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + max_pairs, side="right")))
        part = np.arange(start, stop)
        count = sizes[part]
        q = np.repeat(part, count)
        x = low[q] + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        big_n, big_r, t = g_n[q], g_r[q], taken[q]
        log_pmf = (
            _log_choose(big_r, x, gammaln)
            + _log_choose(big_n - big_r, t - x, gammaln)
            - _log_choose(big_n, t, gammaln)
        )
        b = _tie_group_sums(t, x, g_closer[q], g_relevant_closer[q], t, h)
        found = g_relevant_closer[q] + x
        value = np.zeros(len(q))
        np.divide(closer_sums[q] + b, found, out=value, where=found > 0)
        out[part] = np.bincount(q - start, weights=np.exp(log_pmf) * value, minlength=len(part))
        start = stop
    return out


def _log_choose(n: np.ndarray, k: np.ndarray, gammaln) -> np.ndarray:
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def radius_counts(
    all_counts: np.ndarray, relevant_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative counts within each Hamming radius: int64 (n_queries, bits + 1) twice.

    ``within[q, t]`` items and ``relevant_within[q, t]`` relevant items at distance <= t.
    """
    n = np.asarray(all_counts, dtype=np.int64)
    r = np.asarray(relevant_counts, dtype=np.int64)
    return np.cumsum(n, axis=1), np.cumsum(r, axis=1)
