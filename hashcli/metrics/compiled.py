"""The evaluator's ranking statistics in one compiled pass per query block (numba).

The portable evaluator (:mod:`hashcli.metrics.hamming`) builds each step from array passes:
distances, a histogram keyed by (row, distance, segment), a running sum over that table. Each
pass streams the step through memory, and together they cost two to three times a FAISS
``IndexBinaryFlat`` k=1 scan when relevance is dense (1% of the database relevant), nine
times at 10%. Neither numpy nor FAISS has the loop that does it all at once, so it is written
here and compiled with numba (the house rule prefers a kept library; numba is the kept
compiler, and the loop is ours because no library computes these statistics): for every
database item in index order, its distance to the query, one increment of that distance's
running count, and at each relevant item a read of the count, which is its number of earlier
items at the same distance (``E`` of :mod:`hashcli.metrics.hamming`). The per-query finish
then needs only the relevant items.

* Single-label blocks (rows share one class, so one sorted list of relevant positions) take
  one pass: the relevant items cut each row into segments, counted without a label test.
* Multi-label blocks test relevance per pair (a bitwise AND of label words) in one pass with
  no branch on it (see :func:`rank_multi`), keeping every relevant item's distance and count.

In the single-label pass, running counts sit in four interleaved lanes (item j in lane
j % 4; the multi-label pass reads the count at every item, so it keeps one): consecutive
items often share a distance, and an increment of the count the previous one just wrote waits
for that store (about 0.9 ns a pair with one lane, 0.57 ns with four on this machine's cores;
FAISS's k=1 scan takes about 1.1 ns). The database is walked in tiles that stay in cache
while every query of the block passes over them. The functions release the GIL (``nogil``),
so the evaluator's threads over query blocks use every core; compiled code is cached on disk
(``cache=True``) after the first use.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

# Database items per tile: 32 KiB of 64-bit codes, in L1/L2 while the block's queries pass.
TILE = 4096
LANES = 4


@intrinsic
def _popcount(typingctx, word):  # noqa: ARG001 (numba's intrinsic signature)
    """Set bits of a uint64: LLVM's ctpop, one POPCNT instruction (numba has no popcount)."""

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


def _distance(queries, i, database, j):
    """Hamming distance of query i and database item j (codes as rows of uint64 words, or
    one word each as 1-D arrays: the common case of codes up to 64 bits, where a loop over
    words made the whole pass nearly twice as slow)."""


@overload(_distance)
def _distance_impl(queries, i, database, j):  # noqa: ARG001 (numba's overload signature)
    if queries.ndim == 1:
        return lambda queries, i, database, j: _popcount(queries[i] ^ database[j])

    def words(queries, i, database, j):
        d = 0
        for w in range(queries.shape[1]):
            d += _popcount(queries[i, w] ^ database[j, w])
        return d

    return words


@njit(nogil=True, cache=True, inline="always")
def _count_run(queries, i, database, start, stop, lanes):
    """Add items start..stop-1 to query i's running counts (lane j % 4 for item j, so that
    the lanes of a query stay interchangeable: only their sum is ever read)."""
    j = start
    while j + LANES <= stop:
        lanes[0, _distance(queries, i, database, j)] += 1
        lanes[1, _distance(queries, i, database, j + 1)] += 1
        lanes[2, _distance(queries, i, database, j + 2)] += 1
        lanes[3, _distance(queries, i, database, j + 3)] += 1
        j += LANES
    while j < stop:
        lanes[0, _distance(queries, i, database, j)] += 1
        j += 1


@njit(nogil=True, cache=True)
def _finish_query(i, counts, delta, earlier, ks, relevant_counts, ap, at_k):
    """AP in index order and the field's AP@k of query i from its relevant items' distances
    ``delta`` and earlier same-distance counts ``earlier`` (both in database order)."""
    values = counts.shape[0]
    m = delta.shape[0]
    closer = np.zeros(values, np.int64)
    relevant_closer = np.zeros(values, np.int64)
    for k in range(m):
        relevant_counts[i, delta[k]] += 1
    for d in range(1, values):
        closer[d] = closer[d - 1] + counts[d - 1]
        relevant_closer[d] = relevant_closer[d - 1] + relevant_counts[i, d - 1]
    nk = ks.shape[0]
    sums = np.zeros(nk)
    kept = np.zeros(nk, np.int64)
    total = 0.0
    for k in range(m):
        d = delta[k]
        rank = closer[d] + earlier[k] + 1
        # relevant items ranked up to this one: those closer, then those at its distance
        # before it in database order (ranks grow along the database at equal distance)
        relevant_closer[d] += 1
        precision = relevant_closer[d] / rank
        total += precision
        for c in range(nk):
            if rank <= ks[c]:
                sums[c] += precision
                kept[c] += 1
    ap[i] = total / m if m else math.nan
    for c in range(nk):
        at_k[c, i] = sums[c] / kept[c] if kept[c] else 0.0


