"""Code files: format v1 (HDF5), and ``.npz`` codes from other projects.

This is the only module that imports h5py (lazily, inside the functions that need it). The
format is documented in ``docs/format.md``; in short, an HDF5 file with

* ``codes``: uint8 (N, ceil(bits / 8)), most significant bit first, unused bits 0;
* ``labels`` (optional): int64 (N,) class indices, or uint8 (N, C) multi-hot;
* ``paths`` (optional): UTF-8 strings (N,); ``ids`` (optional): int64 (N,);
* root attributes ``format = "hashret.codes"``, ``format_version = 1``, ``bits`` and
  provenance (``model_fingerprint``, ``backbone``, ``dataset``, ``split``, ``created``).

Writing is atomic (a temporary file in the target's folder, then ``os.replace``); reading checks
every field and names the file and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashcli.codes.bits import code_bytes, pack_binary, pack_bits, padding_mask
from hashcli.errors import FormatError, HashretError
from hashcli.fileio import atomic_path, timestamp

FORMAT_NAME = "hashret.codes"
FORMAT_VERSION = 1
NPZ_SUFFIX = ".npz"

# Rows per HDF5 chunk are chosen so that one chunk of codes is about 1 MiB: large enough for
# fast sequential reads, small enough that block reading does not pull in much extra.
_CHUNK_BYTES = 1 << 20
_RESERVED_ATTRS = ("format", "format_version", "bits")


@dataclass
class CodeFile:
    """Binary codes with their labels and provenance: the content of one code file.

    Attributes:
        codes: uint8 (N, ceil(bits / 8)), packed most significant bit first (see
            :func:`hashcli.codes.pack_bits`); the unused low bits of the last byte are 0.
        bits: code length in bits.
        labels: int64 (N,) class indices (single-label), bool (N, C) multi-hot (multi-label),
            or None when unknown (evaluation then refuses the file).
        paths: N image paths, or None.
        ids: int64 (N,) item ids, or None.
        attrs: provenance and other scalar attributes (str, int, float, bool), for example
            ``model_fingerprint``, ``backbone``, ``dataset``, ``split``, ``created``.

    Arrays are checked and normalised on construction (uint8 multi-hot labels become bool,
    other integer label dtypes become int64); a problem raises :class:`FormatError`.
    """

    codes: np.ndarray
    bits: int
    labels: np.ndarray | None = None
    paths: list[str] | None = None
    ids: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _normalise(self, "CodeFile")

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def multi_label(self) -> bool:
        """True when labels are (N, C) multi-hot."""
        return self.labels is not None and self.labels.ndim == 2

    @property
    def class_names(self) -> list[str] | None:
        """The optional ``class_names`` attribute (a JSON list of strings, label i naming
        class i), or None when absent or malformed."""
        raw = self.attrs.get("class_names")
        if not isinstance(raw, str):
            return None
        try:
            names = json.loads(raw)
        except ValueError:
            return None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
        return None


@dataclass(frozen=True)
class CodeBlock:
    """Rows ``start : start + len(codes)`` of a code file."""

    start: int
    codes: np.ndarray
    labels: np.ndarray | None


def _normalise(cf: CodeFile, where: str) -> None:
    """Check shapes, dtypes and bit count; convert labels and ids to their canonical dtypes."""
    bits = cf.bits
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise FormatError(f"{where}: bits must be an integer, got {bits!r}")
    if bits < 1:
        raise FormatError(f"{where}: bits must be at least 1, got {bits}")
    cf.bits = bits = int(bits)
    nbytes = code_bytes(bits)
    codes = np.asarray(cf.codes)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != nbytes:
        raise FormatError(
            f"{where}: codes must be uint8 of shape (N, {nbytes}) for {bits} bits, "
            f"got {codes.dtype} {codes.shape}"
        )
    mask = padding_mask(bits)
    if mask and len(codes) and np.any(codes[:, -1] & mask):
        raise FormatError(
            f"{where}: the {nbytes * 8 - bits} unused low bits of the last byte of each code "
            "must be 0 (pack with numpy.packbits, most significant bit first)"
        )
    cf.codes = codes
    n = len(codes)

    if cf.labels is not None:
        labels = np.asarray(cf.labels)
        if labels.ndim == 1 and (
            np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_
        ):
            if labels.dtype == np.uint64 and len(labels) and labels.max() > np.iinfo(np.int64).max:
                raise FormatError(f"{where}: labels do not fit in int64")
            labels = labels.astype(np.int64, copy=False)
        elif labels.ndim == 2 and labels.dtype in (np.bool_, np.uint8):
            if labels.dtype == np.uint8:
                if labels.size and labels.max() > 1:
                    raise FormatError(f"{where}: multi-hot labels must hold only 0 and 1")
                labels = labels.astype(np.bool_)
        else:
            raise FormatError(
                f"{where}: labels must be int64 (N,) class indices or uint8/bool (N, C) "
                f"multi-hot, got {labels.dtype} {labels.shape}"
            )
        if len(labels) != n:
            raise FormatError(f"{where}: {len(labels)} labels for {n} codes")
        cf.labels = labels

    if cf.paths is not None:
        paths = [str(p) for p in cf.paths]
        if len(paths) != n:
            raise FormatError(f"{where}: {len(paths)} paths for {n} codes")
        cf.paths = paths

    if cf.ids is not None:
        ids = np.asarray(cf.ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or ids.dtype == np.bool_:
            raise FormatError(f"{where}: ids must be int64 (N,), got {ids.dtype} {ids.shape}")
        if len(ids) != n:
            raise FormatError(f"{where}: {len(ids)} ids for {n} codes")
        cf.ids = ids.astype(np.int64, copy=False)

    attrs = {}
    for key, value in dict(cf.attrs).items():
        if value is None:
            continue
        if key in _RESERVED_ATTRS:
            raise FormatError(f"{where}: attribute {key!r} is set by hashret itself")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (str, int, float, bool)):
            raise FormatError(
                f"{where}: attribute {key!r} must be a str, int, float or bool, "
                f"got {type(value).__name__}"
            )
        attrs[str(key)] = value
    cf.attrs = attrs


def _rows_or_fill(values: np.ndarray | None, n: int, like: np.ndarray, fill: Any) -> np.ndarray:
    """``values``, or ``n`` rows of ``fill`` shaped like ``like``'s rows."""
    if values is not None:
        return values
    return np.full((n, *like.shape[1:]), fill, dtype=like.dtype)


