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
   ``(row * (bits + 1) + distance) * segments + segment`` (a multiply and two add passes)
   counts every (row, distance, segment) cell, segments innermost;
3. one running sum over that flat table then holds, at each relevant item's own cell, the
   number of same-distance items up to it in the chunk; adding the counts of earlier chunks
   gives E.

The table has ``(bits + 1) * (m + 1)`` cells per row for m relevant items in the chunk, so it
costs ``(bits + 1) * relevant share`` cells per pair: 0.065 with 1,000 classes, 0.65 with 100
(the running sum at about 0.5 ns a cell then adds a fifth to the step). When that passes
``_SORT_WHEN_TABLE_PER_PAIR`` (a few classes), a stable counting sort of the step's distances
gives E instead, at a cost proportional to the chunk. The per-item work at the end of a
single-label block stays in (rows x relevant items) arrays: one stable sort of each row's
relevant distances ranks them, with no per-pair sort. Query blocks run in threads: the C loops
(neither uses OpenMP) and numpy's passes release the GIL; two threads run about 1.6 times as
fast as one on two idle cores (each thread's CPU time grows by about a tenth from shared cache
and memory traffic, and they wait for each other's Python-level work between passes for about
another tenth). Tools that hook allocations (tracemalloc) take the GIL at every numpy
allocation and undo much of that.

Single-label queries are grouped by class, so that a block shares one set of relevant items.

Kernels with a ``rank_block`` method (:mod:`hashcli.metrics.compiled`, numba) take each block
whole instead: the same statistics in one compiled pass, with no table and no step arrays;
everything above is then the portable path, used without numba.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hashcli.metrics.kernels import BlockKernels, HammingKernels, NumpyKernels, pad_to_words
from hashcli.runtime import usable_cores

# Pairs per step: a step costs about 20 numpy calls of fixed overhead, so steps must be large
# for that to vanish beside the C work; 1 Mi pairs (4 MiB of int32 distances, in L3) measured
# faster than L2-sized steps of 256 Ki pairs, with one thread (by 15%) and with two (by 40%).
DEFAULT_PAIRS_PER_STEP = 1 << 20
MAX_BLOCK_QUERIES = 64
# A single-label block holds about this many (query, relevant item) pairs at most, so that its
# per-item arrays stay small (fewer rows for classes with many items: no cost, since a step
# holds the same number of pairs; large fresh arrays cost page faults every block).
MAX_BLOCK_RELEVANT = 1 << 20
# The same for compiled kernels (:mod:`hashcli.metrics.compiled`), whose per-item arrays take 6
# bytes a pair: 48 MiB a thread at most.
MAX_BLOCK_RELEVANT_COMPILED = 1 << 23
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


