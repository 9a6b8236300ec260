"""Image inputs named on the command line: files, folders, globs and list files.

Used by ``hashret encode`` and ``hashret query``. Rules:

- a file is taken as named, whatever its extension (decoding it decides whether it is an image);
- a folder contributes every image below it (extensions in
  :data:`~hashcli.data.images.IMAGE_EXTENSIONS`, hidden files and folders skipped), sorted by
  path;
- a glob pattern (``*``, ``?``, ``[...]``; ``**`` spans folders) contributes the image files it
  matches, sorted by path; folders it matches are not entered;
- a list file names one path per line (blank lines and ``#`` comments ignored); relative entries
  are relative to the list file's folder; its entries follow the other inputs;
- order is kept, and a path seen again (the same file, however spelled: ``a.png``, ``./a.png``,
  ``dir/../a.png``) is dropped, keeping its first spelling;
- a name that matches nothing is an error, not a silent skip.
"""

from __future__ import annotations

import glob
import os
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
        where = "is a folder" if path.is_dir() else "does not exist"
        raise HashretError(f"list file {path} {where}")
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        entries.append(str(entry if entry.is_absolute() else path.parent / entry))
    return entries


def expand_image_inputs(inputs: Sequence[str], list_file: Path | None = None) -> list[Path]:
    """Image paths from files, folders (searched recursively), glob patterns and a list file.

    See the module docstring for the rules. Raises HashretError when nothing is given, when a
    list file is empty, or when a name matches no image.
    """
    listed = read_list_file(list_file) if list_file is not None else []
    if list_file is not None and not listed:
        raise HashretError(f"the list file {list_file} names no images")
    names = list(inputs) + listed
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
    # Same file however spelled (./a.png, dir/../a.png); symlinks are not followed, so two
    # links to one file stay two inputs.
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.normpath(os.path.abspath(path)), path)
    return list(unique.values())


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