def concatenate(
    first: CodeFile, second: CodeFile, *, names: tuple[str, str] = ("", "")
) -> CodeFile:
    """``first``'s rows, then ``second``'s: one code file (``first``'s attributes).

    Where only one side has labels, paths or ids, the other side's rows get "unknown"
    (label -1 or no label, path "", id -1). ``names`` name the two sides in errors.
    Raises HashretError for other bit counts, single- against multi-label labels, other
    label columns, or other ``class_names`` (the labels would mean other classes).
    """
    one, two = names[0] or "the first code file", names[1] or "the second code file"
    if first.bits != second.bits:
        raise HashretError(
            f"{two} holds {second.bits}-bit codes but {one} holds {first.bits}-bit codes"
        )
    if first.labels is not None and second.labels is not None:
        if first.multi_label != second.multi_label or (
            first.multi_label and first.labels.shape[1] != second.labels.shape[1]
        ):
            raise HashretError(
                f"{two} has {'multi' if second.multi_label else 'single'}-label labels that do "
                f"not fit the {'multi' if first.multi_label else 'single'}-label labels of {one}"
            )
        names_one, names_two = first.class_names, second.class_names
        if names_one is not None and names_two is not None and names_one != names_two:
            raise HashretError(
                f"{two} labels its codes with other classes than {one} (the class_names "
                "differ); its labels would mean other classes there"
            )
    labels = None
    if first.labels is not None or second.labels is not None:
        like = first.labels if first.labels is not None else second.labels
        fill = False if like.ndim == 2 else -1
        labels = np.concatenate(
            [
                _rows_or_fill(first.labels, len(first), like, fill),
                _rows_or_fill(second.labels, len(second), like, fill),
            ]
        )
    paths = None
    if first.paths is not None or second.paths is not None:
        paths = (first.paths or [""] * len(first)) + (second.paths or [""] * len(second))
    ids = None
    if first.ids is not None or second.ids is not None:
        like = first.ids if first.ids is not None else second.ids
        ids = np.concatenate(
            [
                _rows_or_fill(first.ids, len(first), like, -1),
                _rows_or_fill(second.ids, len(second), like, -1),
            ]
        )
    attrs = dict(first.attrs)
    if "class_names" not in attrs and second.class_names is not None:
        attrs["class_names"] = second.attrs["class_names"]
    return CodeFile(
        codes=np.concatenate([first.codes, second.codes]),
        bits=first.bits,
        labels=labels,
        paths=paths,
        ids=ids,
        attrs=attrs,
    )


