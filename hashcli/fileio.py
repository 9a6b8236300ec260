"""Atomic file writes (a temporary file in the target's folder, then ``os.replace``) and the
one timestamp style of every file hashret writes.

An interrupted write (exception, Ctrl-C, crash) never leaves a half-written file under the
target name, and never leaves the temporary file behind when Python gets to clean up.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    ``suffix`` keeps an extension on the temporary name for writers that look at it
    (PIL picks the image format from the name).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # Flush to disk before the rename, so a crash cannot leave an empty file in place.
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def timestamp() -> str:
    """Now, as ISO 8601 in UTC to the second (``2026-01-31T12:00:00+00:00``): the ``created``
    of config.json, code files and index records alike."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
