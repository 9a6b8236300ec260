"""What ``hashret index`` calls: build an index over a code file, or extend one.

* :func:`build_index`: a FAISS binary index over a code file (default: the run's
  ``codes/database.h5`` into the run's ``index/database.faiss``).
* :func:`add_to_index`: append a code file to an index AND to its code store, so that index
  row i is always code-store row i.

The **code store** of an index is the code file its first recorded source names
(``IndexMetadata.sources[0]``): the file ``query`` reads paths and labels from. It holds one
row per index row; ``add_to_index`` extends it in place (atomically), and records the added
file as a further source.

**How an index records a code file** (:func:`recorded_path`): relative to the index's folder
when both lie in one run folder (``../codes/database.h5``), or when the code file lies in the
index's folder tree (``photos.h5`` beside ``photos.faiss``); absolute otherwise. So a run folder,
or an index with its code file, can be copied or moved. The store of an index inside a run must
lie inside that run: an index that names a code file elsewhere (an older run, copied) reads
the run's own ``codes/database.h5`` when the recorded name ends that way, and is refused
otherwise, as is a store whose rows, bits or model fingerprint do not match the index.

**Where an index goes** (:func:`default_index_path`): a run's database code file
``<run>/codes/database.h5`` maps to ``<run>/index/database.faiss``; any other code file
``X.h5`` (or ``.npz``) to ``X.faiss`` beside it.

**Writers take turns**: building into a run, and every ``add``, hold the run's writer lock
(:meth:`hashcli.workflows.runs.RunDir.lock`; for an index outside a run, ``<index>.lock``),
so concurrent additions from several processes all land, in some order, and the index and
its store always agree.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashcli.errors import HashretError
from hashcli.workflows.runs import (
    DATABASE_CODES,
    INDEX_FILE,
    LOCK_FILE,
    RunDir,
    absolute,
    is_under,
    open_run,
    reading_lock,
    run_of,
    writer_lock,
)

if TYPE_CHECKING:
    from hashcli.codes.store import CodeFile, StoreHeader
    from hashcli.index.binary_index import BinaryIndex
    from hashcli.index.metadata import IndexMetadata


# --------------------------------------------------------------------------------------------
# paths, locks and the code store


def default_index_path(code_path: str | os.PathLike[str]) -> Path:
    """Where the index of ``code_path`` goes by default (see the module docstring)."""
    code_path = Path(code_path)
    run = run_of(code_path)
    if run is not None and absolute(code_path) == absolute(run.database_codes):
        return run.path / INDEX_FILE
    return code_path.with_suffix(".faiss")


def recorded_path(code_path: Path, index_path: Path) -> str:
    """How the index at ``index_path`` records ``code_path`` (see the module docstring)."""
    run = run_of(index_path)
    folder = absolute(index_path).parent
    inside_run = run is not None and run.contains(code_path)
    beside = run is None and is_under(code_path, folder)
    if inside_run or beside:
        return os.path.relpath(absolute(code_path), folder)
    return str(absolute(code_path))


def _lock_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".lock")


@contextlib.contextmanager
def index_lock(index_path: Path, *, reading: bool = False) -> Iterator[None]:
    """Hold the writer lock of the index at ``index_path``: its run's, else ``<index>.lock``.
    ``reading``: for a reader of the index and its store together (skipped where the folder
    is read-only)."""
    run = run_of(index_path)
    lock_path = run.path / LOCK_FILE if run is not None else _lock_path(index_path)
    what = f"the run {run.name}" if run is not None else f"the index {index_path}"
    with (reading_lock if reading else writer_lock)(lock_path, what=what):
        yield


def find_code_store(meta: IndexMetadata) -> Path:
    """The code store of the index described by ``meta`` (see the module docstring)."""
    where = meta.path
    if not meta.sources or meta.sources[0].get("path") is None:
        raise HashretError(
            f"the index {where} records no code file, so its rows have no paths or labels; "
            "rebuild it from a code file with `hashret index CODES`"
        )
    recorded = Path(meta.sources[0]["path"]).expanduser()
    run = run_of(where) if where is not None else None
    rebuild = (
        f"rebuild it with `hashret index --run {run.path}`"
        if run is not None
        else "rebuild the index from the code file with `hashret index CODES`"
    )
    candidates = []
    if recorded.is_absolute() or where is None:
        candidates.append(recorded)
    else:
        candidates.append(Path(os.path.normpath(where.parent / recorded)))
        if run is None:
            candidates.append(recorded)  # recorded relative to the working folder (older)
    if run is not None:
        inside = [c for c in candidates if run.contains(c)]
        if not inside and recorded.parts[-2:] == Path(DATABASE_CODES).parts:
            inside = [run.database_codes]  # an older run, copied or moved
        if not inside:
            raise HashretError(
                f"the index {where} of the run {run.name} reads its paths and labels from "
                f"{recorded}, outside the run; a run only uses its own files: {rebuild}"
            )
        candidates = inside
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise HashretError(
        f"the code file of the index {where}, {recorded}, does not exist (moved or deleted?); "
        f"{rebuild}"
    )


def read_store(meta: IndexMetadata) -> tuple[Path, CodeFile]:
    """The code store of an index, checked against it: rows, bits and model fingerprint."""
    from hashcli.codes.store import read_codes

    store_path = find_code_store(meta)
    store = read_codes(store_path)
    _check_store(meta, store_path, store.bits, len(store), store.attrs)
    return store_path, store


def read_store_header(meta: IndexMetadata) -> StoreHeader:
    """:func:`read_store` without reading the rows: the header of the index's code store,
    checked the same way (a query then reads only its results' rows with
    :func:`hashcli.codes.store.read_rows`)."""
    from hashcli.codes.store import read_header

    header = read_header(find_code_store(meta))
    _check_store(meta, header.path, header.bits, header.n, header.attrs)
    return header


def _check_store(
    meta: IndexMetadata, store_path: Path, bits: int, n: int, attrs: dict[str, Any]
) -> None:
    if bits != meta.bits or n != meta.ntotal:
        raise HashretError(
            f"the index {meta.path} holds {meta.ntotal:,} codes of {meta.bits} bits but its "
            f"code file {store_path} holds {n:,} of {bits} bits (changed since "
            f"the index was built, or an interrupted `hashret index add`); rebuild the index "
            f"with `hashret index {store_path}`"
        )
    fingerprint = attrs.get("model_fingerprint")
    if meta.model_fingerprint and fingerprint and fingerprint != meta.model_fingerprint:
        raise HashretError(
            f"the index {meta.path} holds codes of the model {meta.model_fingerprint[:12]} but "
            f"its code file {store_path} was encoded by the model {str(fingerprint)[:12]}; "
            f"rebuild the index with `hashret index {store_path}`"
        )


def missing_index(path: Path, run: RunDir | None) -> HashretError:
    """The error for an index that is not there."""
    if run is not None:
        return HashretError(
            f"the run {run.name} has no index ({path} is missing); build it with "
            f"`hashret index --run {run.name}`"
        )
    return HashretError(f"no index at {path}; build one with `hashret index CODES --out {path}`")


# --------------------------------------------------------------------------------------------
# hashret index (build)


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


def write_index(
    code_path: Path,
    target: Path,
    index_type: str = "flat",
    *,
    params: Mapping[str, Any] | None = None,
) -> BinaryIndex:
    """Build an index over the code file ``code_path`` and save it at ``target``, recording
    the code file (:func:`recorded_path`) and its model fingerprint; the caller holds the
    writer lock."""
    from hashcli.codes.store import read_codes
    from hashcli.index.binary_index import BinaryIndex

    code_file = read_codes(code_path)
    if len(code_file) == 0:
        raise HashretError(f"the code file {code_path} holds no codes; nothing to index")
    index = BinaryIndex.build(
        code_file.codes,
        code_file.bits,
        index_type,
        params=params,
        model_fingerprint=code_file.attrs.get("model_fingerprint"),
        source_path=recorded_path(code_path, target),
    )
    index.save(target)
    return index


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
    records the code file (its code store, :func:`recorded_path`) and the file's model
    fingerprint. ``params`` override DEFAULT_PARAMS[index_type] (None values ignored).
    Building runs on the CPU; the saved index is the same whatever device later searches it.
    """
    from hashcli.index.params import check_index_type

    check_index_type(index_type)
    if codes is not None and run is not None:
        raise HashretError("give a code file or a run, not both (choose the output with --out)")
    if codes is None:
        code_path = open_run(run, workdir).file(DATABASE_CODES)
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
    with index_lock(target):
        index = write_index(code_path, target, index_type, params=params)
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