# --------------------------------------------------------------------------------------------
# writing


def _chunk_rows(n: int, row_bytes: int) -> int:
    return max(1, min(n, _CHUNK_BYTES // max(1, row_bytes)))


def _write_datasets(h5file: Any, cf: CodeFile) -> None:
    import h5py

    n = len(cf)

    def put(name: str, data: Any, row_bytes: int, **kwargs: Any) -> None:
        chunks = None
        if n:
            # Chunk along rows only, so a block of rows is a few contiguous chunks.
            shape_rest = tuple(np.shape(data)[1:])
            chunks = (_chunk_rows(n, row_bytes), *shape_rest)
        h5file.create_dataset(name, data=data, chunks=chunks, **kwargs)

    put("codes", cf.codes, cf.codes.shape[1])
    if cf.labels is not None:
        if cf.labels.ndim == 2:
            put("labels", cf.labels.astype(np.uint8), cf.labels.shape[1])
        else:
            put("labels", cf.labels, 8)
    if cf.ids is not None:
        put("ids", cf.ids, 8)
    if cf.paths is not None:
        string = h5py.string_dtype("utf-8")
        if n:
            put("paths", np.array(cf.paths, dtype=object), 64, dtype=string)
        else:
            h5file.create_dataset("paths", shape=(0,), dtype=string)
    h5file.attrs["format"] = FORMAT_NAME
    h5file.attrs["format_version"] = np.int64(FORMAT_VERSION)
    h5file.attrs["bits"] = np.int64(cf.bits)
    for key, value in cf.attrs.items():
        h5file.attrs[key] = value


def write_codes(path: str | os.PathLike[str], codes: CodeFile) -> Path:
    """Write a code file (format v1, HDF5) atomically.

    The data go to a temporary file in the target's folder, which is renamed over ``path``
    only once complete: an interrupted or failed write never leaves a partial file under the
    target name, and no temporary file is left behind. ``created`` (UTC, ISO 8601) is added to
    the attributes when absent.

    Args:
        path: target file (conventionally ``.h5``); its folder must exist.
        codes: what to write.

    Returns:
        The target path.
    """
    import h5py

    target = Path(path)
    if target.suffix.lower() == NPZ_SUFFIX:
        raise HashretError(f"{target}: hashret writes HDF5 code files (.h5), not .npz")
    if not target.parent.is_dir():
        raise HashretError(f"cannot write {target}: folder {target.parent} does not exist")
    attrs = dict(codes.attrs)
    if "created" not in attrs:
        attrs["created"] = timestamp()
    # A checked copy: the caller's object is left as it was (fields may have been reassigned).
    codes = dataclasses.replace(codes, attrs=attrs)

    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5file:
        _write_datasets(h5file, codes)
    return target


# --------------------------------------------------------------------------------------------
# reading


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise HashretError(f"code file {path} does not exist")
    if not path.is_file():
        raise HashretError(f"{path} is not a file")


def _open_header(path: Path) -> tuple[Any, int]:
    """Open an HDF5 code file and check its attributes; returns (open h5py.File, bits)."""
    import h5py

    if not h5py.is_hdf5(path):
        raise FormatError(
            f"{path} is not an HDF5 file; expected a hashret code file (.h5) or a .npz file"
        )
    h5file = h5py.File(path, "r")
    try:
        attrs = h5file.attrs
        fmt = _scalar(attrs.get("format"))
        if fmt != FORMAT_NAME:
            raise FormatError(
                f"{path}: attribute 'format' is {fmt!r}, expected {FORMAT_NAME!r} "
                "(not a hashret code file)"
            )
        version = _scalar(attrs.get("format_version"))
        if isinstance(version, bool) or not isinstance(version, int):
            raise FormatError(f"{path}: attribute 'format_version' must be an integer")
        if version != FORMAT_VERSION:
            hint = "; upgrade hashret" if version > FORMAT_VERSION else ""
            raise FormatError(
                f"{path}: format_version {version} is not supported "
                f"(this hashret reads version {FORMAT_VERSION}){hint}"
            )
        bits = _scalar(attrs.get("bits"))
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise FormatError(f"{path}: attribute 'bits' must be a positive integer, got {bits!r}")
        if "codes" not in h5file or not isinstance(h5file["codes"], h5py.Dataset):
            raise FormatError(f"{path}: dataset 'codes' is missing")
        codes = h5file["codes"]
        nbytes = code_bytes(bits)
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != nbytes:
            raise FormatError(
                f"{path}: dataset 'codes' must be uint8 (N, {nbytes}) for {bits} bits, "
                f"got {codes.dtype} {codes.shape}"
            )
        if "labels" in h5file:
            labels = h5file["labels"]
            ok_1d = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
            ok_2d = labels.ndim == 2 and labels.dtype in (np.uint8, np.bool_)
            if not (ok_1d or ok_2d) or labels.dtype == np.bool_ and labels.ndim == 1:
                raise FormatError(
                    f"{path}: dataset 'labels' must be int64 (N,) or uint8 (N, C) multi-hot, "
                    f"got {labels.dtype} {labels.shape}"
                )
            if labels.shape[0] != codes.shape[0]:
                raise FormatError(f"{path}: {labels.shape[0]} labels for {codes.shape[0]} codes")
    except BaseException:
        h5file.close()
        raise
    return h5file, bits


def _read_h5(path: Path) -> CodeFile:
    import h5py

    h5file, bits = _open_header(path)
    with h5file:
        codes = h5file["codes"][()]
        labels = h5file["labels"][()] if "labels" in h5file else None
        ids = h5file["ids"][()] if "ids" in h5file else None
        paths = None
        if "paths" in h5file:
            dset = h5file["paths"]
            if h5py.check_string_dtype(dset.dtype) is None or dset.ndim != 1:
                raise FormatError(f"{path}: dataset 'paths' must hold UTF-8 strings (N,)")
            paths = list(dset.asstr()[()])
        attrs = {
            key: _scalar(value) for key, value in h5file.attrs.items() if key not in _RESERVED_ATTRS
        }
    attrs = {k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool))}
    return CodeFile(codes, bits, labels=labels, paths=paths, ids=ids, attrs=attrs)


