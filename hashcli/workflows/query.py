"""What ``hashret query`` calls: images in, neighbours out (:func:`query_images`).

The model and the index are loaded and checked against each other, the images encoded in
batches, the index searched (top k and/or radius), paths, labels and class names attached from
the index's code store (:mod:`hashcli.workflows.index`), optionally a contact sheet written.

**FAISS threads**: searches of at most :data:`SINGLE_THREAD_MAX_QUERIES` queries run on one
OpenMP thread. On the shared 2-core development machine one 32-bit query over 6,000 codes took
a median 24 ms with FAISS's default two threads (a descheduled thread makes the other spin at
the barrier) against 0.022 ms on one; over 1,000,000 codes 140 ms against 0.43 ms; 32 queries
over 1,000,000 codes 23 ms against 13 ms.

No typer or rich here; torch, faiss and h5py load inside the functions.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hashcli.errors import HashretError
from hashcli.workflows.index import index_lock, missing_index, read_store_header
from hashcli.workflows.runs import RunDir, absolute, is_under

if TYPE_CHECKING:
    from hashcli.codes.store import StoreHeader

#: Results per query when neither ``top`` nor ``radius`` is given.
DEFAULT_TOP = 20

#: Searches of at most this many queries run on one FAISS thread (see the module docstring).
SINGLE_THREAD_MAX_QUERIES = 32

#: Images per encoding batch for queries.
DEFAULT_QUERY_BATCH_SIZE = 64

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# hashret query


@dataclass
class Neighbour:
    """One result: database ``row`` at Hamming ``distance``; ``label`` an int class index, a
    list of them (multi-label) or None (unknown); ``class_name`` likewise with names."""

    rank: int
    row: int
    path: str | None
    label: int | list[int] | None
    class_name: str | list[str] | None
    distance: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the fields, ``class_name`` as ``class``, in the order above."""
        fields = dataclasses.asdict(self)
        return {key.replace("class_name", "class"): value for key, value in fields.items()}


@dataclass
class QueryResult:
    """One query image and its neighbours, ascending (distance, row).

    ``code`` uint8 (ceil(bits/8),) packed MSB first. ``label`` / ``class_name``: the query's
    class when known, found as ``label_source``: "database" (its path is a database path) or
    "dataset" (one of the run's dataset images); None otherwise.
    """

    query: str
    code: np.ndarray
    neighbours: list[Neighbour]
    label: int | list[int] | None = None
    class_name: str | list[str] | None = None
    label_source: str | None = None

    def relevant(self, neighbour: Neighbour) -> bool | None:
        """Whether ``neighbour`` shares the query's class; None when either is unknown."""
        if self.label is None or neighbour.label is None:
            return None
        if isinstance(self.label, list) or isinstance(neighbour.label, list):
            mine = set(self.label if isinstance(self.label, list) else [self.label])
            theirs = set(
                neighbour.label if isinstance(neighbour.label, list) else [neighbour.label]
            )
            return bool(mine & theirs)
        return self.label == neighbour.label

    def to_dict(self) -> dict[str, Any]:
        """The JSON line of ``hashret query --json``."""
        return {
            "query": self.query,
            "code": self.code.tobytes().hex(),
            "label": self.label,
            "class": self.class_name,
            "results": [n.to_dict() for n in self.neighbours],
        }


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


def _label_value(labels: np.ndarray | None, row: int) -> int | list[int] | None:
    if labels is None:
        return None
    if labels.ndim == 2:
        return [int(i) for i in np.flatnonzero(labels[row])]
    value = int(labels[row])
    return None if value < 0 else value


def _name_of(label: int | list[int] | None, names: list[str] | None) -> str | list[str] | None:
    if label is None or names is None:
        return None
    if isinstance(label, list):
        return [names[i] if 0 <= i < len(names) else str(i) for i in label]
    return names[label] if 0 <= label < len(names) else None


