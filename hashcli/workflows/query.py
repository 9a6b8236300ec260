"""What ``hashret query`` calls: images in, neighbours out (:func:`query_images`).

The model and the index are loaded and checked against each other, the images encoded in
batches, the index searched (top k and/or radius), paths, labels and class names attached from
the index's code store, all by the retrieval layer that ``hashret serve`` shares
(:class:`hashcli.workflows.retrieval.Retriever`); optionally a contact sheet written.

**FAISS threads**: searches of at most :data:`SINGLE_THREAD_MAX_QUERIES` queries run on one
OpenMP thread. On the shared 2-core development machine one 32-bit query over 6,000 codes took
a median 24 ms with FAISS's default two threads (a descheduled thread makes the other spin at
the barrier) against 0.022 ms on one; over 1,000,000 codes 140 ms against 0.43 ms; 32 queries
over 1,000,000 codes 23 ms against 13 ms.

No typer or rich here; torch, faiss and h5py load inside the functions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hashcli.errors import HashretError
from hashcli.workflows.index import missing_index
from hashcli.workflows.retrieval import (
    SINGLE_THREAD_MAX_QUERIES,
    Neighbour,
    QueryResult,
    Retriever,
    resolve_inputs,
)
from hashcli.workflows.runs import RunDir

__all__ = [
    "DEFAULT_TOP",
    "SINGLE_THREAD_MAX_QUERIES",
    "Neighbour",
    "QueryReport",
    "QueryResult",
    "query_images",
]

#: Results per query when neither ``top`` nor ``radius`` is given.
DEFAULT_TOP = 20

#: Images per encoding batch for queries.
DEFAULT_QUERY_BATCH_SIZE = 64

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# hashret query


@dataclass
class QueryReport:
    """What :func:`query_images` found and how long each step took (seconds)."""

    results: list[QueryResult]
    index: Path
    store: Path
    checkpoint: Path
    index_type: str
    ntotal: int
    bits: int
    top: int | None
    radius: int | None
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    grid: Path | None = None
    notes: list[str] = field(default_factory=list)
    engine: str = "torch"


def query_images(
    images: Sequence[str] = (),
    *,
    list_file: str | Path | None = None,
    run: str | Path | None = None,
    checkpoint: str | Path | None = None,
    index: str | os.PathLike[str] | None = None,
    workdir: str | Path | None = None,
    top: int | None = None,
    radius: int | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
    grid: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    engine: str = "auto",
) -> QueryReport:
    """Search an index with images; results with database paths, labels and class names.

    Images: files, folders, glob patterns and/or ``list_file``
    (:func:`hashcli.data.inputs.expand_image_inputs`). Model: ``checkpoint``, else the best
    model of ``run`` (None: the current run). Index: ``index``, else the run's
    ``index/database.faiss``; its code store supplies paths and labels (module docstring).

    ``top``: results per query (None: :data:`DEFAULT_TOP`; with ``radius``, no limit).
    ``radius``: every code within Hamming distance <= radius (capped at ``top`` if given).
    Results are ordered by (distance, row); ``top`` beyond the database returns all of it.

    ``device``: the model's (auto, cpu, cuda, cuda:N). The index is searched on the CPU,
    unless ``device`` names cuda explicitly and the index is flat: then on FAISS's
    GpuIndexBinaryFlat, which returns at most 2,048 neighbours (more is an error).

    ``grid``: write a contact sheet there (:mod:`hashcli.render.contact_sheet`), atomically.

    ``engine``: auto | onnx | torch (:func:`hashcli.workflows.export.choose_engine`): with
    onnx the run's model.onnx encodes on ONNX Runtime and torch is never imported; auto falls
    back to torch, with a note in the report, when model.onnx is missing, stale or unreadable.

    Errors (HashretError, nothing written): a missing, truncated or foreign index; an index of
    another bit count or model fingerprint than the model; an unreadable query image.
    """
    from hashcli.data.inputs import expand_image_inputs
    from hashcli.index.binary_index import GPU_MAX_K
    from hashcli.index.metadata import read_index_metadata
    from hashcli.render.contact_sheet import check_grid_path

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if top is not None and (isinstance(top, bool) or int(top) < 1):
        raise HashretError(f"--top must be at least 1, got {top}")
    if radius is not None and (isinstance(radius, bool) or int(radius) < 0):
        raise HashretError(f"--radius must be 0 or more, got {radius}")
    if batch_size < 1:
        raise HashretError(f"the batch size must be at least 1, got {batch_size}")
    grid_path = check_grid_path(grid) if grid is not None else None
    k = top if top is not None else (None if radius is not None else DEFAULT_TOP)

    paths = expand_image_inputs(images, Path(list_file).expanduser() if list_file else None)
    checkpoint_path, model_run, index_path, index_run = resolve_inputs(
        run, checkpoint, index, workdir
    )
    if not index_path.exists():
        raise missing_index(index_path, RunDir(index_run) if index_run else None)
    meta = read_index_metadata(index_path)
    gpu_search = str(device).strip().lower().startswith("cuda") and meta.index_type == "flat"
    if gpu_search and radius is None and k is not None and min(k, meta.ntotal) > GPU_MAX_K:
        raise HashretError(
            f"--device {device} searches on FAISS's GPU flat index, which returns at most "
            f"{GPU_MAX_K} neighbours per query, and --top {k} asks for "
            f"{min(k, meta.ntotal)}; lower --top or use --device cpu"
        )

    retriever = Retriever.open(
        checkpoint_path,
        model_run,
        index_path,
        index_run,
        device=device,
        engine=engine,
        gpu_search=gpu_search,
        timings=timings,
    )
    mark = time.perf_counter()
    xq = retriever.encode_paths(paths, batch_size=batch_size, progress=progress)
    timings["encode"] = time.perf_counter() - mark
    mark = time.perf_counter()
    found = retriever.search(xq, k=k, radius=radius, top=top)
    timings["search"] = time.perf_counter() - mark
    results = retriever.describe(xq, found, [str(p) for p in paths], query_paths=paths)

    report = QueryReport(
        results=results,
        index=index_path,
        store=retriever.store.path,
        checkpoint=checkpoint_path,
        index_type=retriever.index.index_type,
        ntotal=retriever.index.ntotal,
        bits=retriever.index.bits,
        top=k,
        radius=radius,
        device=retriever.device,
        timings=timings,
        engine=retriever.engine,
        notes=list(retriever.notes),
    )
    if grid_path is not None:
        from hashcli.render.contact_sheet import write_contact_sheet

        mark = time.perf_counter()
        report.grid = write_contact_sheet(results, grid_path)
        timings["grid"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return report
