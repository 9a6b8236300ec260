"""What ``hashret index`` and ``hashret query`` call: build or extend a run's index, query it.

* :func:`build_index`: a FAISS binary index over a code file (default: the run's
  ``codes/database.h5`` into the run's ``index/database.faiss``).
* :func:`add_to_index`: append a code file to an index AND to its code store, so that index
  row i is always code-store row i.
* :func:`query_images`: images in, neighbours out: the model and the index loaded and checked
  against each other, the images encoded in batches, the index searched (top k and/or radius),
  paths, labels and class names attached, optionally a contact sheet written.

The **code store** of an index is the code file its first recorded source names
(``IndexMetadata.sources[0]``): the file ``query`` reads paths and labels from. It holds one
row per index row; ``add_to_index`` extends it in place (atomically), and records the added
file as a further source. A store recorded by a relative path is looked for relative to the
current folder, then to the index's folder, then (for an index at ``<run>/index/``) at
``<run>/codes/database.h5``, so a run folder can move.

**Where an index goes** (:func:`default_index_path`): a run's database code file
``<run>/codes/database.h5`` maps to ``<run>/index/database.faiss``; any other code file
``X.h5`` (or ``.npz``) to ``X.faiss`` beside it.

**FAISS threads**: searches of at most :data:`SINGLE_THREAD_MAX_QUERIES` queries run on one
OpenMP thread. On the shared 2-core development machine one 32-bit query over 6,000 codes took
a median 24 ms with FAISS's default two threads (a descheduled thread makes the other spin at
the barrier) against 0.022 ms on one; over 1,000,000 codes 140 ms against 0.43 ms; 32 queries
over 1,000,000 codes 23 ms against 13 ms.

No typer or rich here; torch, faiss and h5py load inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hashcli.errors import HashretError

if TYPE_CHECKING:
    from hashcli.codes.store import CodeFile
    from hashcli.index.metadata import IndexMetadata

#: Results per query when neither ``top`` nor ``radius`` is given.
DEFAULT_TOP = 20

#: Searches of at most this many queries run on one FAISS thread (see the module docstring).
SINGLE_THREAD_MAX_QUERIES = 32

#: Images per encoding batch for queries.
DEFAULT_QUERY_BATCH_SIZE = 64

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# paths


def default_index_path(code_path: str | os.PathLike[str]) -> Path:
    """Where the index of ``code_path`` goes by default (see the module docstring)."""
    from hashcli.runs import DATABASE_CODES, INDEX_FILE, is_run_dir

    code_path = Path(code_path)
    run_dir = code_path.parent.parent
    if code_path.parts[-2:] == Path(DATABASE_CODES).parts and is_run_dir(run_dir):
        return run_dir / INDEX_FILE
    return code_path.with_suffix(".faiss")


def _absolute(path: Path) -> Path:
    return Path(os.path.normpath(os.path.abspath(path)))


def find_code_store(meta: IndexMetadata) -> Path:
    """The code store of the index described by ``meta`` (see the module docstring)."""
    from hashcli.runs import DATABASE_CODES, INDEX_DIR

    where = meta.path
    if not meta.sources or meta.sources[0].get("path") is None:
        raise HashretError(
            f"the index {where} records no code file, so its rows have no paths or labels; "
            "rebuild it from a code file with `hashret index CODES`"
        )
    recorded = Path(meta.sources[0]["path"]).expanduser()
    candidates = [recorded]
    if where is not None and not recorded.is_absolute():
        candidates.append(where.parent / recorded)
    if (
        where is not None
        and where.parent.name == INDEX_DIR
        and recorded.parts[-2:] == Path(DATABASE_CODES).parts
    ):
        candidates.append(where.parent.parent / DATABASE_CODES)  # a run folder that moved
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise HashretError(
        f"the code file of the index {where}, {recorded}, does not exist (moved or deleted?); "
        "rebuild the index from the code file with `hashret index CODES`"
    )


def _read_store(meta: IndexMetadata) -> tuple[Path, CodeFile]:
    """The code store of an index, checked row for row against it."""
    from hashcli.codes.store import read_codes

    store_path = find_code_store(meta)
    store = read_codes(store_path)
    if store.bits != meta.bits or len(store) != meta.ntotal:
        raise HashretError(
            f"the index {meta.path} holds {meta.ntotal:,} codes of {meta.bits} bits but its "
            f"code file {store_path} holds {len(store):,} of {store.bits} bits (changed since "
            f"the index was built, or an interrupted `hashret index add`); rebuild the index "
            f"with `hashret index {store_path}`"
        )
    return store_path, store


def _class_names(store: CodeFile) -> list[str] | None:
    raw = store.attrs.get("class_names")
    if not isinstance(raw, str):
        return None
    try:
        names = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


# --------------------------------------------------------------------------------------------
# hashret index


@dataclass
class IndexBuildSummary:
    """What :func:`build_index` wrote: ``out`` (+ ``out``.json), from ``source``."""

    out: Path
    source: Path
    index_type: str
    ntotal: int
    bits: int
    params: dict[str, int]
    notes: list[str]
    model_fingerprint: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "source": str(self.source),
            "index_type": self.index_type,
            "ntotal": self.ntotal,
            "bits": self.bits,
            "params": dict(self.params),
            "notes": list(self.notes),
            "model_fingerprint": self.model_fingerprint,
            "seconds": round(self.seconds, 3),
        }


def build_index(
    codes: str | os.PathLike[str] | None = None,
    *,
    run: str | Path | None = None,
    workdir: str | Path | None = None,
    index_type: str = "flat",
    params: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> IndexBuildSummary:
    """Build and save an index over a code file.

    ``codes``: the code file; None means the database codes of ``run`` (None: the current run
    of ``workdir``). ``out``: default :func:`default_index_path` of the code file. The index
    records the code file by its absolute path (its code store) and the file's model
    fingerprint. ``params`` override DEFAULT_PARAMS[index_type] (None values ignored).
    Building runs on the CPU; the saved index is the same whatever device later searches it.
    """
    from hashcli.index.binary_index import build_index_from_codes
    from hashcli.index.params import check_index_type

    check_index_type(index_type)
    if codes is not None and run is not None:
        raise HashretError("give a code file or a run, not both (choose the output with --out)")
    if codes is None:
        from hashcli.runs import DATABASE_CODES, resolve_run, run_file

        code_path = run_file(resolve_run(run, workdir), DATABASE_CODES)
    else:
        code_path = Path(codes).expanduser()
        if not code_path.is_file():
            raise HashretError(f"code file {code_path} does not exist")
    target = Path(out).expanduser() if out is not None else default_index_path(code_path)
    if target.is_dir():
        raise HashretError(
            f"--out {target} is a folder; name the index file (e.g. {target}/x.faiss)"
        )
    params = {k: v for k, v in (params or {}).items() if v is not None}
    start = time.perf_counter()
    index = build_index_from_codes(_absolute(code_path), index_type, params=params)
    if index.ntotal == 0:
        raise HashretError(f"the code file {code_path} holds no codes; nothing to index")
    index.save(target)
    return IndexBuildSummary(
        out=target,
        source=code_path,
        index_type=index.index_type,
        ntotal=index.ntotal,
        bits=index.bits,
        params=index.params,
        notes=list(index.notes),
        model_fingerprint=index.model_fingerprint,
        seconds=time.perf_counter() - start,
    )


@dataclass
class IndexAddSummary:
    """What :func:`add_to_index` did: ``rows`` of ``index`` (and of ``store``) are new."""

    index: Path
    store: Path
    source: Path
    rows: range
    ntotal: int
    bits: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": str(self.index),
            "store": str(self.store),
            "source": str(self.source),
            "added": len(self.rows),
            "first_row": self.rows.start,
            "last_row": self.rows.stop - 1,
            "ntotal": self.ntotal,
            "bits": self.bits,
        }


def _index_path_for(
    index: str | os.PathLike[str] | None, run: str | Path | None, workdir: str | Path | None
) -> tuple[Path, Path | None]:
    """(index path, its run folder or None) from --index or --run (None: the current run)."""
    from hashcli.runs import INDEX_FILE, resolve_run

    if index is not None:
        if run is not None:
            raise HashretError("give --index or --run, not both")
        return Path(index).expanduser(), None
    run_dir = resolve_run(run, workdir)
    return run_dir / INDEX_FILE, run_dir


def _missing_index(path: Path, run_dir: Path | None) -> HashretError:
    if run_dir is not None:
        return HashretError(
            f"the run {run_dir.name} has no index ({path} is missing); build it with "
            f"`hashret index --run {run_dir.name}`"
        )
    return HashretError(f"no index at {path}; build one with `hashret index CODES --out {path}`")


def _fill(values: np.ndarray | None, n: int, like: np.ndarray | None, fill: Any) -> np.ndarray:
    """``values``, or ``n`` rows of ``fill`` shaped like ``like``'s rows."""
    if values is not None:
        return values
    assert like is not None
    return np.full((n, *like.shape[1:]), fill, dtype=like.dtype)


