"""Blockwise Hamming ranking statistics: per-distance histograms and index-order AP.

For every query this computes, without sorting the database and without ever holding an
(n_queries x n_database) matrix:

* ``all_counts[d]``: database items at Hamming distance d (d = 0..bits);
* ``relevant_counts[d]``: relevant items at distance d;
* the AP of the deterministic "index order" ranking (ties broken by database index), which
  needs, for each relevant item p at distance δ, the number E of items at distance δ with a
  smaller index: its rank is then ``N_δ + E + 1``.

How (one step = a block of queries x a chunk of database rows, about ``pairs_per_step`` pairs):

1. distances of the step by XOR-popcount (FAISS's C++ loop, or numpy);
2. the relevant items split the chunk's row into segments (segment s holds the items after the
   s-th relevant item, up to and including the next); one integer histogram over the key
   ``segment * (bits + 1) + distance`` (one add pass, plus an offset per query row when one
   call covers the block) counts every (segment, distance) cell;
3. a running sum over the segments gives for each relevant item the number of same-distance
   items before it in the chunk; adding the counts of earlier chunks gives E.

Step 3 costs ``(bits + 1) * m`` per row, which is small while relevant items are a small share of
the chunk; when they are not (few classes, multi-label data), a stable counting sort of the
step's distances gives E instead, at a cost proportional to the chunk. Query blocks run in
threads: the C loops (neither uses OpenMP) and numpy's passes release the GIL, and two threads
run about 1.65 times as fast as one on two idle cores (the rest is shared cache and memory
traffic). Tools that hook allocations (tracemalloc) take the GIL at every numpy allocation and
undo much of that.

Single-label queries are grouped by class, so that a block shares one set of relevant items.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hashcli.metrics.kernels import HammingKernels, NumpyKernels, pad_to_words

# Pairs per step: a step costs about 20 numpy calls of fixed overhead, so steps must be large
# for that to vanish beside the C work; 1 Mi pairs (4 MiB of int32 distances, in L3) measured
# faster than L2-sized steps of 256 Ki pairs, with one thread (by 15%) and with two (by 40%).
DEFAULT_PAIRS_PER_STEP = 1 << 20
MAX_BLOCK_QUERIES = 64
# Below this row width, one histogram call per step (after an offset pass) beats one per row.
_ROW_CALLS_FROM_WIDTH = 16384
# Use the sort path for E when the segment table would cost more than this many cells per pair.
_SORT_WHEN_TABLE_PER_PAIR = 3.0


@dataclass(frozen=True)
class RankBlock:
    """Ranking statistics of a block of queries.

    Attributes:
        queries: int64 (nq,) indices of the queries (into the query array).
        all_counts: int64 (nq, bits + 1) items per Hamming distance.
        relevant_counts: int64 (nq, bits + 1) relevant items per Hamming distance.
        ap_index_order: float64 (nq,) AP with ties broken by database index; NaN without a
            relevant item.
        hashnet_index_order: {k: float64 (nq,)} the field's AP@k (HashNet's convention, see
            :func:`hashcli.metrics.ranking.hashnet_ap_at_k`) with ties broken by database
            index: 0 without a relevant item in the first k places.
    """

    queries: np.ndarray
    all_counts: np.ndarray
    relevant_counts: np.ndarray
    ap_index_order: np.ndarray
    hashnet_index_order: dict[int, np.ndarray] = field(default_factory=dict)


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Engine:
    """Shared read-only inputs plus per-thread scratch space."""

    def __init__(
        self,
        query_codes: np.ndarray,
        database_codes: np.ndarray,
        bits: int,
        query_labels: np.ndarray,
        database_labels: np.ndarray,
        kernels: HammingKernels | None,
        pairs_per_step: int,
        hashnet_ks: tuple[int, ...] = (),
    ) -> None:
        self.hashnet_ks = hashnet_ks
        self.kernels = kernels if kernels is not None else NumpyKernels()
        self.queries = pad_to_words(query_codes)
        self.database = pad_to_words(database_codes)
        self.n_database = len(database_codes)
        self.n_values = bits + 1  # distances 0..bits
        self.pairs_per_step = pairs_per_step
        self.multi_label = query_labels.ndim == 2
        if self.multi_label:
            # Labels as bit sets in 64-bit words: "any shared label" is an AND per word. (A
            # float matrix product says the same but pays BLAS thread start-up at every step.)
            self.query_labels = _label_words(query_labels)
            self.database_labels = _label_words(database_labels)
        else:
            self.query_labels = query_labels
            self.database_labels = database_labels
        self._local = threading.local()

    def scratch(self, size: int) -> np.ndarray:
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._local.buf = np.empty(size, dtype=np.int32)
        return buf[:size]

    def _shared_label(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """bool (nq, stop - start): query and database item share at least one label."""
        query = self.query_labels[rows]
        database = self.database_labels[start:stop]
        mask = (query[:, None, 0] & database[None, :, 0]) != 0
        for word in range(1, query.shape[1]):
            mask |= (query[:, None, word] & database[None, :, word]) != 0
        return mask

    # ---------------------------------------------------------------------------------------
    def run_block(self, rows: np.ndarray, positions: np.ndarray | None) -> RankBlock:
        """Statistics for query indices ``rows``.

        ``positions``: for a single-label block, the sorted database indices of the block's
        class (shared by all rows); None for multi-label blocks.
        """
        nq = len(rows)
        values = self.n_values
        queries = np.ascontiguousarray(self.queries[rows])
        counts = np.zeros((nq, values), dtype=np.int64)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, distance, E)
        step = max(1, self.pairs_per_step // nq)
        start = 0
        while start < self.n_database:
            stop = min(start + step, self.n_database)
            if positions is not None:
                lo, hi = np.searchsorted(positions, [start, stop])
                local = positions[lo:hi] - start
                dist = self.scratch(nq * (stop - start)).reshape(nq, stop - start)
                self.kernels.distances(queries, self.database[start:stop], dist)
                step_result = self._shared_step(dist, local)
                if step_result is not None:
                    delta, within, chunk_counts = step_result
                    if len(local):
                        earlier = np.take_along_axis(counts, delta, axis=1) + within
                        row_of = np.repeat(np.arange(nq), len(local))
                        found.append((row_of, delta.reshape(-1), earlier.reshape(-1)))
                    counts += chunk_counts
                    start = stop
                    continue
                # dense relevance: E by sorting, on the same distances
                row_of = np.repeat(np.arange(nq), len(local))
                col_of = np.tile(local, nq)
                delta = dist[row_of, col_of].astype(np.int64)
                within, chunk_counts = self._by_sorting(dist, row_of, col_of, delta)
            else:
                mask = self._shared_label(rows, start, stop)
                row_of, col_of = np.nonzero(mask)
                dist = self.scratch(nq * (stop - start)).reshape(nq, stop - start)
                self.kernels.distances(queries, self.database[start:stop], dist)
                delta = dist[row_of, col_of].astype(np.int64)
                # within[i]: items at relevant item i's distance before it, in this chunk
                within, chunk_counts = self._earlier_same_distance(
                    dist, row_of, col_of, delta, mask.sum(axis=1)
                )
            if len(delta):
                found.append((row_of, delta, counts[row_of, delta] + within))
            counts += chunk_counts
            start = stop
        return self._finish(rows, counts, found)

    def _shared_step(
        self, dist: np.ndarray, local: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """One step of a single-label block, whose rows share the relevant columns ``local``.

        The table is segment-major: row q's cell (segment s, distance d) is
        ``q * size + s * values + d``, so the key is the distance plus a term per column (and
        one per row when a single histogram call covers the block); no pass multiplies the
        distances. A running sum over the segments then gives E for every relevant item.

        Returns int64 (nq, m) distances of the relevant items, int64 (nq, m) E within the
        chunk, int64 (nq, values) chunk histogram; None when the sort path is cheaper (then
        ``dist`` is left as it was). Overwrites ``dist`` otherwise.
        """
        nq, width = dist.shape
        values = self.n_values
        m = len(local)
        size = (m + 1) * values
        if size > _SORT_WHEN_TABLE_PER_PAIR * width:
            return None
        delta = dist[:, local].astype(np.int64)
        per_call = width >= _ROW_CALLS_FROM_WIDTH
        if m:
            # values * (relevant items strictly before the column): segment-major cells
            bounds = np.empty(m + 2, dtype=np.int64)
            bounds[0], bounds[-1] = 0, width
            np.add(local, 1, out=bounds[1:-1])
            term = np.repeat(np.arange(0, size, values, dtype=np.int32), np.diff(bounds))
            if not per_call:
                term = term + (np.arange(nq, dtype=np.int32) * size)[:, None]
            np.add(dist, term, out=dist)
        elif not per_call:
            np.add(dist, (np.arange(nq, dtype=np.int32) * size)[:, None], out=dist)
        table = np.empty((nq, m + 1, values), dtype=np.int32)
        histogram = self.kernels.histogram
        if per_call:
            # long rows: a call per row into its part of the table saves the row-offset pass
            flat = table.reshape(nq, size)
            for row in range(nq):
                histogram(dist[row], size, flat[row])
        else:
            # short rows: one histogram call over the block, rows told apart by an offset
            histogram(dist.reshape(-1), nq * size, table.reshape(-1))
        if not m:
            return delta, delta, table[:, 0, :].astype(np.int64)
        # running[q, s, d]: items of row q at distance d in segments 0..s (a step counts
        # < 2**31 pairs); for relevant item k (segment k), minus the item itself
        running = np.cumsum(table, axis=1, out=table)
        within = running[np.arange(nq)[:, None], np.arange(m)[None, :], delta] - 1
        return delta, within.astype(np.int64), running[:, -1, :].astype(np.int64)

    def _earlier_same_distance(
        self,
        dist: np.ndarray,
        row_of: np.ndarray,
        col_of: np.ndarray,
        delta: np.ndarray,
        per_row: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(E within the chunk for each relevant item, int64 (nq, values) chunk histogram),
        for rows with their own relevant items (multi-label). Overwrites ``dist``.
        """
        nq, width = dist.shape
        values = self.n_values
        # Like _shared_step, with a segment term per pair, and every row's table as large as
        # the one of the row with the most relevant items.
        segments = int(per_row.max()) + 1 if nq else 1
        size = segments * values
        if size * nq > _SORT_WHEN_TABLE_PER_PAIR * nq * width:
            return self._by_sorting(dist, row_of, col_of, delta)

        per_call = width >= _ROW_CALLS_FROM_WIDTH
        if len(delta):
            # values * (the row's relevant items strictly before the column)
            term = np.zeros(dist.shape, dtype=np.int32)
            term[row_of, col_of] = values
            np.cumsum(term, axis=1, dtype=np.int32, out=term)
            term[row_of, col_of] -= values
            if not per_call:
                term = term + (np.arange(nq, dtype=np.int32) * size)[:, None]
            np.add(dist, term, out=dist)
        elif not per_call:
            np.add(dist, (np.arange(nq, dtype=np.int32) * size)[:, None], out=dist)
        table = np.empty((nq, segments, values), dtype=np.int32)
        if per_call:
            # long rows: a call per row into its part of the table saves the row-offset pass
            for row in range(nq):
                self.kernels.histogram(dist[row], size, table[row].reshape(-1))
        else:
            # short rows: one histogram call over the block, rows told apart by an offset
            self.kernels.histogram(dist.reshape(-1), nq * size, table.reshape(-1))

        # running[q, s, d]: items of row q at distance d in segments 0..s (a step counts
        # < 2**31 pairs); the last segment gives the chunk histogram
        running = np.cumsum(table, axis=1, out=table)
        chunk_counts = running[:, -1, :].astype(np.int64)
        if not len(delta):
            return np.zeros(0, dtype=np.int64), chunk_counts
        first = np.cumsum(per_row) - per_row
        k = np.arange(len(row_of)) - first[row_of]  # index of the item among its row's relevant
        # items at this distance in segments 0..k, minus the item itself
        within = running[row_of, k, delta].astype(np.int64) - 1
        return within, chunk_counts

    def _by_sorting(
        self, dist: np.ndarray, row_of: np.ndarray, col_of: np.ndarray, delta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """E by a stable sort of each row's distances (dense relevance)."""
        nq, width = dist.shape
        values = self.n_values
        small = np.uint16 if values <= np.iinfo(np.uint16).max else np.int32
        order = np.argsort(dist.astype(small), axis=1, kind="stable")
        place = np.empty_like(order)
        np.put_along_axis(place, order, np.arange(width)[None, :], axis=1)
        np.add(dist, (np.arange(nq, dtype=np.int32) * values)[:, None], out=dist)
        table = np.empty(nq * values, dtype=np.int32)
        self.kernels.histogram(dist.reshape(-1), nq * values, table)
        chunk_counts = table.reshape(nq, values).astype(np.int64)
        closer = np.cumsum(chunk_counts, axis=1) - chunk_counts
        # stable position of the item within its row, minus the items at smaller distances
        within = place[row_of, col_of] - closer[row_of, delta]
        return within.astype(np.int64), chunk_counts

    def _finish(
        self,
        rows: np.ndarray,
        counts: np.ndarray,
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> RankBlock:
        nq = len(rows)
        values = self.n_values
        relevant_counts = np.zeros((nq, values), dtype=np.int64)
        ap = np.full(nq, np.nan)
        at_k = {k: np.zeros(nq) for k in self.hashnet_ks}
        if found:
            row_of = np.concatenate([f[0] for f in found])
            delta = np.concatenate([f[1] for f in found])
            earlier = np.concatenate([f[2] for f in found])
            key = row_of * values + delta
            relevant_counts = np.bincount(key, minlength=nq * values).reshape(nq, values)
            closer = np.cumsum(counts, axis=1) - counts
            rank = closer[row_of, delta] + earlier + 1
            # Stable sort by (row, distance): items were collected chunk by chunk and column by
            # column, so equal keys stay in database-index order, which is the tie-break.
            small = np.uint16 if nq * values <= np.iinfo(np.uint16).max else np.int64
            order = np.argsort(key.astype(small), kind="stable")
            row_sorted = row_of[order]
            per_row = np.bincount(row_sorted, minlength=nq)
            first = np.cumsum(per_row) - per_row
            hits = np.arange(1, len(order) + 1) - first[row_sorted]
            sums = np.bincount(row_sorted, weights=hits / rank[order], minlength=nq)
            np.divide(sums, per_row, out=ap, where=per_row > 0)
            rank_sorted = rank[order]
            for k, values_at_k in at_k.items():
                # HashNet's AP@k: the mean precision over the relevant items in the first k
                # places (hits counts exactly those before each of them), 0 with none there
                inside = rank_sorted <= k
                kept = np.bincount(row_sorted, weights=inside, minlength=nq)
                sums_k = np.bincount(
                    row_sorted, weights=np.where(inside, hits / rank_sorted, 0.0), minlength=nq
                )
                np.divide(sums_k, kept, out=values_at_k, where=kept > 0)
        return RankBlock(np.asarray(rows, dtype=np.int64), counts, relevant_counts, ap, at_k)


def _label_words(labels: np.ndarray) -> np.ndarray:
    """bool (N, C) multi-hot -> uint64 (N, ceil(C / 64)), label c at bit c % 64 of word c // 64."""
    packed = np.packbits(labels.astype(np.bool_), axis=1, bitorder="little")
    width = max(8, -(-packed.shape[1] // 8) * 8)
    words = np.zeros((len(labels), width), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    return words.view("<u8")


def _single_label_blocks(
    query_labels: np.ndarray, database_labels: np.ndarray, max_rows: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    def groups(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        order = np.argsort(labels, kind="stable")  # stable: indices stay ascending per class
        ordered = labels[order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
            if hi > lo:
                yield int(ordered[lo]), order[lo:hi]

    members = dict(groups(database_labels))
    empty = np.zeros(0, dtype=np.int64)
    blocks = []
    for label, queries in groups(query_labels):
        positions = members.get(label, empty)
        for b in range(0, len(queries), max_rows):
            blocks.append((queries[b : b + max_rows], positions))
    # Largest first, so that no thread is left alone with a big block at the end.
    blocks.sort(key=lambda blk: -len(blk[0]) * (1 + len(blk[1])))
    return blocks


def iter_rank_blocks(
    query_codes: np.ndarray,
    database_codes: np.ndarray,
    bits: int,
    query_labels: np.ndarray,
    database_labels: np.ndarray,
    *,
    threads: int | None = None,
    kernels: HammingKernels | None = None,
    pairs_per_step: int = DEFAULT_PAIRS_PER_STEP,
    progress: Callable[[int, int], None] | None = None,
    hashnet_ks: tuple[int, ...] = (),
) -> Iterator[RankBlock]:
    """Ranking statistics for every query, block by block (blocks come in no fixed order).

    Args:
        query_codes: uint8 (n_queries, ceil(bits / 8)) packed codes.
        database_codes: uint8 (n_database, ceil(bits / 8)) packed codes.
        bits: code length.
        query_labels: int64 (n_queries,) class indices, or bool (n_queries, C) multi-hot.
        database_labels: int64 (n_database,), or bool (n_database, C), like ``query_labels``.
            Single-label relevance: same class; multi-label: at least one shared label.
        threads: worker threads (default: the usable cores).
        kernels: the distance and histogram loops (:mod:`hashcli.metrics.kernels`; default
            the numpy reference, FAISS's are about ten times faster).
        pairs_per_step: query x database pairs handled per step (memory and cache trade-off).
        progress: called with (queries done, total queries) after each block.
        hashnet_ks: cut-offs of the field's AP@k in index order (``hashnet_index_order``).

    Yields:
        :class:`RankBlock` objects that together cover every query once.
    """
    n_queries = len(query_codes)
    if len(query_labels) != n_queries or len(database_labels) != len(database_codes):
        raise ValueError("each code needs one label")
    if (query_labels.ndim == 2) != (database_labels.ndim == 2):
        raise ValueError("queries and database must both be single-label or both multi-label")
    if query_labels.ndim == 2 and query_labels.shape[1] != database_labels.shape[1]:
        raise ValueError(
            f"multi-hot labels differ in width: {query_labels.shape[1]} classes for the "
            f"queries, {database_labels.shape[1]} for the database"
        )
    engine = _Engine(
        query_codes,
        database_codes,
        bits,
        query_labels,
        database_labels,
        kernels,
        pairs_per_step,
        tuple(hashnet_ks),
    )
    if engine.multi_label:
        blocks = [
            (np.arange(s, min(s + MAX_BLOCK_QUERIES, n_queries)), None)
            for s in range(0, n_queries, MAX_BLOCK_QUERIES)
        ]
    else:
        blocks = _single_label_blocks(query_labels, database_labels, MAX_BLOCK_QUERIES)
    workers = min(threads or default_threads(), max(1, len(blocks)))
    done = 0
    if workers == 1:
        results: Iterator[RankBlock] = (engine.run_block(r, p) for r, p in blocks)
        for block in results:
            done += len(block.queries)
            if progress:
                progress(done, n_queries)
            yield block
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hashret-eval") as pool:
        futures = [pool.submit(engine.run_block, r, p) for r, p in blocks]
        try:
            for future in futures:
                block = future.result()
                done += len(block.queries)
                if progress:
                    progress(done, n_queries)
                yield block
        finally:
            for future in futures:
                future.cancel()


def hamming_histograms(
    query_codes: np.ndarray,
    database_codes: np.ndarray,
    bits: int,
    query_labels: np.ndarray,
    database_labels: np.ndarray,
    **options: object,
) -> RankBlock:
    """All queries' statistics in query order (one :class:`RankBlock`; see iter_rank_blocks)."""
    n = len(query_codes)
    values = bits + 1
    all_counts = np.zeros((n, values), dtype=np.int64)
    relevant_counts = np.zeros((n, values), dtype=np.int64)
    ap = np.full(n, np.nan)
    for block in iter_rank_blocks(
        query_codes, database_codes, bits, query_labels, database_labels, **options
    ):
        all_counts[block.queries] = block.all_counts
        relevant_counts[block.queries] = block.relevant_counts
        ap[block.queries] = block.ap_index_order
    return RankBlock(np.arange(n, dtype=np.int64), all_counts, relevant_counts, ap)