class _Engine:
    """Shared read-only inputs plus per-thread scratch space."""

    def __init__(
        self,
        query_codes: np.ndarray,
        database_codes: np.ndarray,
        bits: int,
        query_labels: np.ndarray,
        database_labels: np.ndarray,
        kernels: HammingKernels | BlockKernels | None,
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

    def scratch(self, size: int, name: str = "distances") -> np.ndarray:
        """A reused int32 buffer of this thread (fresh arrays of megabytes every step cost page
        faults, which the threads of one process take in turn)."""
        buf = getattr(self._local, name, None)
        if buf is None or len(buf) < size:
            buf = np.empty(size, dtype=np.int32)
            setattr(self._local, name, buf)
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
        rank_block = getattr(self.kernels, "rank_block", None)
        if rank_block is not None:  # compiled kernels: the whole block in their own loops
            labels = None if positions is not None else self.query_labels[rows]
            all_counts, relevant_counts, ap, at_k = rank_block(
                queries,
                self.database,
                values,
                self.hashnet_ks,
                positions=positions,
                query_labels=labels,
                database_labels=None if positions is not None else self.database_labels,
            )
            by_k = {k: at_k[c] for c, k in enumerate(self.hashnet_ks)}
            return RankBlock(np.asarray(rows, np.int64), all_counts, relevant_counts, ap, by_k)
        counts = np.zeros((nq, values), dtype=np.int64)
        # single-label: (distance, E) as (nq, m) arrays per step, each row's relevant items in
        # database order; multi-label: (row, distance, E) flat, in (row, column) order per step
        shared: list[tuple[np.ndarray, np.ndarray]] = []
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        step = max(1, self.pairs_per_step // nq)
        start = 0
        while start < self.n_database:
            stop = min(start + step, self.n_database)
            dist = self.scratch(nq * (stop - start)).reshape(nq, stop - start)
            self.kernels.distances(queries, self.database[start:stop], dist)
            if positions is not None:
                lo, hi = np.searchsorted(positions, [start, stop])
                local = positions[lo:hi] - start
                step_result = self._shared_step(dist, local)
                if step_result is None:  # very dense relevance: E by sorting the distances
                    columns = np.zeros(stop - start, dtype=bool)
                    columns[local] = True
                    _, delta, within, chunk_counts = self._by_sorting(dist, columns)
                    # every row has the same number of relevant items; each row's are in
                    # (distance, database) order, which _finish_shared's stable sort keeps
                    delta, within = delta.reshape(nq, -1), within.reshape(nq, -1)
                    runs = np.arange(0, nq * values, values)[:, None] + delta
                else:
                    delta, runs, within, chunk_counts = step_result
                if len(local):
                    shared.append((delta, counts.reshape(-1)[runs] + within))
            else:
                mask = self._shared_label(rows, start, stop)
                # within[i]: items at relevant item i's distance before it, in this chunk
                row_of, delta, within, chunk_counts = self._earlier_same_distance(dist, mask)
                if len(delta):
                    found.append((row_of, delta, counts[row_of, delta] + within))
            counts += chunk_counts
            start = stop
        if positions is not None:
            return self._finish_shared(rows, counts, shared)
        return self._finish(rows, counts, found)

    def _shared_step(
        self, dist: np.ndarray, local: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """One step of a single-label block, whose rows share the relevant columns ``local``.

        Returns int64 (nq, m) distances of the relevant items, int64 (nq, m) their (row,
        distance) runs ``row * values + distance``, int64 (nq, m) E within the chunk, int64
        (nq, values) chunk histogram; None when the sort path is cheaper (then ``dist`` is left
        as it was). Overwrites ``dist`` otherwise.
        """
        nq, width = dist.shape
        m = len(local)
        segments = m + 1
        if segments * self.n_values > _SORT_WHEN_TABLE_PER_PAIR * width:
            return None
        delta = dist[:, local].astype(np.int64)
        # the segment of each column: the relevant items strictly before it
        bounds = np.empty(m + 2, dtype=np.int64)
        bounds[0], bounds[-1] = 0, width
        np.add(local, 1, out=bounds[1:-1])
        term = np.repeat(np.arange(segments, dtype=np.int32), np.diff(bounds))
        running = self._segment_table(dist, term, segments)
        # relevant item k is the last item of segment k
        runs = np.arange(0, nq * self.n_values, self.n_values)[:, None] + delta
        within, chunk_counts = self._table_result(running, segments, runs, np.arange(m))
        return delta, runs, within, chunk_counts

    def _segment_table(self, dist: np.ndarray, term: np.ndarray, segments: int) -> np.ndarray:
        """Running counts over segments: flat int32 (nq * values * segments) table whose cell
        ``(q * values + d) * segments + s`` holds row q's items at distance d in segments 0..s
        plus everything in earlier (row, distance) runs. ``term``: each column's (or each
        pair's) segment. Overwrites ``dist``.

        The table is distance-major, segments innermost, so that one running sum over the
        flat array is the running count over the segments of every (row, distance) run: the key
        is ``distance * segments + segment`` (one multiply and one add pass over the step; a row
        offset as well when one histogram call covers the block). np.cumsum along an inner
        axis of a segment-major table ran at about 3 ns per cell (numpy accumulates non-last
        axes element by element), the flat running sum at about 0.5 ns, which made dense
        relevance (1% relevant items) cost less than twice the sparse case instead of four times.
        """
        nq, width = dist.shape
        size = self.n_values * segments
        if segments > 1:
            np.multiply(dist, segments, out=dist)
            np.add(dist, term, out=dist)
        # One histogram call for the block, rows told apart by an offset: a call per row saves
        # the offset pass but measured slower (4% with one thread, 7% with two, which wait for
        # each other's Python-level work between the many calls).
        np.add(dist, (np.arange(nq, dtype=np.int32) * size)[:, None], out=dist)
        table = self.scratch(nq * size, "table")
        self.kernels.histogram(dist.reshape(-1), nq * size, table)
        # a step counts < 2**31 pairs, so int32 holds the running sum
        return np.cumsum(table, dtype=np.int32, out=table)

    def _table_result(
        self, running: np.ndarray, segments: int, runs: np.ndarray, segment: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(E within the chunk of each relevant item, int64 (nq, values) chunk histogram) from
        a :meth:`_segment_table`; ``runs``: each relevant item's (row, distance) run
        ``row * values + distance``, ``segment``: its segment (it is the last item there)."""
        ends = running[segments - 1 :: segments].astype(np.int64)  # (row, distance) run ends
        before = np.empty_like(ends)  # the running sum before each run
        before[0] = 0
        before[1:] = ends[:-1]
        chunk_counts = (ends - before).reshape(-1, self.n_values)
        # minus the earlier runs and the item itself
        within = running[runs * segments + segment] - before[runs] - 1
        return within, chunk_counts

    def _earlier_same_distance(
        self, dist: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row, distance, E within the chunk) of each relevant item and the int64 (nq, values)
        chunk histogram, for rows with their own relevant items ``mask`` (multi-label); each
        (row, distance) group in database order. Overwrites ``dist``.
        """
        nq, width = dist.shape
        per_row = mask.sum(axis=1)
        # Like _shared_step, with a segment term per pair, and every row's table as large as
        # the one of the row with the most relevant items.
        segments = int(per_row.max()) + 1 if nq else 1
        if segments * self.n_values > _SORT_WHEN_TABLE_PER_PAIR * width:
            return self._by_sorting(dist, mask)
        row_of, col_of = np.nonzero(mask)
        delta = dist[row_of, col_of].astype(np.int64)
        # the row's relevant items strictly before the column
        term = np.zeros(dist.shape, dtype=np.int32)
        if len(delta):
            term[row_of, col_of] = 1
            np.cumsum(term, axis=1, dtype=np.int32, out=term)
            term[row_of, col_of] -= 1
        running = self._segment_table(dist, term, segments)
        first = np.cumsum(per_row) - per_row
        k = np.arange(len(row_of)) - first[row_of]  # index of the item among its row's relevant
        runs = row_of * self.n_values + delta
        within, chunk_counts = self._table_result(running, segments, runs, k)
        return row_of, delta, within, chunk_counts

    def _by_sorting(
        self, dist: np.ndarray, relevant: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """E by a stable sort of each row's distances (very dense relevance).

        ``relevant``: bool (width,) relevant columns shared by every row, or (nq, width).
        Returns (row, distance, E within the chunk) of the relevant items in (row, distance,
        column) order, which keeps each (row, distance) group in database order, and the
        int64 (nq, values) chunk histogram. Overwrites ``dist``.
        """
        nq, width = dist.shape
        values = self.n_values
        small = np.uint8 if values <= 256 else np.uint16
        order = np.argsort(dist.astype(small), axis=1, kind="stable")
        if relevant.ndim == 1:
            in_order = relevant[order]
            per_row = np.full(nq, np.count_nonzero(relevant))
        else:
            in_order = np.take_along_axis(relevant, order, axis=1)
            per_row = np.count_nonzero(relevant, axis=1)
        # flat positions (np.nonzero of the 2-D mask took twice as long)
        flat = np.flatnonzero(in_order)
        row_of = np.repeat(np.arange(nq), per_row)
        start = row_of * width
        place = flat - start  # the item's position in its sorted row
        delta = dist.reshape(-1)[start + order.reshape(-1)[flat]].astype(np.int64)
        np.add(dist, (np.arange(nq, dtype=np.int32) * values)[:, None], out=dist)
        table = self.scratch(nq * values, "table")
        self.kernels.histogram(dist.reshape(-1), nq * values, table)
        chunk_counts = table.reshape(nq, values).astype(np.int64)
        closer = np.cumsum(chunk_counts, axis=1) - chunk_counts
        # stable position of the item within its row, minus the items at smaller distances
        within = place - closer.reshape(-1)[row_of * values + delta]
        return row_of, delta, within, chunk_counts

    def _finish_shared(
        self,
        rows: np.ndarray,
        counts: np.ndarray,
        shared: list[tuple[np.ndarray, np.ndarray]],
    ) -> RankBlock:
        """:meth:`_finish` for a single-label block: every row has the same number of relevant
        items, so the work stays in (nq, R) arrays, each row in database order."""
        nq = len(rows)
        values = self.n_values
        at_k = {k: np.zeros(nq) for k in self.hashnet_ks}
        if not shared:
            empty = np.zeros((nq, values), dtype=np.int64)
            return RankBlock(np.asarray(rows, np.int64), counts, empty, np.full(nq, np.nan), at_k)
        delta = np.concatenate([d for d, _ in shared], axis=1)
        earlier = np.concatenate([e for _, e in shared], axis=1)
        n_rel = delta.shape[1]
        runs = np.arange(0, nq * values, values)[:, None] + delta
        relevant_counts = np.bincount(runs.reshape(-1), minlength=nq * values).reshape(nq, values)
        closer = np.cumsum(counts, axis=1) - counts
        rank = closer.reshape(-1)[runs] + earlier + 1
        # Stable sort of each row by distance: the row is in database order, which is the
        # tie-break, so the i-th item of the sorted row is the i-th relevant item ranked, and
        # the ranks increase along the row.
        small = np.uint8 if values <= 256 else np.uint16
        order = np.argsort(delta.astype(small), axis=1, kind="stable")
        order += np.arange(0, nq * n_rel, n_rel)[:, None]
        rank = rank.reshape(-1)[order]
        # running sums of hits / rank over the flat array (np.cumsum along axis 1 is slower):
        # row q's AP numerator up to its i-th item is running[q, i] - running[q - 1, -1]
        precision = np.arange(1, n_rel + 1) / rank
        running = np.cumsum(precision.reshape(-1), out=precision.reshape(-1)).reshape(nq, n_rel)
        before = np.zeros(nq)
        before[1:] = running[:-1, -1]
        ap = (running[:, -1] - before) / n_rel
        for k, values_at_k in at_k.items():
            # HashNet's AP@k: the mean precision over the relevant items in the first k places,
            # 0 with none there
            kept = np.count_nonzero(rank <= k, axis=1)
            sums = running[np.arange(nq), np.maximum(kept - 1, 0)] - before
            np.divide(sums, kept, out=values_at_k, where=kept > 0)
        return RankBlock(np.asarray(rows, np.int64), counts, relevant_counts, ap, at_k)

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
            # Stable sort by (row, distance): items were collected chunk by chunk, each chunk's
            # (row, distance) groups in database order, so equal keys stay in database-index
            # order, which is the tie-break.
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
    query_labels: np.ndarray, database_labels: np.ndarray, max_rows: int, max_relevant: int
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
        rows = min(max_rows, max(1, max_relevant // max(1, len(positions))))
        for b in range(0, len(queries), rows):
            blocks.append((queries[b : b + rows], positions))
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
    kernels: HammingKernels | BlockKernels | None = None,
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
    compiled = hasattr(engine.kernels, "rank_block")
    if engine.multi_label:
        # compiled kernels keep a slot of 6 bytes per (query, database item) in a block
        rows = MAX_BLOCK_QUERIES
        if compiled:
            rows = max(1, min(rows, MAX_BLOCK_RELEVANT_COMPILED // max(1, len(database_codes))))
        blocks = [(np.arange(s, min(s + rows, n_queries)), None) for s in range(0, n_queries, rows)]
    else:
        # compiled kernels keep 6 bytes per (query, relevant item) and stream the database
        # once per block: larger blocks (10 classes: 64 rows, not 10) at a bounded cost
        max_relevant = MAX_BLOCK_RELEVANT_COMPILED if compiled else MAX_BLOCK_RELEVANT
        blocks = _single_label_blocks(
            query_labels, database_labels, MAX_BLOCK_QUERIES, max_relevant
        )
    workers = min(threads or usable_cores(), max(1, len(blocks)))
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