def _extended_store(store: CodeFile, new: CodeFile, store_path: Path, new_path: Path) -> CodeFile:
    """The code store with ``new``'s rows appended (unknown labels -1, unknown paths "")."""
    from hashcli.codes.store import CodeFile

    if store.labels is not None and new.labels is not None:
        if store.multi_label != new.multi_label or (
            store.multi_label and store.labels.shape[1] != new.labels.shape[1]
        ):
            raise HashretError(
                f"{new_path} has {'multi' if new.multi_label else 'single'}-label labels that do "
                f"not fit the {'multi' if store.multi_label else 'single'}-label labels of "
                f"{store_path}"
            )
        names_old, names_new = _class_names(store), _class_names(new)
        if names_old is not None and names_new is not None and names_old != names_new:
            raise HashretError(
                f"{new_path} labels its codes with other classes than {store_path} (the "
                "class_names differ); its labels would mean other classes there"
            )
    labels = None
    if store.labels is not None or new.labels is not None:
        like = store.labels if store.labels is not None else new.labels
        fill = False if like.ndim == 2 else -1
        labels = np.concatenate(
            [
                _fill(store.labels, len(store), like, fill),
                _fill(new.labels, len(new), like, fill),
            ]
        )
    paths = None
    if store.paths is not None or new.paths is not None:
        paths = (store.paths or [""] * len(store)) + (new.paths or [""] * len(new))
    ids = None
    if store.ids is not None or new.ids is not None:
        like = store.ids if store.ids is not None else new.ids
        ids = np.concatenate(
            [_fill(store.ids, len(store), like, -1), _fill(new.ids, len(new), like, -1)]
        )
    attrs = dict(store.attrs)
    if "class_names" not in attrs and _class_names(new) is not None:
        attrs["class_names"] = new.attrs["class_names"]
    return CodeFile(
        codes=np.concatenate([store.codes, new.codes]),
        bits=store.bits,
        labels=labels,
        paths=paths,
        ids=ids,
        attrs=attrs,
    )