def _read_npz(path: Path) -> CodeFile:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path} is not a readable .npz file ({exc})") from None
    with archive:
        if "codes" not in archive.files:
            raise FormatError(f"{path}: no 'codes' array (found: {', '.join(archive.files)})")
        try:
            codes = archive["codes"]
            entries = {
                name: archive[name]
                for name in ("bits", "labels", "paths", "ids")
                if name in archive.files
            }
        except ValueError as exc:  # object arrays need pickle, which is refused on purpose
            raise FormatError(f"{path}: unreadable array ({exc})") from None
    if codes.ndim != 2:
        raise FormatError(f"{path}: 'codes' must be 2-D, got shape {codes.shape}")

    if "bits" in entries:
        bits = _scalar(entries["bits"])
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise FormatError(f"{path}: 'bits' must be a positive integer, got {bits!r}")
        nbytes = code_bytes(bits)
        if codes.dtype != np.uint8 or codes.shape[1] != nbytes:
            raise FormatError(
                f"{path}: with a 'bits' entry, 'codes' must be packed uint8 (N, {nbytes}) for "
                f"{bits} bits, got {codes.dtype} {codes.shape}"
            )
        packed = codes
    else:
        if not (np.issubdtype(codes.dtype, np.number) or codes.dtype == np.bool_):
            raise FormatError(f"{path}: 'codes' must be numeric, got {codes.dtype}")
        bits = codes.shape[1]
        if codes.dtype == np.bool_:
            packed = pack_binary(codes)
        elif codes.size and np.all((codes == 1) | (codes == -1)):
            packed = pack_bits(codes.astype(np.float32))
        elif np.all((codes == 0) | (codes == 1)):
            packed = pack_binary(codes)
        else:
            bad = codes[(codes != 0) & (codes != 1) & (codes != -1)]
            found = f"e.g. {bad.flat[0]!r}" if bad.size else "a mix of -1, 0 and 1"
            raise FormatError(
                f"{path}: unpacked 'codes' must hold either only -1/+1 or only 0/1 "
                f"(found {found}); packed uint8 codes need a 'bits' entry"
            )

    labels = entries.get("labels")
    if labels is not None and labels.ndim == 2 and labels.dtype not in (np.bool_, np.uint8):
        # Other projects store multi-hot labels as int or float 0/1 matrices.
        if not np.issubdtype(labels.dtype, np.number) or not np.all((labels == 0) | (labels == 1)):
            raise FormatError(f"{path}: 2-D 'labels' must be a 0/1 multi-hot matrix")
        labels = labels == 1

    paths = None
    if "paths" in entries:
        if entries["paths"].dtype.kind not in "US" or entries["paths"].ndim != 1:
            raise FormatError(f"{path}: 'paths' must be a 1-D string array")
        paths = [str(p) for p in entries["paths"]]
    return CodeFile(packed, bits, labels=labels, paths=paths, ids=entries.get("ids"))