@njit(nogil=True, cache=True)
def rank_shared(queries, database, positions, ks, all_counts, relevant_counts, ap, at_k):
    """Ranking statistics of queries that share their relevant items (one class).

    Args:
        queries: uint64 (nq, W) codes as words; database: uint64 (nb, W).
        positions: int64 (m,) ascending database indices of the relevant items.
        ks: int64 (K,) cut-offs of the field's AP@k.
        all_counts, relevant_counts: int64 (nq, bits + 1) zeros, filled with the items and
            relevant items per distance.
        ap: float64 (nq,) filled with the index-order AP (NaN without relevant items).
        at_k: float64 (K, nq) filled with the field's AP@k in index order.
    """
    nq = queries.shape[0]
    nb = database.shape[0]
    m = positions.shape[0]
    values = all_counts.shape[1]
    lanes = np.zeros((nq, LANES, values), np.int32)
    delta = np.empty((nq, m), np.int16)  # distances <= 4096 bits
    earlier = np.empty((nq, m), np.int32)  # counts < 2**31 items
    first = 0  # first relevant item of the tile
    for t0 in range(0, nb, TILE):
        t1 = min(t0 + TILE, nb)
        last = first
        while last < m and positions[last] < t1:
            last += 1
        for i in range(nq):
            own = lanes[i]
            start = t0
            for k in range(first, last):
                p = positions[k]
                _count_run(queries, i, database, start, p, own)
                d = _distance(queries, i, database, p)
                delta[i, k] = d
                earlier[i, k] = own[0, d] + own[1, d] + own[2, d] + own[3, d]
                own[0, d] += 1
                start = p + 1
            _count_run(queries, i, database, start, t1, own)
        first = last
    for i in range(nq):
        for d in range(values):
            for lane in range(LANES):
                all_counts[i, d] += lanes[i, lane, d]
        _finish_query(i, all_counts[i], delta[i], earlier[i], ks, relevant_counts, ap, at_k)


def _shares_label(query_labels, i, database_labels, j):
    """1 when query i and database item j share a label (bit sets of uint64 words, or one
    word each as 1-D arrays: up to 64 classes), else 0."""


@overload(_shares_label)
def _shares_label_impl(query_labels, i, database_labels, j):  # noqa: ARG001
    if query_labels.ndim == 1:
        return lambda query_labels, i, database_labels, j: int(
            (query_labels[i] & database_labels[j]) != 0
        )

    def words(query_labels, i, database_labels, j):
        shared = 0
        for w in range(query_labels.shape[1]):
            shared |= query_labels[i, w] & database_labels[j, w]
        return int(shared != 0)

    return words


@njit(nogil=True, cache=True)
def rank_multi(
    queries, database, query_labels, database_labels, ks, all_counts, relevant_counts, ap, at_k
):
    """:func:`rank_shared` for multi-label queries: relevant = at least one shared label.

    ``query_labels``: uint64 (nq, L) label bit sets, or (nq,) for one word; likewise
    ``database_labels``. Relevance differs per pair and is often dense (half the database for
    NUS-WIDE-like labels), and a branch on it would be mispredicted about as often as taken, so
    the pass has none: every item's distance and earlier same-distance count are written to
    the next free slot of the query's row, and the slot advances only for a relevant item.
    """
    nq = queries.shape[0]
    nb = database.shape[0]
    values = all_counts.shape[1]
    counts = np.zeros((nq, values), np.int32)
    delta = np.empty((nq, nb + 1), np.int16)  # one spare slot for the last item's write
    earlier = np.empty((nq, nb + 1), np.int32)
    found = np.zeros(nq, np.int64)
    for t0 in range(0, nb, TILE):
        t1 = min(t0 + TILE, nb)
        for i in range(nq):
            own = counts[i]
            slot = found[i]
            for j in range(t0, t1):
                d = _distance(queries, i, database, j)
                seen = own[d]
                delta[i, slot] = d
                earlier[i, slot] = seen
                slot += _shares_label(query_labels, i, database_labels, j)
                own[d] = seen + 1
            found[i] = slot
    for i in range(nq):
        for d in range(values):
            all_counts[i, d] = counts[i, d]
        m = found[i]
        _finish_query(i, all_counts[i], delta[i, :m], earlier[i, :m], ks, relevant_counts, ap, at_k)


class CompiledKernels:
    """Whole-block ranking statistics in compiled loops (see the module docstring).

    The evaluator (:class:`hashcli.metrics.hamming`) hands each block to :meth:`rank_block`
    instead of running its array passes.
    """

    name = "numba"

    def rank_block(
        self,
        queries: np.ndarray,
        database: np.ndarray,
        values: int,
        ks: tuple[int, ...],
        positions: np.ndarray | None = None,
        query_labels: np.ndarray | None = None,
        database_labels: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(all_counts, relevant_counts, ap_index_order, at_k (K, nq)) of a block.

        ``queries``, ``database``: uint8 codes padded to whole words; single-label blocks
        give ``positions`` (the shared relevant items, ascending), multi-label blocks their
        uint64 label words.
        """
        words_q = queries.view(np.uint64)
        words_d = database.view(np.uint64)
        if words_q.shape[1] == 1:
            words_q, words_d = words_q.reshape(-1), words_d.reshape(-1)
        if query_labels is not None and query_labels.shape[1] == 1:
            query_labels = np.ascontiguousarray(query_labels.reshape(-1))
            database_labels = np.ascontiguousarray(database_labels.reshape(-1))
        nq = len(queries)
        all_counts = np.zeros((nq, values), dtype=np.int64)
        relevant_counts = np.zeros((nq, values), dtype=np.int64)
        ap = np.empty(nq)
        at_k = np.zeros((len(ks), nq))
        cutoffs = np.asarray(ks, dtype=np.int64)
        if positions is not None:
            rank_shared(
                words_q,
                words_d,
                np.ascontiguousarray(positions, dtype=np.int64),
                cutoffs,
                all_counts,
                relevant_counts,
                ap,
                at_k,
            )
        else:
            rank_multi(
                words_q,
                words_d,
                query_labels,
                database_labels,
                cutoffs,
                all_counts,
                relevant_counts,
                ap,
                at_k,
            )
        return all_counts, relevant_counts, ap, at_k
