"""What ``hashret eval`` (and training's validation) calls: the exact evaluator of
:mod:`hashcli.metrics`, handed its fastest kernels, over code arrays, code files or a run.

The metrics package takes its inner loops as an argument; this is where they are chosen: the
compiled ones (numba) when importable, else FAISS's (from the index package, the one FAISS
importer), else numpy's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hashcli.errors import HashretError

if TYPE_CHECKING:
    from hashcli.codes.store import CodeFile
    from hashcli.metrics import RetrievalReport
    from hashcli.metrics.kernels import BlockKernels, HammingKernels

#: ``backend`` values: the fastest importable kernels ("auto"), or one of them by name.
BACKENDS = ("auto", "numba", "faiss", "numpy")


def evaluation_kernels(backend: str = "auto") -> HammingKernels | BlockKernels:
    """The evaluator's inner loops: ``numba`` (whole blocks in one compiled pass, about the
    time of a FAISS k=1 search), ``faiss`` (its C++ loops under numpy's array passes, 1.7 to
    10 times that), ``numpy`` (the reference), or ``auto`` (the first of these that imports)."""
    from hashcli.metrics.kernels import NumpyKernels

    if backend not in BACKENDS:
        raise HashretError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "numpy":
        return NumpyKernels()
    if backend in ("auto", "numba"):
        try:
            from hashcli.metrics.compiled import CompiledKernels

            return CompiledKernels()
        # RuntimeError: numba finds no writable folder for its compiled-code cache
        except (ImportError, RuntimeError):
            if backend == "numba":
                raise
    try:
        from hashcli.index.kernels import FaissKernels

        return FaissKernels()
    except ImportError:
        if backend == "faiss":
            raise
        return NumpyKernels()


def evaluate_codes(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    bits: int,
    **options: Any,
) -> RetrievalReport:
    """:func:`hashcli.metrics.evaluate` with the fastest kernels (``options``: its keywords)."""
    from hashcli.metrics import evaluate

    return evaluate(
        query_codes,
        query_labels,
        database_codes,
        database_labels,
        bits,
        kernels=evaluation_kernels(),
        **options,
    )


#: The field's mAP@k cut-off for a run's dataset when ``--top-k`` is not given: 5,000 for the
#: NUS-WIDE / MS-COCO-style list datasets (HashNet's and DeepHash-pytorch's topK), the whole
#: database ("all") for CIFAR-10 (their CIFAR-10 configs score mAP over all 54,000 / 59,000 /
#: 50,000 items).
DEFAULT_TOP_K: dict[str, int | str] = {
    "lists": 5000,
    "cifar10": "all",
    "cifar10-1": "all",
    "cifar10-2": "all",
}

#: The figures of the unseen-class protocol (Sablayrolles et al., "How should we evaluate
#: supervised hashing?", ICASSP 2017), by their summary.json keys.
UNSEEN_PROTOCOL = ("seen@seen", "unseen@unseen", "unseen@all")


def map_figures(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    bits: int,
) -> dict[str, Any]:
    """Tie-aware mAP with its bounds, index-order mAP and the two sizes: what summary.json
    keeps of an evaluation (its "test" object and each unseen-class figure)."""
    report = evaluate_codes(query_codes, query_labels, database_codes, database_labels, bits)
    return {
        "map": report.map,
        "map_index_order": report.map_index_order,
        "map_pessimistic": report.map_pessimistic,
        "map_optimistic": report.map_optimistic,
        "n_queries": report.n_queries,
        "n_database": report.n_database,
    }


def unseen_class_figures(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    bits: int,
    unseen: Sequence[int],
) -> dict[str, Any]:
    """The unseen-class protocol's three figures, each tie-aware with its bounds.

    ``seen@seen``: queries of the seen classes against the database items of the seen classes
    (the standard figure, on what the model trained on); ``unseen@unseen``: queries and
    database both of the classes left out of training; ``unseen@all``: unseen queries against
    the whole database (what a user who indexes new classes beside old ones gets). Single-label
    data; ``unseen`` lists the left-out classes. Returns the keys of summary.json and of
    ``hashret eval --json``: ``"unseen_classes"`` (sorted) and each of :data:`UNSEEN_PROTOCOL`
    with :func:`map_figures`.
    """
    query_labels, database_labels = np.asarray(query_labels), np.asarray(database_labels)
    if query_labels.ndim != 1:
        raise HashretError("the unseen-class protocol needs single-label data")
    unseen_set = np.asarray(sorted(set(int(c) for c in unseen)), dtype=np.int64)
    query_unseen = np.isin(query_labels, unseen_set)
    database_unseen = np.isin(database_labels, unseen_set)
    everything = np.ones(len(database_labels), dtype=bool)
    cases = {
        "seen@seen": (~query_unseen, ~database_unseen),
        "unseen@unseen": (query_unseen, database_unseen),
        "unseen@all": (query_unseen, everything),
    }
    out: dict[str, Any] = {"unseen_classes": unseen_set.tolist()}
    for key, (q, d) in cases.items():
        if not q.any() or not d.any():
            raise HashretError(
                f"{key}: no {'query' if not q.any() else 'database item'} of those classes"
            )
        out[key] = map_figures(
            query_codes[q], query_labels[q], database_codes[d], database_labels[d], bits
        )
    return out


def evaluate_files(
    queries: CodeFile | str | os.PathLike[str],
    database: CodeFile | str | os.PathLike[str],
    *,
    top_k: Sequence[int] = (),
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    code_stats: bool = True,
    names: tuple[str, str] | None = None,
) -> RetrievalReport:
    """:func:`hashcli.metrics.evaluate_code_files` with the fastest kernels; by default with the
    statistics of both files' codes (``report.code_stats``, ``report.query_code_stats``)."""
    from hashcli.metrics import evaluate_code_files

    return evaluate_code_files(
        queries,
        database,
        top_k=top_k,
        threads=threads,
        kernels=evaluation_kernels(),
        progress=progress,
        code_stats=code_stats,
        names=names,
    )