def _where(path: Path, exc: FormatError) -> FormatError:
    # CodeFile's own checks say "CodeFile: ..."; from a reader, name the file instead.
    message = str(exc)
    if message.startswith("CodeFile: "):
        message = f"{path}: {message[len('CodeFile: ') :]}"
    return FormatError(message)


def read_codes(path: str | os.PathLike[str]) -> CodeFile:
    """Read a code file: HDF5 format v1, or ``.npz`` (by suffix).

    A ``.npz`` file holds ``codes`` as (N, bits) values in {-1, +1} or in {0, 1} (bool too), or
    packed uint8 (N, ceil(bits / 8)) together with a scalar ``bits``; optionally ``labels``
    (int (N,) or 0/1 (N, C)), ``paths`` (strings) and ``ids``.

    Raises:
        HashretError: the file does not exist.
        FormatError: the file is not a valid code file; the message says what was expected.
    """
    path = Path(path)
    _check_exists(path)
    try:
        if path.suffix.lower() == NPZ_SUFFIX:
            return _read_npz(path)
        return _read_h5(path)
    except FormatError as exc:
        raise _where(path, exc) from None


@dataclass(frozen=True)
class StoreHeader:
    """What a code file says about itself without reading its rows (see :func:`read_header`)."""

    path: Path
    bits: int
    n: int
    attrs: dict[str, Any]
    has_labels: bool
    has_paths: bool
    multi_label: bool = False

    @property
    def class_names(self) -> list[str] | None:
        """The ``class_names`` attribute, as :attr:`CodeFile.class_names` reads it."""
        empty = np.zeros((0, code_bytes(self.bits)), np.uint8)
        return CodeFile(empty, self.bits, attrs=self.attrs).class_names


def read_header(path: str | os.PathLike[str]) -> StoreHeader:
    """Bits, row count and attributes of a code file, checked, without reading any row (a
    ``.npz`` file is read whole: it has no header)."""
    path = Path(path)
    _check_exists(path)
    if path.suffix.lower() == NPZ_SUFFIX:
        whole = read_codes(path)
        return StoreHeader(
            path,
            whole.bits,
            len(whole),
            whole.attrs,
            whole.labels is not None,
            bool(whole.paths),
            whole.multi_label,
        )
    try:
        h5file, bits = _open_header(path)
    except FormatError as exc:
        raise _where(path, exc) from None
    with h5file:
        attrs = {
            key: _scalar(value) for key, value in h5file.attrs.items() if key not in _RESERVED_ATTRS
        }
        header = StoreHeader(
            path,
            bits,
            int(h5file["codes"].shape[0]),
            {k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool))},
            "labels" in h5file,
            "paths" in h5file,
            "labels" in h5file and h5file["labels"].ndim == 2,
        )
    return header


