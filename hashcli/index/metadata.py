"""The JSON record saved next to every index file, and the checks made on it.

An index saved at ``PATH`` is two files: ``PATH``, FAISS's own binary index format
(``faiss.write_index_binary``), and ``PATH.json``, this record::

    {"format": "hashret.index", "format_version": 1, "index_type": "flat", "params": {},
     "bits": 48, "code_bytes": 6, "padded_bytes": 8, "ntotal": 5994,
     "sources": [{"path": "runs/cub-48/codes/train.h5", "rows": 5994}],
     "model_fingerprint": "...", "created": "2025-01-01T00:00:00+00:00",
     "faiss_version": "1.15.1", "data_bytes": 48045}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hashcli.codes.bits import code_bytes
from hashcli.errors import FormatError, HashretError
from hashcli.fileio import timestamp, write_json_atomic
from hashcli.index.params import INDEX_TYPES

FORMAT_NAME = "hashret.index"
FORMAT_VERSION = 1
REBUILD_HINT = "rebuild it with `hashret index`"


def metadata_path(path: str | os.PathLike[str]) -> Path:
    """Where the JSON record of the index at ``path`` lives: ``path`` + ``.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


@dataclass
class IndexMetadata:
    """What an index holds and where it came from; ``path`` is where it was read from."""

    index_type: str
    bits: int
    padded_bytes: int
    params: dict[str, int] = field(default_factory=dict)
    ntotal: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    model_fingerprint: str | None = None
    created: str = field(default_factory=timestamp)
    faiss_version: str | None = None
    data_bytes: int | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def code_bytes(self) -> int:
        """Bytes per code before padding."""
        return code_bytes(self.bits)

    @property
    def source_rows(self) -> int:
        """Rows recorded for all source code files together (equals ``ntotal``)."""
        return sum(int(s["rows"]) for s in self.sources)

    def _where(self) -> str:
        return f"the index {self.path}" if self.path else "the index"

    def check_compatible(self, bits: int, model_fingerprint: str | None = None) -> None:
        """Raise HashretError unless codes of ``bits`` bits from this model can search here.

        A fingerprint is compared only when both sides have one (an index built from bare
        arrays records none).
        """
        if int(bits) != self.bits:
            raise HashretError(
                f"{self._where()} holds {self.bits}-bit codes but the query codes have {bits} "
                f"bits; {REBUILD_HINT} from codes of the same model"
            )
        if (
            model_fingerprint
            and self.model_fingerprint
            and model_fingerprint != self.model_fingerprint
        ):
            raise HashretError(
                f"{self._where()} was built from codes of another model (fingerprint "
                f"{self.model_fingerprint[:12]}, the query model is {model_fingerprint[:12]}); "
                f"{REBUILD_HINT} for this model"
            )

    def add_source(self, source_path: str | os.PathLike[str] | None, rows: int) -> None:
        """Record ``rows`` more rows from ``source_path`` (extends the last entry if the same)."""
        path = None if source_path is None else str(source_path)
        if self.sources and self.sources[-1]["path"] == path:
            self.sources[-1]["rows"] = int(self.sources[-1]["rows"]) + int(rows)
        elif rows:
            self.sources.append({"path": path, "rows": int(rows)})
        self.ntotal += int(rows)

    def to_json(self) -> dict[str, Any]:
        """The record as saved: format name and version first."""
        record = asdict(self)
        del record["path"]
        head = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
        head.update(index_type=self.index_type, bits=self.bits, code_bytes=self.code_bytes)
        return {**head, **record}

    @classmethod
    def from_json(cls, record: object, path: Path) -> IndexMetadata:
        """Parse and check a record read from ``path``; FormatError naming the file otherwise."""

        def bad(why: str) -> FormatError:
            return FormatError(f"{path} is not a valid hashret index record: {why}; {REBUILD_HINT}")

        if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
            raise bad(f"expected a JSON object with format {FORMAT_NAME!r}")
        version = record.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise FormatError(
                f"{path} has index format version {version!r}; this hashret reads version "
                f"{FORMAT_VERSION}" + ("; upgrade hashret" if newer else f"; {REBUILD_HINT}")
            )
        try:
            meta = cls(
                index_type=str(record["index_type"]),
                bits=int(record["bits"]),
                padded_bytes=int(record["padded_bytes"]),
                params={str(k): int(v) for k, v in dict(record["params"]).items()},
                ntotal=int(record["ntotal"]),
                sources=[{"path": s["path"], "rows": int(s["rows"])} for s in record["sources"]],
                model_fingerprint=record.get("model_fingerprint"),
                created=str(record.get("created", "")),
                faiss_version=record.get("faiss_version"),
                data_bytes=None if record.get("data_bytes") is None else int(record["data_bytes"]),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"missing or malformed field ({exc})") from None
        if meta.index_type not in INDEX_TYPES:
            raise bad(f"unknown index type {meta.index_type!r}")
        if meta.bits < 1 or meta.padded_bytes < meta.code_bytes:
            raise bad(
                f"inconsistent code size (bits={meta.bits}, padded_bytes={meta.padded_bytes})"
            )
        if meta.source_rows != meta.ntotal:
            raise bad(f"its sources hold {meta.source_rows} rows but ntotal is {meta.ntotal}")
        return meta


def read_index_metadata(path: str | os.PathLike[str]) -> IndexMetadata:
    """The checked JSON record of the index saved at ``path`` (no FAISS needed, cheap)."""
    path = Path(path)
    record_path = metadata_path(path)
    if not path.exists():
        raise HashretError(f"no index at {path}; build one with `hashret index`")
    if not record_path.is_file():
        raise FormatError(f"{path} has no record {record_path.name} next to it; {REBUILD_HINT}")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{record_path} is not readable JSON ({exc}); {REBUILD_HINT}") from None
    meta = IndexMetadata.from_json(record, record_path)
    meta.path = path
    return meta


def write_metadata(meta: IndexMetadata, path: Path) -> None:
    """Write ``meta`` to ``metadata_path(path)`` atomically."""
    write_json_atomic(metadata_path(path), meta.to_json())