# --------------------------------------------------------------------------------------------
# hashret index add


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


def index_location(
    index: str | os.PathLike[str] | None, run: str | Path | None, workdir: str | Path | None
) -> tuple[Path, RunDir | None]:
    """(index path, its run or None) from --index or --run (None: the current run)."""
    if index is not None:
        if run is not None:
            raise HashretError("give --index or --run, not both")
        return Path(index).expanduser(), None
    run_dir = open_run(run, workdir)
    return run_dir.index_file, run_dir


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

    Holds the index's writer lock from reading to the last write, so concurrent additions
    land one after the other. Writes: the extended code store to a temporary file beside it,
    then the index (each of its two files atomically), then the store renamed into place. A
    failure before the end leaves both as they were; a crash between the last two renames
    leaves the index one step ahead, which ``query`` detects (row counts) and reports.
    """
    from hashcli.codes.store import concatenate, read_codes, write_codes
    from hashcli.index.binary_index import BinaryIndex
    from hashcli.index.metadata import read_index_metadata

    index_path, run_dir = index_location(index, run, workdir)
    new_path = Path(new_codes).expanduser()
    new = read_codes(new_path)  # "does not exist" / format errors first
    if not index_path.exists():
        raise missing_index(index_path, run_dir)
    with index_lock(index_path):
        meta = read_index_metadata(index_path)
        store_path, store = read_store(meta)
        if absolute(new_path) == absolute(store_path):
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
        combined = concatenate(store, new, names=(str(store_path), str(new_path)))

        loaded = BinaryIndex.load(index_path)
        tmp_store = store_path.with_name(f".{store_path.name}.{os.getpid()}.adding.h5")
        try:
            write_codes(tmp_store, combined)
            rows = loaded.add(new.codes, source_path=recorded_path(new_path, index_path))
            loaded.save(index_path)
            os.replace(tmp_store, store_path)
        finally:
            tmp_store.unlink(missing_ok=True)
    return IndexAddSummary(index_path, store_path, new_path, rows, loaded.ntotal, loaded.bits)
