"""Image inputs named on the command line: files, folders, globs and list files.

Used by ``hashret encode`` and ``hashret query``. Order is kept (a folder's images sorted by
path), duplicates are dropped, and a name that matches nothing is an error, not a silent skip.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from hashcli.data.images import is_image_file
from hashcli.data.records import ImageRecord
from hashcli.errors import HashretError

#: Label of an image whose class is not known.
UNKNOWN_LABEL = -1


def _folder_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and is_image_file(p)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_list_file(path: Path) -> list[str]:
    """Paths listed one per line (blank lines and ``#`` comments ignored), relative to the file."""
    if not path.is_file():
        raise HashretError(f"list file {path} does not exist")
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        entries.append(str(entry if entry.is_absolute() else path.parent / entry))
    return entries


def expand_image_inputs(inputs: Sequence[str], list_file: Path | None = None) -> list[Path]:
    """Image paths from files, folders (searched recursively), glob patterns and a list file."""
    names = list(inputs) + (read_list_file(list_file) if list_file is not None else [])
    if not names:
        raise HashretError("no images given: name image files, folders or glob patterns")
    found: list[Path] = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_dir():
            images = _folder_images(path)
            if not images:
                raise HashretError(f"the folder {path} holds no images")
            found.extend(images)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(name):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            images = [m for m in matches if m.is_file() and is_image_file(m)]
            if not images:
                raise HashretError(f"the pattern {name!r} matches no images")
            found.extend(images)
        else:
            raise HashretError(f"{name} does not exist")
    unique = list(dict.fromkeys(found))
    return unique


def records_for_paths(
    paths: Sequence[Path], labels: Sequence[int] | None = None
) -> list[ImageRecord]:
    """Records for loose images (label :data:`UNKNOWN_LABEL` unless given, split "test")."""
    if labels is None:
        labels = [UNKNOWN_LABEL] * len(paths)
    return [
        ImageRecord(path=Path(p), label=int(lab), split="test")
        for p, lab in zip(paths, labels, strict=True)
    ]
