"""Download, verify and extract the official CUB-200-2011, Stanford Dogs and CIFAR-10 archives.

- Resumable: bytes go to ``<archive>.part``; a later run (or a retry after a dropped connection)
  asks for the rest with an HTTP Range request. A server that ignores Range (200 instead of 206)
  or answers with another offset makes the download start again from zero.
- Verified: size and checksum of every archive before it is used (checksums below, with their
  sources). A mismatching download is deleted.
- Extracted safely and atomically: ``tarfile`` with the "data" filter (no absolute paths, no
  ``..``, no links out of the folder, no device files) into a temporary folder beside the target,
  renamed to ``<to>/CUB_200_2011`` or ``<to>/StanfordDogs`` only when every archive is in.
- A connection failure is one :class:`HashretError` line naming the URL (after ``timeout``
  seconds at most when a host does not answer), saying how to place the files by hand.

Progress goes through a callback ``progress(done_bytes, total_bytes_or_None)``, called per
archive (``done`` starts at the bytes already on disk when resuming), so this module needs no
rich.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hashcli import __version__
from hashcli.errors import HashretError

ProgressFn = Callable[[int, "int | None"], None]

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT = 20.0
RETRIES = 3  # resumptions after a connection that dropped mid-way (having sent some bytes)


@dataclass(frozen=True)
class ArchiveSource:
    """One archive to fetch: URL, expected size in bytes and checksum (any may be unknown)."""

    url: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    filename: str | None = None

    @property
    def name(self) -> str:
        """The file name the archive is saved under."""
        return self.filename or os.path.basename(urlsplit(self.url).path) or "download"


@dataclass(frozen=True)
class DatasetArchives:
    """What ``download_dataset`` fetches for one dataset and where it ends up."""

    folder: str  # final folder under ``to``
    expected: tuple[str, ...]  # paths inside ``folder`` that show the dataset is there
    archives: tuple[ArchiveSource, ...]


# Checksums, and where they were confirmed:
# - CUB_200_2011.tgz: MD5 97eceeb196236b17998738112f37df78, the value ContinualAI/avalanche
#   (avalanche/benchmarks/datasets/cub200/cub200.py) checks for the official archive and for its
#   Google Drive mirror (id 1hbzc_P1FuxMkcabkgn9ZKinBwW683j45), and that projects downloading
#   this Caltech URL verify with torchvision's download_and_extract_archive. The size,
#   1,150,585,339 bytes, is the one tensorflow/datasets records for that same mirror
#   (tensorflow_datasets/url_checksums/caltech_birds2011.txt).
# - Stanford Dogs: sizes and SHA-256 from tensorflow/datasets
#   (tensorflow_datasets/url_checksums/stanford_dogs.txt), recorded for these exact URLs.
# - cifar-10-python.tar.gz: MD5 c58f30108f718f92721af3b95e74349a, the value on the dataset's
#   page and in torchvision's CIFAR10 (tgz_md5); 170,498,071 bytes, the Content-Length the
#   official host sends (wget logs and Keras's progress bars in public notebooks).
DOWNLOADS: dict[str, DatasetArchives] = {
    "cub": DatasetArchives(
        folder="CUB_200_2011",
        expected=("images.txt", "images"),
        archives=(
            ArchiveSource(
                url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                size=1_150_585_339,
                md5="97eceeb196236b17998738112f37df78",
                filename="CUB_200_2011.tgz",
            ),
        ),
    ),
    "dogs": DatasetArchives(
        folder="StanfordDogs",
        expected=("Images",),
        archives=(
            ArchiveSource(
                url="http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar",
                size=793_579_520,
                sha256="a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
            ),
            ArchiveSource(
                url="http://vision.stanford.edu/aditya86/ImageNetDogs/annotation.tar",
                size=21_852_160,
                sha256="662ed36f707be6b195c2fda392d8e153e83af28cedc8e2134a649f198def30fd",
            ),
            ArchiveSource(
                url="http://vision.stanford.edu/aditya86/ImageNetDogs/lists.tar",
                size=481_280,
                sha256="34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c",
            ),
        ),
    ),
    "cifar10": DatasetArchives(
        folder="cifar-10-batches-py",
        expected=("batches.meta", "data_batch_1", "test_batch"),
        archives=(
            ArchiveSource(
                url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                size=170_498_071,
                md5="c58f30108f718f92721af3b95e74349a",
            ),
        ),
    ),
}


def download_dataset(
    name: str,
    to: str | Path,
    *,
    progress: ProgressFn | None = None,
    sources: Sequence[ArchiveSource | str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    keep_archives: bool = False,
) -> Path:
    """Fetch, verify and extract dataset ``name`` ("cub", "dogs" or "cifar10") under ``to``.

    Returns the dataset folder (``to/CUB_200_2011``, ``to/StanfordDogs`` or
    ``to/cifar-10-batches-py``), which is then a
    valid ``--data-root`` (as is ``to``). Nothing is fetched when that folder is already there;
    an archive already in ``to`` (placed by hand, or kept from an earlier run) is verified and
    used. ``sources`` replaces the official archives (tests, mirrors); plain URLs are accepted.
    Archives are deleted after a successful extraction unless ``keep_archives``.
    """
    if name not in DOWNLOADS:
        raise HashretError(f"cannot download {name!r}: choose one of {', '.join(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    archives = (
        spec.archives
        if sources is None
        else tuple(s if isinstance(s, ArchiveSource) else ArchiveSource(url=s) for s in sources)
    )
    to = Path(to).expanduser()
    target = to / spec.folder
    if target.exists():
        if all((target / part).exists() for part in spec.expected):
            return target
        raise HashretError(
            f"{target} exists but is incomplete (no {', '.join(spec.expected)}); remove it and "
            "run again"
        )
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HashretError(f"cannot create {to}: {exc.strerror or exc}") from None

    paths = []
    for source in archives:
        path = to / source.name
        if path.exists():
            verify_archive(path, source, delete_on_mismatch=False)
        else:
            part = path.with_name(path.name + ".part")
            fetch(source, part, to=to, progress=progress, timeout=timeout)
            verify_archive(part, source, delete_on_mismatch=True)
            os.replace(part, path)
        paths.append(path)

    _extract_all(paths, to, spec)
    if not keep_archives:
        for path in paths:
            path.unlink(missing_ok=True)
    return target


def _by_hand(source: ArchiveSource, to: Path) -> str:
    return (
        f"download it by hand and put {source.name} in {to}, then run the command again to "
        "verify and extract it"
    )


def fetch(
    source: ArchiveSource,
    part: Path,
    *,
    to: Path,
    progress: ProgressFn | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = RETRIES,
) -> None:
    """Download ``source.url`` into ``part``, resuming from the bytes already there."""
    url = source.url
    drops = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if source.size is not None and have >= source.size:
            if have == source.size:
                return  # complete: verification decides whether it is right
            part.unlink()
            have = 0
        request = urllib.request.Request(url, headers={"User-Agent": f"hashret/{__version__}"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # our .part is not a prefix the server can continue
                part.unlink()
                continue
            raise HashretError(
                f"cannot download {url}: HTTP {exc.code} {exc.reason}; {_by_hand(source, to)}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise HashretError(
                f"cannot download {url} ({reason}); {_by_hand(source, to)}"
            ) from None

        with response:
            start = _resume_offset(response, have)
            length = response.headers.get("Content-Length")
            expected_end = start + int(length) if length and length.isdigit() else source.size
            done = start
            try:
                with part.open("r+b" if start else "wb") as handle:
                    handle.seek(start)
                    handle.truncate()
                    if progress is not None:
                        progress(done, expected_end)
                    while chunk := response.read(CHUNK_BYTES):
                        handle.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, expected_end)
                complete = expected_end is None or done >= expected_end
                failure = None if complete else f"connection closed after {done:,} bytes"
            except (OSError, http.client.HTTPException) as exc:
                failure = str(exc) or type(exc).__name__
        if failure is None:
            return
        drops += 1
        if done == start or drops > retries:  # no progress at all, or given up: keep the .part
            raise HashretError(
                f"cannot download {url} ({failure}); run the command again to resume from "
                f"{part}, or {_by_hand(source, to)}"
            )
        time.sleep(min(0.2 * drops, 2.0))


def _resume_offset(response: http.client.HTTPResponse, have: int) -> int:
    """Where the body starts: ``have`` for a matching 206, else 0 (start again)."""
    if have and response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # "bytes 100-999/1000"
        unit, _, spec = content_range.partition(" ")
        first = spec.partition("-")[0]
        if unit == "bytes" and first.isdigit() and int(first) == have:
            return have
        if not content_range:  # some servers omit it; trust that our Range was honoured
            return have
    return 0


def verify_archive(path: Path, source: ArchiveSource, *, delete_on_mismatch: bool) -> None:
    """Check the size and checksum of ``path`` against ``source``; raise when they differ."""
    problem = None
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        problem = f"{size:,} bytes where {source.size:,} were expected"
    else:
        for algorithm in ("sha256", "md5"):
            expected = getattr(source, algorithm)
            if expected:
                actual = file_digest(path, algorithm)
                if actual != expected.lower():
                    problem = f"{algorithm} {actual}, expected {expected}"
                break
    if problem is None:
        return
    if delete_on_mismatch:
        path.unlink(missing_ok=True)
        raise HashretError(
            f"checksum mismatch for {source.url}: {problem}; the download was deleted, run the "
            "command again"
        )
    raise HashretError(
        f"{path} does not match the official archive ({problem}); remove it and run again"
    )


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_all(paths: Sequence[Path], to: Path, spec: DatasetArchives) -> None:
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=to))
    except OSError as exc:
        raise HashretError(f"cannot extract into {to}: {exc.strerror or exc}") from None
    try:
        for path in paths:
            safe_extract(path, scratch)
        # The CUB archive holds CUB_200_2011/ (and attributes.txt beside it); the Stanford
        # Dogs archives hold Images/, Annotation/ and the lists directly.
        inner = scratch / spec.folder
        dataset_dir = inner if inner.is_dir() else scratch
        missing = [p for p in spec.expected if not (dataset_dir / p).exists()]
        if missing:
            raise HashretError(
                f"the archives ({', '.join(p.name for p in paths)}) do not hold the expected "
                f"layout: no {', '.join(missing)}"
            )
        if dataset_dir is inner:
            for extra in scratch.iterdir():
                if extra != inner and not (to / extra.name).exists():
                    os.rename(extra, to / extra.name)
        os.rename(dataset_dir, to / spec.folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a (compressed) tar archive, refusing members that would land outside."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4 lack extraction filters
                _check_members(tar, destination)
                tar.extractall(destination)
    except tarfile.FilterError as exc:
        raise HashretError(f"refusing to extract {archive}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise HashretError(f"cannot extract {archive}: {exc}") from None


def _check_members(tar: tarfile.TarFile, destination: Path) -> None:  # pragma: no cover
    root = destination.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not target.is_relative_to(root) or member.issym() or member.islnk() or member.isdev():
            raise HashretError(f"refusing to extract {tar.name}: unsafe member {member.name!r}")
