"""The retrieval layer shared by ``hashret query`` and ``hashret serve``: a run's model (either
engine), index and code store loaded once (:class:`Retriever`), then images in, neighbours
with their paths, labels and class names out, as often as asked.

:meth:`Retriever.open` checks the model, the index and its code store against each other
(bits, model fingerprints) and reads only the code store's header; :meth:`Retriever.describe`
reads the rows its results name. No typer or rich; torch loads only for the torch engine.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hashcli.errors import HashretError
from hashcli.workflows.index import index_lock, read_store_header
from hashcli.workflows.runs import RunDir, absolute, is_under

if TYPE_CHECKING:
    from hashcli.codes.store import StoreHeader
    from hashcli.index.binary_index import BinaryIndex

#: Searches of at most this many queries run on one FAISS thread (the reason and the figures:
#: hashcli.workflows.query's docstring).
SINGLE_THREAD_MAX_QUERIES = 32

ProgressFn = Callable[[int, int], None]


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


def resolve_inputs(
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


def open_retriever(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    index: str | os.PathLike[str] | None = None,
    workdir: str | Path | None = None,
    device: str = "auto",
    engine: str = "auto",
) -> tuple[Retriever, str | None]:
    """A :class:`Retriever` of ``run`` (or ``checkpoint`` and ``index``) and the run's name, as
    ``hashret query`` resolves them; HashretError for a missing index."""
    from hashcli.workflows.index import missing_index

    checkpoint_path, model_run, index_path, index_run = resolve_inputs(
        run, checkpoint, index, workdir
    )
    if not index_path.exists():
        raise missing_index(index_path, RunDir(index_run) if index_run else None)
    retriever = Retriever.open(
        checkpoint_path, model_run, index_path, index_run, device=device, engine=engine
    )
    name = (model_run or index_run).name if (model_run or index_run) else None
    return retriever, name


class Retriever:
    """A run's model, index and code store, loaded once (see the module docstring).

    Attributes: ``engine`` ("onnx" or "torch"), ``device`` (where the model runs), ``bits``,
    ``index`` (:class:`hashcli.index.binary_index.BinaryIndex`), ``store`` (the code store's
    header), ``notes`` (why auto fell back to torch, if it did), ``run_dir`` (the run whose
    dataset can name a query's class).
    """

    def __init__(self) -> None:  # use Retriever.open
        self.notes: list[str] = []
        self._transform: Any = None  # the torch engine's evaluation transform, once built

    @classmethod
    def open(
        cls,
        checkpoint: Path,
        model_run: Path | None,
        index_path: Path,
        index_run: Path | None,
        *,
        device: str = "auto",
        engine: str = "auto",
        gpu_search: bool = False,
        timings: dict[str, float] | None = None,
    ) -> Retriever:
        """Load the model with ``engine`` (:func:`hashcli.workflows.export.choose_engine`), the
        index (memory-mapped when flat; on the GPU when ``gpu_search``) and the code store's
        header, each checked against the others. ``timings`` gets imports / model / index."""
        from hashcli.index.binary_index import BinaryIndex
        from hashcli.index.metadata import read_index_metadata
        from hashcli.workflows.export import choose_engine

        timings = timings if timings is not None else {}
        self = cls()
        self.run_dir = model_run or index_run
        self.index_path = index_path
        self.gpu_search = gpu_search
        meta = read_index_metadata(index_path)
        mark = time.perf_counter()
        choice = choose_engine(engine, checkpoint, model_run, device)
        self.notes = [choice.note] if choice.note else []
        self.engine = choice.engine
        self.encoder = choice.encoder
        self.model: Any = None
        if choice.encoder is not None:  # ONNX Runtime: torch and torchvision never imported
            timings["model"] = time.perf_counter() - mark
            self.bits, self.fingerprint = choice.encoder.bits, choice.encoder.fingerprint()
            self.device = choice.encoder.device
        else:
            # torch and torchvision timed on their own: the largest part of a cold start,
            # which would otherwise show up as "model load"
            import torch  # noqa: F401
            import torchvision  # noqa: F401

            import hashcli.model.backbones  # noqa: F401
            from hashcli.model.checkpoint import load_model
            from hashcli.runtime.device import resolve_device

            timings["imports"] = time.perf_counter() - mark
            mark = time.perf_counter()
            self.torch_device = resolve_device(device)
            self.model = load_model(checkpoint, self.torch_device)
            self.bits, self.fingerprint = self.model.bits, self.model.fingerprint()
            self.device = str(self.torch_device)
            timings["model"] = time.perf_counter() - mark
        meta.check_compatible(self.bits, self.fingerprint)
        mark = time.perf_counter()
        with index_lock(index_path, reading=True):  # index and store as one writer left them
            meta = read_index_metadata(index_path)
            self.store: StoreHeader = read_store_header(meta)
            self.index: BinaryIndex = BinaryIndex.load(
                index_path, device=self.device if gpu_search else "cpu", mmap=True
            )
        meta.check_compatible(self.bits, self.fingerprint)
        timings["index"] = time.perf_counter() - mark
        return self

    def use_threads(self, threads: int) -> None:
        """Run each forward pass on ``threads`` CPU cores (a server running several passes at
        once gives each its share): a new ONNX Runtime session, or torch's intra-op threads
        of this process."""
        if self.encoder is not None:
            self.encoder = self.encoder.with_threads(threads)
        else:
            import torch

            torch.set_num_threads(threads)

    def refresh(self) -> bool:
        """Reload the index and the store header if another writer (``hashret index add``, an
        addition through the server) changed them since; whether it did. A stat and a small
        JSON read when nothing changed."""
        from hashcli.index.binary_index import BinaryIndex
        from hashcli.index.metadata import read_index_metadata

        meta = read_index_metadata(self.index_path)
        if meta.ntotal == self.index.ntotal and meta.data_bytes == self._data_bytes():
            return False
        with index_lock(self.index_path, reading=True):
            meta = read_index_metadata(self.index_path)
            store = read_store_header(meta)
            index = BinaryIndex.load(
                self.index_path, device=self.device if self.gpu_search else "cpu", mmap=True
            )
        meta.check_compatible(self.bits, self.fingerprint)
        self.store, self.index = store, index
        return True

    def _data_bytes(self) -> int | None:
        try:
            return self.index_path.stat().st_size
        except OSError:
            return None

    def add_item(self, data: bytes, image: Any, *, suffix: str, label: int | None) -> int:
        """Add an uploaded image to the database: the file kept as ``uploads/<sha256>`` beside
        the index (the run's folder), its code appended to the index and the code store as
        ``hashret index add`` appends (under the index's writer lock, so that additions from
        anywhere all land, each atomically); returns its row, searchable at once."""
        import hashlib

        from hashcli.codes.store import CodeFile, write_codes
        from hashcli.fileio import atomic_path
        from hashcli.workflows.index import add_to_index

        if label is not None and self.store.multi_label:
            raise HashretError("the database is multi-label: add items without a label")
        digest = hashlib.sha256(data).hexdigest()[:20]
        uploads = (self.run_dir or self.index_path.parent) / "uploads"
        image_path = uploads / f"{digest}{suffix.lower()}"
        if not image_path.exists():
            with atomic_path(image_path) as tmp:
                tmp.write_bytes(data)
        codes = self.encode_images([image])
        item = CodeFile(
            codes=codes,
            bits=self.bits,
            labels=np.asarray([-1 if label is None else label], dtype=np.int64),
            paths=[str(absolute(image_path))],
            attrs={"model_fingerprint": self.fingerprint, "dataset": "images", "split": "upload"},
        )
        code_path = uploads / f"{digest}-{time.time_ns()}.h5"
        write_codes(code_path, item)
        added = add_to_index(code_path, index=self.index_path)
        self.refresh()
        return added.rows.start

    def row_codes(self, rows: Sequence[int]) -> np.ndarray:
        """uint8 (len(rows), bits / 8): the stored codes of database rows (to search with)."""
        from hashcli.codes.store import read_row_codes

        return read_row_codes(self.store.path, rows)

    def row_path(self, row: int) -> str | None:
        """The image path database row ``row`` records (None without one); IndexError for a
        row the database does not have."""
        from hashcli.codes.store import read_rows

        if not 0 <= row < self.index.ntotal:
            raise IndexError(row)
        paths, _ = read_rows(self.store.path, [row])
        return paths[0] or None if paths else None

    def encode_paths(
        self, paths: Sequence[Path], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """uint8 (N, bits / 8) codes of image files (DataError for an unreadable one)."""
        if self.encoder is not None:
            return _encode_onnx(self.encoder, paths, batch_size, progress)
        from hashcli.data.inputs import records_for_paths
        from hashcli.model.inference import encode_records

        return encode_records(
            self.model,
            records_for_paths(paths),
            device=self.torch_device,
            batch_size=batch_size,
            progress=progress,
        ).codes

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """uint8 (N, bits / 8) codes of decoded RGB images (PIL), in one forward pass."""
        return self.encode_prepared([self.prepare(image) for image in images])

    def prepare(self, image: Any) -> Any:
        """The model input of one decoded RGB image (the evaluation transform: a float32
        array for the ONNX engine, a tensor for torch), for :meth:`encode_prepared`. The server
        prepares each upload in a worker thread, so that only the forward pass is serial."""
        if self.encoder is not None:
            return self.encoder.prepare(image)
        if self._transform is None:
            from hashcli.data.transforms import eval_transform

            self._transform = eval_transform(self.model.config.get("image_size") or 224)
        return self._transform(image)

    def encode_prepared(self, inputs: Sequence[Any]) -> np.ndarray:
        """uint8 (N, bits / 8) codes of inputs made by :meth:`prepare`, in one forward pass."""
        if self.encoder is not None:
            return self.encoder.encode_prepared(inputs)
        import torch

        from hashcli.codes.bits import pack_binary

        batch = torch.stack(list(inputs)).to(self.torch_device)
        with torch.no_grad():
            return pack_binary(self.model.encode(batch).cpu().numpy())

    def search(
        self, codes: np.ndarray, *, k: int | None, radius: int | None = None, top: int | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(distances, rows) per query: the ``k`` nearest, or all within ``radius`` (capped at
        ``top``), ordered by (distance, row)."""
        from hashcli.index.binary_index import faiss_threads

        threads = 1 if len(codes) <= SINGLE_THREAD_MAX_QUERIES else None
        with faiss_threads(threads):
            if radius is not None:
                return self.index.range_search(codes, radius, top=top)
            result = self.index.search(codes, k)
            return [result.neighbours(q) for q in range(len(codes))]

    def describe(
        self,
        codes: np.ndarray,
        found: Sequence[tuple[np.ndarray, np.ndarray]],
        names: Sequence[str],
        *,
        query_paths: Sequence[Path] | None = None,
    ) -> list[QueryResult]:
        """The results of queries ``names`` (their codes and :meth:`search` results), with
        the paths, labels and class names of the rows they name, read from the code store.

        With ``query_paths``, a query's own class is found when it is a database image (its
        row among its results: its own code is at distance 0) or an image of the run's dataset.
        Only the result rows are read: at ten million rows, reading every path and label took
        longer than the rest of a query.
        """
        from hashcli.codes.store import read_rows

        class_names = self.store.class_names
        result_rows = sorted({int(row) for _, rows in found for row in rows})
        row_paths, row_labels = read_rows(self.store.path, result_rows)
        position = {row: i for i, row in enumerate(result_rows)}

        def path_of(row: int) -> str | None:
            return (row_paths[position[row]] or None) if row_paths else None

        def label_of(row: int) -> int | list[int] | None:
            return _label_value(row_labels, position[row]) if row_labels is not None else None

        by_path: dict[Path, int] = {}
        for row in result_rows:
            if (p := path_of(row)) is not None:
                by_path.setdefault(absolute(Path(p)), row)
        paths = list(query_paths or [])
        from_dataset = _dataset_labels(
            self.run_dir, self.store, [q for q in paths if absolute(q) not in by_path]
        )
        results = []
        for q, name in enumerate(names):
            distances, rows = found[q]
            neighbours = [
                Neighbour(
                    rank=rank,
                    row=int(row),
                    path=path_of(int(row)),
                    label=(label := label_of(int(row))),
                    class_name=_name_of(label, class_names),
                    distance=int(dist),
                )
                for rank, (dist, row) in enumerate(zip(distances, rows, strict=True), start=1)
            ]
            qr = QueryResult(name, codes[q].copy(), neighbours)
            if paths:
                own = by_path.get(absolute(paths[q]))
                mine = {n.row for n in neighbours}
                if own is not None and row_labels is not None and own in mine:
                    qr.label, qr.label_source = label_of(own), "database"
                elif paths[q] in from_dataset:
                    qr.label, qr.label_source = from_dataset[paths[q]], "dataset"
            if qr.label is None:
                qr.label_source = None
            qr.class_name = _name_of(qr.label, class_names)
            results.append(qr)
        return results