def read_rows(
    path: str | os.PathLike[str], rows: Sequence[int]
) -> tuple[list[str] | None, np.ndarray | None]:
    """(paths, labels) of the given rows of a code file, in the order given (None when the
    file has none); an HDF5 file reads only those rows, so that looking up the results of a
    query costs the same for a thousand rows as for ten million."""
    path = Path(path)
    rows = np.asarray(rows, dtype=np.int64)
    if path.suffix.lower() == NPZ_SUFFIX:
        whole = read_codes(path)
        paths = [whole.paths[r] for r in rows] if whole.paths else None
        return paths, None if whole.labels is None else whole.labels[rows]
    import h5py

    unique, back = np.unique(rows, return_inverse=True)  # h5py reads increasing indices
    with h5py.File(path, "r") as h5file:
        paths = labels = None
        if "paths" in h5file and len(unique):
            read = h5file["paths"].asstr()[unique]
            paths = [read[i] for i in back]
        elif "paths" in h5file:
            paths = []
        if "labels" in h5file:
            data = h5file["labels"]
            read = data[unique] if len(unique) else np.zeros((0, *data.shape[1:]), data.dtype)
            labels = read[back]
            labels = labels.astype(np.bool_) if labels.ndim == 2 else labels.astype(np.int64)
    return paths, labels


def read_row_codes(path: str | os.PathLike[str], rows: Sequence[int]) -> np.ndarray:
    """uint8 (len(rows), bytes) codes of the given rows, in the order given (HDF5 reads only
    those rows)."""
    path = Path(path)
    order = np.asarray(rows, dtype=np.int64)
    if path.suffix.lower() == NPZ_SUFFIX:
        return read_codes(path).codes[order]
    import h5py

    unique, back = np.unique(order, return_inverse=True)
    with h5py.File(path, "r") as h5file:
        data = h5file["codes"]
        read = data[unique] if len(unique) else np.zeros((0, data.shape[1]), np.uint8)
    return read[back]


def iter_code_blocks(path: str | os.PathLike[str], block_rows: int = 65536) -> Iterator[CodeBlock]:
    """Read a code file in blocks of ``block_rows`` rows (HDF5 reads only those rows).

    Yields:
        :class:`CodeBlock` (start row, uint8 (n, ceil(bits / 8)) codes, labels or None), in
        row order; nothing for an empty file.
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be at least 1, got {block_rows}")
    path = Path(path)
    _check_exists(path)
    if path.suffix.lower() == NPZ_SUFFIX:
        whole = read_codes(path)
        for start in range(0, len(whole), block_rows):
            stop = start + block_rows
            labels = None if whole.labels is None else whole.labels[start:stop]
            yield CodeBlock(start, whole.codes[start:stop], labels)
        return
    h5file, bits = _open_header(path)
    with h5file:
        codes = h5file["codes"]
        labels = h5file["labels"] if "labels" in h5file else None
        mask = padding_mask(bits)
        for start in range(0, codes.shape[0], block_rows):
            stop = min(start + block_rows, codes.shape[0])
            block = codes[start:stop]
            if mask and np.any(block[:, -1] & mask):
                raise FormatError(
                    f"{path}: rows {start}-{stop - 1}: the unused low bits of the last byte "
                    "must be 0"
                )
            block_labels = None
            if labels is not None:
                block_labels = labels[start:stop]
                if block_labels.ndim == 2:
                    if block_labels.size and block_labels.max() > 1:
                        raise FormatError(f"{path}: multi-hot labels must hold only 0 and 1")
                    block_labels = block_labels.astype(np.bool_)
                else:
                    block_labels = block_labels.astype(np.int64, copy=False)
            yield CodeBlock(start, block, block_labels)