@dataclass
class Evaluation:
    """What :func:`evaluate_run` scored: ``queries`` against ``database``."""

    queries: Path
    database: Path
    report: RetrievalReport
    #: A run trained with unseen classes: :func:`unseen_class_figures` of its code files.
    unseen: dict[str, Any] | None = None


def evaluate_run(
    queries: str | os.PathLike[str] | None = None,
    database: str | os.PathLike[str] | None = None,
    *,
    run: str | Path | None = None,
    workdir: str | Path | None = None,
    top_k: Sequence[int] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Score query codes against database codes: two code files, or (both None) the test
    split against the database of ``run`` (None: the current run of ``workdir``). The report
    carries the statistics of the database and the query codes (``code_stats``,
    ``query_code_stats``); a run trained with unseen classes also gets the protocol's figures
    (``unseen``), as its summary.json has them."""
    from hashcli.workflows.runs import DATABASE_CODES, QUERY_CODES, open_run

    if (queries is None) != (database is None):
        raise HashretError("give both the query and the database code files, or neither")
    if queries is not None:
        if run is not None:
            raise HashretError("a run cannot be combined with query and database files")
        report = evaluate_files(queries, database, top_k=top_k, progress=progress)
        return Evaluation(Path(queries), Path(database), report)
    from hashcli.codes.store import read_codes

    # Each code file is replaced whole (atomically) by its writers, so reading them needs no
    # lock: a long evaluation never holds up `hashret index add`. Read once, used thrice.
    run_dir = open_run(run, workdir)
    queries, database = run_dir.file(QUERY_CODES), run_dir.file(DATABASE_CODES)
    q, d = read_codes(queries), read_codes(database)
    config = run_dir.config()
    default_k = DEFAULT_TOP_K.get(config.get("dataset", ""))
    if not top_k and default_k is not None:
        top_k = [len(d.codes) if default_k == "all" else int(default_k)]
    names = (str(queries), str(database))
    report = evaluate_files(q, d, top_k=top_k, progress=progress, names=names)
    unseen = config.get("unseen_classes")
    figures = (
        unseen_class_figures(q.codes, q.labels, d.codes, d.labels, q.bits, unseen)
        if unseen
        else None
    )
    return Evaluation(Path(queries), Path(database), report, figures)