def add_to_index(
    new_codes: str | os.PathLike[str],
    *,
    index: str | os.PathLike[str] | None = None,
    run: str | Path | None = None,
    workdir: str | Path | None = None,
) -> IndexAddSummary:
    """Append the codes of ``new_codes`` to an index and to its code store.

    The index: ``index``, else the index of ``run`` (None: the current run). The new codes
    must have the index's bit count and, when the index records a model fingerprint, the same
    fingerprint. They get rows ``ntotal ..``; the code store gets the same rows (labels -1 /
    paths "" where one side has none), so index row i stays code-store row i, and the file is
    recorded as a source in the index's record.

    Writes: the extended code store to a temporary file beside it, then the index (each of
    its two files atomically), then the store renamed into place. A failure before the end
    leaves both as they were; a crash between the last two renames leaves the index one step
    ahead, which ``query`` detects (row counts) and reports.
    """
    from hashcli.codes.store import read_codes, write_codes
    from hashcli.index.binary_index import BinaryIndex
    from hashcli.index.metadata import read_index_metadata

    index_path, run_dir = _index_path_for(index, run, workdir)
    new_path = Path(new_codes).expanduser()
    new = read_codes(new_path)  # "does not exist" / format errors first
    if not index_path.exists():
        raise _missing_index(index_path, run_dir)
    meta = read_index_metadata(index_path)
    store_path, store = _read_store(meta)
    if _absolute(new_path) == _absolute(store_path):
        raise HashretError(f"{new_path} is the index's own code file; its codes are in already")
    if new.bits != meta.bits:
        raise HashretError(
            f"{new_path} holds {new.bits}-bit codes but the index {index_path} holds "
            f"{meta.bits}-bit codes; encode the images with the index's model"
        )
    new_fp = new.attrs.get("model_fingerprint")
    if meta.model_fingerprint and new_fp != meta.model_fingerprint:
        why = (
            "records no model fingerprint"
            if not new_fp
            else f"was encoded by another model (fingerprint {str(new_fp)[:12]})"
        )
        raise HashretError(
            f"{new_path} {why}, but the index {index_path} holds codes of the model "
            f"{meta.model_fingerprint[:12]}; encode the images with that model "
            "(`hashret encode IMAGES --run RUN --out NEW.h5`)"
        )
    if store_path.suffix.lower() == ".npz":
        raise HashretError(
            f"the index's code file {store_path} is a .npz file, which hashret does not "
            "rewrite; rebuild the index from an .h5 code file to extend it"
        )
    if len(new) == 0:
        raise HashretError(f"{new_path} holds no codes; nothing to add")
    combined = _extended_store(store, new, store_path, new_path)

    loaded = BinaryIndex.load(index_path)
    tmp_store = store_path.with_name(f".{store_path.name}.{os.getpid()}.adding.h5")
    try:
        write_codes(tmp_store, combined)
        rows = loaded.add(new.codes, source_path=_absolute(new_path))
        loaded.save(index_path)
        os.replace(tmp_store, store_path)
    finally:
        tmp_store.unlink(missing_ok=True)
    return IndexAddSummary(
        index=index_path,
        store=store_path,
        source=new_path,
        rows=rows,
        ntotal=loaded.ntotal,
        bits=loaded.bits,
    )


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
        return {
            "rank": self.rank,
            "row": self.row,
            "path": self.path,
            "label": self.label,
            "class": self.class_name,
            "distance": self.distance,
        }


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


