"""Retrieval evaluation of binary codes by Hamming ranking: :func:`evaluate`.

Every query is ranked against the whole database by Hamming distance. Relevance is "same
class" for single-label data and "at least one shared label" for multi-label data. Queries
without any relevant database item are left out of every mean and counted
(``n_queries_without_relevant``).

Conventions (see docs/format.md and the module docstrings of ``ranking`` and ``hamming``):

* ``map``: tie-aware mAP, the expected AP when items at equal distance are ordered uniformly
  at random; ``map_pessimistic`` / ``map_optimistic`` put the relevant items last / first
  within every tie; ``map_index_order`` breaks ties by database index (a deterministic order,
  what a stable sort gives; the order many published numbers implicitly used).
* ``map_at_k``: tie-aware AP over the first k' = min(k, database size) places, normalised by
  min(k', R); ``precision_at_k`` = E[relevant in first k'] / k'; ``recall_at_k`` = the same / R.
  When the cut falls inside a tie group, the expectation over its orders is used.
* ``map_at_k_hashnet`` / ``map_at_k_hashnet_index_order``: the field's mAP@k, as HashNet's and
  DeepHash-pytorch's ``CalcTopMap`` compute it: per query the mean precision over the relevant
  items within the first k places (0 when there are none), averaged over *all* queries (those
  without a relevant item count 0). The first is the exact expectation over tie orders
  (:func:`~hashcli.metrics.ranking.hashnet_ap_at_k`), the second breaks ties by database index
  (a stable sort; the public code's quicksort leaves the order of ties unspecified).
* ``precision_at_radius_2``: mean, over the queries with at least one item within Hamming
  radius 2, of (relevant items within radius 2) / (items within radius 2); queries with none
  are counted in ``n_queries_empty_radius_2`` instead of scoring 0.
* ``pr_curve``: for each radius t = 0..bits, precision as above (queries with at least one item
  within t) and mean recall (relevant within t) / R over all evaluated queries.
* ``per_class``: mean tie-aware AP of the evaluated queries of each class (multi-label: of the
  queries carrying that label).
* ``code_stats`` / ``query_code_stats`` (with ``code_stats=True``): the statistics of the
  database / query codes themselves (:func:`hashcli.metrics.code_stats.code_statistics`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashcli.codes.store import CodeFile, read_codes
from hashcli.errors import HashretError
from hashcli.metrics.code_stats import CodeStats, code_statistics
from hashcli.metrics.hamming import RankBlock, iter_rank_blocks
from hashcli.metrics.kernels import BlockKernels, HammingKernels
from hashcli.metrics.ranking import (
    harmonic_numbers,
    radius_counts,
    ranking_summary,
)

HAMMING_RADIUS = 2
_SUMMARY_CELLS = 1 << 20  # (query, distance) cells summarised per batch


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall of "everything within Hamming radius t", for t = 0..bits.

    ``precision[t]`` is None when no evaluated query has an item within radius t.
    """

    radius: list[int]
    precision: list[float | None]
    recall: list[float]
    queries_with_items: list[int]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the four lists under their field names."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClassAP:
    """Mean tie-aware AP of the evaluated queries of one class."""

    map: float
    n_queries: int