def _dataset_labels(
    run_dir: Path | None, store: StoreHeader, queries: Sequence[Path]
) -> dict[Path, int]:
    """Labels of the queries that are images of the run's dataset (any split), by path.

    Only when the code store comes from that dataset (its ``dataset`` attribute) and a query
    lies under the dataset's folder, so a photo from elsewhere never loads the dataset.
    """
    if run_dir is None:
        return {}
    run = RunDir(run_dir)
    config = run.config()
    dataset, root = config.get("dataset"), config.get("data_root")
    if not dataset or not root or store.attrs.get("dataset") != dataset:
        return {}
    inside = [q for q in queries if is_under(q, Path(root))]
    if not inside:
        return {}
    from hashcli.data import load_dataset

    train = run.train_config()
    try:
        ds = load_dataset(
            dataset, train.data_root, val_fraction=train.val_fraction, seed=train.seed
        )
    except HashretError:  # the dataset moved since training: the class stays unknown
        return {}
    by_path = {absolute(r.path): r.label for r in ds.records}
    return {q: by_path[absolute(q)] for q in inside if absolute(q) in by_path}


def _encode_onnx(
    encoder: Any, paths: Sequence[Path], batch_size: int, progress: ProgressFn | None
) -> np.ndarray:
    """Packed codes of the query images with the ONNX engine, in batches."""
    from hashcli.data.images import load_image

    codes = []
    for start in range(0, len(paths), batch_size):
        batch = [load_image(p) for p in paths[start : start + batch_size]]
        codes.append(encoder.encode(batch))
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    if not codes:
        return np.zeros((0, encoder.bits // 8), dtype=np.uint8)
    return np.concatenate(codes)


def _resolve_query_inputs(
    run: str | Path | None,
    checkpoint: str | Path | None,
    index: str | os.PathLike[str] | None,
    workdir: str | Path | None,
) -> tuple[Path, Path | None, Path, Path | None]:
    """(checkpoint, its run folder, index path, the run folder the index belongs to)."""
    from hashcli.workflows.runs import INDEX_FILE, resolve_checkpoint

    if run is not None and checkpoint is not None:
        raise HashretError("give --run or --checkpoint, not both")
    checkpoint_path, run_dir = resolve_checkpoint(run, checkpoint, workdir)
    if index is not None:
        return checkpoint_path, run_dir, Path(index).expanduser(), None
    if run_dir is None:
        raise HashretError(
            f"the checkpoint {checkpoint_path} is not in a run folder: name the index to "
            "search with --index (build one with `hashret index CODES`)"
        )
    return checkpoint_path, run_dir, run_dir / INDEX_FILE, run_dir


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
    checkpoint_path, model_run, index_path, index_run = _resolve_query_inputs(
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

    from hashcli.workflows.export import choose_engine

    mark = time.perf_counter()
    choice = choose_engine(engine, checkpoint_path, model_run, device)
    notes = [choice.note] if choice.note else []
    if choice.encoder is not None:
        # ONNX Runtime: torch and torchvision are never imported
        encoder = choice.encoder
        timings["model"] = time.perf_counter() - mark
        meta.check_compatible(encoder.bits, encoder.fingerprint())
        bits, fingerprint, device_name = encoder.bits, encoder.fingerprint(), encoder.device
    else:
        # torch and torchvision (transforms, backbones) timed on their own: the largest part
        # of a cold start, which would otherwise show up as "model load".
        import torch  # noqa: F401
        import torchvision  # noqa: F401

        import hashcli.model.backbones  # noqa: F401
        from hashcli.model.checkpoint import load_model
        from hashcli.runtime.device import resolve_device

        timings["imports"] = time.perf_counter() - mark
        mark = time.perf_counter()
        torch_device = resolve_device(device)
        model = load_model(checkpoint_path, torch_device)
        bits, fingerprint, device_name = model.bits, model.fingerprint(), str(torch_device)
        meta.check_compatible(bits, fingerprint)
        timings["model"] = time.perf_counter() - mark
    from hashcli.index.binary_index import BinaryIndex, faiss_threads

    mark = time.perf_counter()
    with index_lock(index_path, reading=True):  # the index and its store as one writer left them
        meta = read_index_metadata(index_path)
        store = read_store_header(meta)
        store_path = store.path
        loaded = BinaryIndex.load(
            index_path, device=device_name if gpu_search else "cpu", mmap=True
        )
    meta.check_compatible(bits, fingerprint)
    timings["index"] = time.perf_counter() - mark

    mark = time.perf_counter()
    if choice.encoder is not None:
        xq = _encode_onnx(choice.encoder, paths, batch_size, progress)
    else:
        from hashcli.data.inputs import records_for_paths
        from hashcli.model.inference import encode_records

        xq = encode_records(
            model,
            records_for_paths(paths),
            device=torch_device,
            batch_size=batch_size,
            progress=progress,
        ).codes
    timings["encode"] = time.perf_counter() - mark

    mark = time.perf_counter()
    threads = 1 if len(xq) <= SINGLE_THREAD_MAX_QUERIES else None
    with faiss_threads(threads):
        if radius is not None:
            found = loaded.range_search(xq, radius, top=top)
        else:
            result = loaded.search(xq, k)
            found = [result.neighbours(q) for q in range(len(xq))]
    timings["search"] = time.perf_counter() - mark

    # Only the rows the results name are read from the code store (its header was checked
    # with the index): at ten million rows, reading every path and label took longer than the
    # rest of the query. A query that is itself a database image is found among its results
    # (its own code is at distance 0), else by the run's dataset.
    from hashcli.codes.store import read_rows

    names = store.class_names
    result_rows = sorted({int(row) for _, rows in found for row in rows})
    row_paths, row_labels = read_rows(store_path, result_rows)
    position = {row: i for i, row in enumerate(result_rows)}

    def path_of(row: int) -> str | None:
        return (row_paths[position[row]] or None) if row_paths else None

    def label_of(row: int) -> int | list[int] | None:
        return _label_value(row_labels, position[row]) if row_labels is not None else None

    by_path: dict[Path, int] = {}
    for row in result_rows:
        if (p := path_of(row)) is not None:
            by_path.setdefault(absolute(Path(p)), row)
    from_dataset = _dataset_labels(
        model_run or index_run, store, [q for q in paths if absolute(q) not in by_path]
    )
    results = []
    for q, query_path in enumerate(paths):
        distances, rows = found[q]
        neighbours = [
            Neighbour(
                rank=rank,
                row=int(row),
                path=path_of(int(row)),
                label=(label := label_of(int(row))),
                class_name=_name_of(label, names),
                distance=int(dist),
            )
            for rank, (dist, row) in enumerate(zip(distances, rows, strict=True), start=1)
        ]
        qr = QueryResult(str(query_path), xq[q].copy(), neighbours)
        own = by_path.get(absolute(query_path))
        if own is not None and row_labels is not None and own in {n.row for n in neighbours}:
            qr.label, qr.label_source = label_of(own), "database"
        elif query_path in from_dataset:
            qr.label, qr.label_source = from_dataset[query_path], "dataset"
        if qr.label is None:
            qr.label_source = None
        qr.class_name = _name_of(qr.label, names)
        results.append(qr)

    report = QueryReport(
        results=results,
        index=index_path,
        store=store_path,
        checkpoint=checkpoint_path,
        index_type=loaded.index_type,
        ntotal=loaded.ntotal,
        bits=loaded.bits,
        top=k,
        radius=radius,
        device=device_name,
        timings=timings,
        engine=choice.engine,
        notes=notes,
    )
    if grid_path is not None:
        from hashcli.render.contact_sheet import write_contact_sheet

        mark = time.perf_counter()
        report.grid = write_contact_sheet(results, grid_path)
        timings["grid"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return report