@contextlib.contextmanager
def faiss_threads(count: int | None) -> Iterator[None]:
    """FAISS's OpenMP threads set to ``count`` inside the block (None: left alone)."""
    if count is None:
        yield
        return
    from hashcli.index.binary_index import _faiss

    faiss = _faiss()
    saved = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(saved)


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


def _is_under(path: Path, folder: Path) -> bool:
    try:
        _absolute(path).relative_to(_absolute(folder))
    except ValueError:
        return False
    return True


def _dataset_labels(
    run_dir: Path | None, store: CodeFile, queries: Sequence[Path]
) -> dict[Path, int]:
    """Labels of the queries that are images of the run's dataset (any split), by path.

    Only when the code store comes from that dataset (its ``dataset`` attribute) and a query
    lies under the dataset's folder, so a photo from elsewhere never loads the dataset.
    """
    if run_dir is None:
        return {}
    from hashcli.runs import read_config

    config = read_config(run_dir)
    dataset, root = config.get("dataset"), config.get("data_root")
    if not dataset or not root or store.attrs.get("dataset") != dataset:
        return {}
    inside = [q for q in queries if _is_under(q, Path(root))]
    if not inside:
        return {}
    from hashcli.data import load_dataset

    train = config.get("train") or {}
    try:
        ds = load_dataset(
            dataset,
            train.get("data_root"),
            val_fraction=train.get("val_fraction", 0.1),
            seed=train.get("seed", 0),
        )
    except HashretError:  # the dataset moved since training: the class stays unknown
        return {}
    by_path = {_absolute(r.path): r.label for r in ds.records}
    return {q: by_path[_absolute(q)] for q in inside if _absolute(q) in by_path}


def _resolve_query_inputs(
    run: str | Path | None,
    checkpoint: str | Path | None,
    index: str | os.PathLike[str] | None,
    workdir: str | Path | None,
) -> tuple[Path, Path | None, Path, Path | None]:
    """(checkpoint, its run folder, index path, the run folder the index belongs to)."""
    from hashcli.runs import INDEX_FILE, resolve_checkpoint

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