@dataclass(frozen=True)
class RetrievalReport:
    """Everything :func:`evaluate` measures; ``to_dict()`` gives the JSON form.

    Means are over the ``n_queries - n_queries_without_relevant`` evaluated queries.
    ``per_query_ap`` holds each query's tie-aware AP (float64, NaN without a relevant item).
    ``code_stats`` / ``query_code_stats``: statistics of the database / query codes, when
    asked for (None otherwise).
    """

    bits: int
    n_queries: int
    n_database: int
    multi_label: bool
    n_queries_without_relevant: int
    map: float
    map_pessimistic: float
    map_optimistic: float
    map_index_order: float
    precision_at_radius_2: float | None
    n_queries_empty_radius_2: int
    map_at_k: dict[int, float]
    precision_at_k: dict[int, float]
    recall_at_k: dict[int, float]
    pr_curve: PRCurve
    per_class: dict[int, ClassAP]
    per_query_ap: np.ndarray = field(repr=False, compare=False)
    class_names: list[str] | None = None
    code_stats: CodeStats | None = None
    query_code_stats: CodeStats | None = None
    map_at_k_hashnet: dict[int, float] = field(default_factory=dict)
    map_at_k_hashnet_index_order: dict[int, float] = field(default_factory=dict)

    @property
    def n_evaluated(self) -> int:
        """Queries with at least one relevant database item."""
        return self.n_queries - self.n_queries_without_relevant

    def to_dict(self, *, per_class: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``*_at_k`` and the code statistics only when asked for."""
        out: dict[str, Any] = {
            "map": self.map,
            "map_pessimistic": self.map_pessimistic,
            "map_optimistic": self.map_optimistic,
            "map_index_order": self.map_index_order,
            "bits": self.bits,
            "n_queries": self.n_queries,
            "n_database": self.n_database,
            "n_queries_without_relevant": self.n_queries_without_relevant,
            "relevance": "multi-label" if self.multi_label else "single-label",
            "precision_at_radius_2": self.precision_at_radius_2,
            "n_queries_empty_radius_2": self.n_queries_empty_radius_2,
        }
        if self.map_at_k:
            out["map_at_k"] = {str(k): v for k, v in self.map_at_k.items()}
            out["precision_at_k"] = {str(k): v for k, v in self.precision_at_k.items()}
            out["recall_at_k"] = {str(k): v for k, v in self.recall_at_k.items()}
        if self.map_at_k_hashnet:
            out["map_at_k_hashnet"] = {str(k): v for k, v in self.map_at_k_hashnet.items()}
            out["map_at_k_hashnet_index_order"] = {
                str(k): v for k, v in self.map_at_k_hashnet_index_order.items()
            }
        out["pr_curve"] = self.pr_curve.to_dict()
        if self.code_stats is not None:
            out["code_stats"] = self.code_stats.to_dict()
        if self.query_code_stats is not None:
            out["query_code_stats"] = self.query_code_stats.to_dict()
        if per_class:
            out["per_class"] = {}
            for label, c in sorted(self.per_class.items()):
                entry: dict[str, Any] = {"map": c.map, "n_queries": c.n_queries}
                name = self.class_name(label)
                if name is not None:
                    entry["name"] = name
                out["per_class"][str(label)] = entry
        return out

    def class_name(self, label: int) -> str | None:
        """The name of class ``label`` when the code file recorded class names."""
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return None


def _check_inputs(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    bits: int,
    names: tuple[str, str],
) -> None:
    nbytes = (bits + 7) // 8
    for codes, labels, name in (
        (query_codes, query_labels, names[0]),
        (database_codes, database_labels, names[1]),
    ):
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != nbytes:
            raise HashretError(
                f"{name}: codes must be uint8 (N, {nbytes}) for {bits} bits, "
                f"got {codes.dtype} {codes.shape}"
            )
        if len(codes) == 0:
            raise HashretError(f"{name} holds no codes; nothing to evaluate")
        if labels is None:
            raise HashretError(f"{name} has no labels; evaluation needs a label for every code")
        if len(labels) != len(codes):
            raise HashretError(f"{name}: {len(labels)} labels for {len(codes)} codes")
    if (query_labels.ndim == 2) != (database_labels.ndim == 2):
        multi, single = names if query_labels.ndim == 2 else names[::-1]
        raise HashretError(
            f"{multi} is multi-label but {single} is single-label; evaluate codes whose labels "
            "are of the same kind"
        )
    if query_labels.ndim == 2 and query_labels.shape[1] != database_labels.shape[1]:
        raise HashretError(
            f"{names[0]} has {query_labels.shape[1]} label columns but {names[1]} has "
            f"{database_labels.shape[1]}"
        )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def evaluate(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    bits: int,
    *,
    top_k: Sequence[int] = (),
    threads: int | None = None,
    kernels: HammingKernels | BlockKernels | None = None,
    progress: Callable[[int, int], None] | None = None,
    names: tuple[str, str] = ("the queries", "the database"),
    code_stats: bool = False,
) -> RetrievalReport:
    """Evaluate Hamming ranking of queries against a database.

    Args:
        query_codes: uint8 (n_queries, ceil(bits / 8)) packed codes (see
            :func:`hashcli.codes.pack_bits`).
        query_labels: int64 (n_queries,) class indices, or bool (n_queries, C) multi-hot.
        database_codes: uint8 (n_database, ceil(bits / 8)).
        database_labels: like ``query_labels``, for the database.
        bits: code length in bits.
        top_k: cut-offs for mAP@k, precision@k and recall@k.
        threads: worker threads (default: every usable core).
        kernels: the distance and histogram loops (:mod:`hashcli.metrics.kernels`; default the
            numpy reference; FAISS's, which the workflows pass, give the same numbers about
            ten times faster).
        progress: called with (queries done, total) as blocks finish.
        names: how error messages call the two inputs (file names, for instance).
        code_stats: also describe the database and the query codes (``code_stats`` and
            ``query_code_stats`` of the report; O((n_queries + n_database) x bits)).

    Returns:
        A :class:`RetrievalReport`.

    Raises:
        HashretError: empty input, missing labels, single- against multi-label data, or no
            query with a relevant database item.
    """
    ks = sorted({int(k) for k in top_k})
    if any(k < 1 for k in ks):
        raise HashretError(f"top-k values must be positive, got {ks}")
    query_codes = np.asarray(query_codes)
    database_codes = np.asarray(database_codes)
    query_labels = None if query_labels is None else np.asarray(query_labels)
    database_labels = None if database_labels is None else np.asarray(database_labels)
    _check_inputs(query_codes, query_labels, database_codes, database_labels, bits, names)
    n_queries, n_database = len(query_codes), len(database_codes)
    multi = query_labels.ndim == 2
    dtype = np.bool_ if multi else np.int64  # multi-hot: any non-zero entry is a label
    query_labels = query_labels.astype(dtype, copy=False)
    database_labels = database_labels.astype(dtype, copy=False)

    harmonic = harmonic_numbers(n_database)
    ap = np.full(n_queries, np.nan)
    ap_pessimistic = np.full(n_queries, np.nan)
    ap_optimistic = np.full(n_queries, np.nan)
    ap_index_order = np.full(n_queries, np.nan)
    at_k = {k: np.full((3, n_queries), np.nan) for k in ks}
    hashnet = {k: np.zeros((2, n_queries)) for k in ks}  # tie-aware, index order
    values = bits + 1
    precision_sum = np.zeros(values)
    recall_sum = np.zeros(values)
    with_items = np.zeros(values, dtype=np.int64)

    def summarise(blocks: list[RankBlock]) -> None:
        q = np.concatenate([b.queries for b in blocks])
        n = np.concatenate([b.all_counts for b in blocks])
        r = np.concatenate([b.relevant_counts for b in blocks])
        summary = ranking_summary(n, r, ks, harmonic)
        ap[q] = summary["ap"]
        ap_pessimistic[q] = summary["ap_pessimistic"]
        ap_optimistic[q] = summary["ap_optimistic"]
        ap_index_order[q] = np.concatenate([b.ap_index_order for b in blocks])
        for k in ks:
            at_k[k][:, q] = summary[f"ap@{k}"], summary[f"precision@{k}"], summary[f"recall@{k}"]
            hashnet[k][0, q] = summary[f"hashnet@{k}"]
            hashnet[k][1, q] = np.concatenate([b.hashnet_index_order[k] for b in blocks])
        total = r.sum(axis=1)
        keep = total > 0
        within, relevant_within = radius_counts(n[keep], r[keep])
        has = within > 0
        precision = np.zeros(within.shape)
        np.divide(relevant_within, within, out=precision, where=has)
        precision_sum[:] += precision.sum(axis=0)
        with_items[:] += has.sum(axis=0)
        recall_sum[:] += (relevant_within / total[keep][:, None]).sum(axis=0)

    # The closed forms run on batches of blocks: one numpy pass over many small blocks costs
    # far less than many passes; the batch size bounds the memory the histograms take.
    pending: list[RankBlock] = []
    pending_rows = 0
    batch_rows = max(256, _SUMMARY_CELLS // values)
    for block in iter_rank_blocks(
        query_codes,
        database_codes,
        bits,
        query_labels,
        database_labels,
        threads=threads,
        kernels=kernels,
        progress=progress,
        hashnet_ks=tuple(ks),
    ):
        pending.append(block)
        pending_rows += len(block.queries)
        if pending_rows >= batch_rows:
            summarise(pending)
            pending, pending_rows = [], 0
    if pending:
        summarise(pending)

    evaluated = ~np.isnan(ap)
    n_evaluated = int(evaluated.sum())
    if n_evaluated == 0:
        raise HashretError(
            f"none of the {n_queries} queries has a relevant item in the database "
            "(no shared class); nothing to average"
        )

    curve_precision: list[float | None] = [
        float(s / c) if c else None for s, c in zip(precision_sum, with_items, strict=True)
    ]
    radius = min(HAMMING_RADIUS, bits)
    per_class = _per_class(ap, query_labels, evaluated)
    return RetrievalReport(
        bits=bits,
        n_queries=n_queries,
        n_database=n_database,
        multi_label=multi,
        n_queries_without_relevant=n_queries - n_evaluated,
        map=_mean(ap[evaluated]),
        map_pessimistic=_mean(ap_pessimistic[evaluated]),
        map_optimistic=_mean(ap_optimistic[evaluated]),
        map_index_order=_mean(ap_index_order[evaluated]),
        precision_at_radius_2=curve_precision[radius],
        n_queries_empty_radius_2=n_evaluated - int(with_items[radius]),
        map_at_k={k: _mean(at_k[k][0][evaluated]) for k in ks},
        precision_at_k={k: _mean(at_k[k][1][evaluated]) for k in ks},
        recall_at_k={k: _mean(at_k[k][2][evaluated]) for k in ks},
        pr_curve=PRCurve(
            radius=list(range(values)),
            precision=curve_precision,
            recall=[float(v) for v in recall_sum / n_evaluated],
            queries_with_items=[int(v) for v in with_items],
        ),
        per_class=per_class,
        per_query_ap=ap,
        code_stats=code_statistics(database_codes, database_labels, bits) if code_stats else None,
        query_code_stats=code_statistics(query_codes, query_labels, bits) if code_stats else None,
        # the field averages over every query, those without a relevant item counting 0
        map_at_k_hashnet={k: float(hashnet[k][0].mean()) for k in ks},
        map_at_k_hashnet_index_order={k: float(hashnet[k][1].mean()) for k in ks},
    )


def _per_class(ap: np.ndarray, labels: np.ndarray, evaluated: np.ndarray) -> dict[int, ClassAP]:
    out: dict[int, ClassAP] = {}
    if labels.ndim == 2:
        for label in range(labels.shape[1]):
            members = labels[:, label] & evaluated
            if members.any():
                out[label] = ClassAP(float(ap[members].mean()), int(members.sum()))
        return out
    classes, inverse, counts = np.unique(labels[evaluated], return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ap[evaluated], minlength=len(classes))
    for label, total, count in zip(classes, sums, counts, strict=True):
        out[int(label)] = ClassAP(float(total / count), int(count))
    return out


def _load(
    source: CodeFile | str | os.PathLike[str], role: str, name: str | None
) -> tuple[CodeFile, str]:
    if isinstance(source, CodeFile):
        return source, name or f"the {role}"
    return read_codes(source), name or str(Path(source))


def evaluate_code_files(
    queries: CodeFile | str | os.PathLike[str],
    database: CodeFile | str | os.PathLike[str],
    *,
    top_k: Sequence[int] = (),
    threads: int | None = None,
    kernels: HammingKernels | BlockKernels | None = None,
    progress: Callable[[int, int], None] | None = None,
    code_stats: bool = False,
    names: tuple[str, str] | None = None,
) -> RetrievalReport:
    """Read two code files (``.h5`` or ``.npz``, or :class:`CodeFile` objects) and evaluate;
    ``names`` calls the two in messages (default: their paths, or "the queries" / "the
    database" for objects).

    Raises:
        HashretError: missing or malformed file, codes of different lengths, a multi-label
            file against a single-label one, an empty file, missing labels.
    """
    query_file, query_name = _load(queries, "queries", names and names[0])
    database_file, database_name = _load(database, "database", names and names[1])
    if query_file.bits != database_file.bits:
        raise HashretError(
            f"{query_name} holds {query_file.bits}-bit codes but {database_name} holds "
            f"{database_file.bits}-bit codes; both must come from the same model"
        )
    report = evaluate(
        query_file.codes,
        query_file.labels,
        database_file.codes,
        database_file.labels,
        query_file.bits,
        top_k=top_k,
        threads=threads,
        kernels=kernels,
        progress=progress,
        names=(query_name, database_name),
        code_stats=code_stats,
    )
    return dataclasses.replace(report, class_names=query_file.class_names)