def check_grid_path(grid: str | os.PathLike[str]) -> Path:
    """``grid`` if Pillow can write an image by its extension, else a HashretError."""
    from PIL import Image

    path = Path(grid).expanduser()
    if path.is_dir():
        raise HashretError(f"--grid {path} is a folder; name the image (e.g. {path}/grid.jpg)")
    if path.suffix.lower() not in Image.registered_extensions():
        raise HashretError(
            f"--grid {path}: unknown image type {path.suffix or '(no extension)'!r}; "
            "use .jpg or .png"
        )
    return path


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

    ``grid``: write a contact sheet there (:mod:`hashcli.index.grid`), atomically.

    Errors (HashretError, nothing written): a missing, truncated or foreign index; an index of
    another bit count or model fingerprint than the model; an unreadable query image.
    """
    from hashcli.data.inputs import expand_image_inputs
    from hashcli.index.binary_index import GPU_MAX_K
    from hashcli.index.metadata import read_index_metadata

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
        raise _missing_index(index_path, index_run)
    meta = read_index_metadata(index_path)
    gpu_search = str(device).strip().lower().startswith("cuda") and meta.index_type == "flat"
    if gpu_search and radius is None and k is not None and min(k, meta.ntotal) > GPU_MAX_K:
        raise HashretError(
            f"--device {device} searches on FAISS's GPU flat index, which returns at most "
            f"{GPU_MAX_K} neighbours per query, and --top {k} asks for "
            f"{min(k, meta.ntotal)}; lower --top or use --device cpu"
        )

    # torch and torchvision (transforms, backbones) timed on their own: the largest part of
    # a cold start, which would otherwise show up as "model load".
    mark = time.perf_counter()
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import hashcli.model.backbones  # noqa: F401
    from hashcli.data.inputs import records_for_paths
    from hashcli.index.binary_index import BinaryIndex
    from hashcli.model.checkpoint import load_model
    from hashcli.model.device import resolve_device
    from hashcli.model.encode import encode_records

    timings["imports"] = time.perf_counter() - mark

    mark = time.perf_counter()
    torch_device = resolve_device(device)
    model = load_model(checkpoint_path, torch_device)
    meta.check_compatible(model.bits, model.fingerprint())
    timings["model"] = time.perf_counter() - mark

    mark = time.perf_counter()
    store_path, store = _read_store(meta)
    loaded = BinaryIndex.load(index_path, device=str(torch_device) if gpu_search else "cpu")
    timings["index"] = time.perf_counter() - mark

    mark = time.perf_counter()
    encoded = encode_records(
        model,
        records_for_paths(paths),
        device=torch_device,
        batch_size=batch_size,
        progress=progress,
    )
    timings["encode"] = time.perf_counter() - mark

    mark = time.perf_counter()
    xq = encoded.codes
    threads = 1 if len(xq) <= SINGLE_THREAD_MAX_QUERIES else None
    with faiss_threads(threads):
        if radius is not None:
            found = loaded.range_search(xq, radius, top=top)
        else:
            result = loaded.search(xq, k)
            found = [result.neighbours(q) for q in range(len(xq))]
    timings["search"] = time.perf_counter() - mark

    names = _class_names(store)
    db_paths = store.paths or []
    by_path: dict[Path, int] = {}
    for row, p in enumerate(db_paths):
        if p:
            by_path.setdefault(_absolute(Path(p)), row)
    from_dataset = _dataset_labels(
        model_run or index_run, store, [q for q in paths if _absolute(q) not in by_path]
    )
    results = []
    for q, query_path in enumerate(paths):
        distances, rows = found[q]
        neighbours = [
            Neighbour(
                rank=rank,
                row=int(row),
                path=(db_paths[row] or None) if db_paths else None,
                label=(label := _label_value(store.labels, int(row))),
                class_name=_name_of(label, names),
                distance=int(dist),
            )
            for rank, (dist, row) in enumerate(zip(distances, rows, strict=True), start=1)
        ]
        qr = QueryResult(str(query_path), xq[q].copy(), neighbours)
        row = by_path.get(_absolute(query_path))
        if row is not None and store.labels is not None:
            qr.label, qr.label_source = _label_value(store.labels, row), "database"
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
        device=str(torch_device),
        timings=timings,
    )
    if grid_path is not None:
        from hashcli.index.grid import write_contact_sheet

        mark = time.perf_counter()
        report.grid = write_contact_sheet(results, grid_path)
        timings["grid"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return report
