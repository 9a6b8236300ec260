"""Run folders inside a work directory, and which run is current.

A workdir (``--workdir``, ``$HASHRET_WORKDIR``, else ``./runs``) holds one folder per training
run plus a small text file ``CURRENT`` naming the current run: the latest one trained, or the
one chosen with ``hashret runs use``. Commands that take ``--run`` accept a run name (a folder of
the workdir) or a path to a run folder; without ``--run`` they use the current run.

Run folder layout::

    config.json       the full training configuration (and what happened: skipped images...)
    model.pt          best checkpoint on the validation split
    last.pt           latest checkpoint (model, optimiser, schedule, sampler, RNG) for --resume
    metrics.jsonl     one JSON object per evaluation
    summary.json      final figures (validation and test mAP, timings)
    codes/database.h5 train split encoded with the best model
    codes/queries.h5  test split encoded with the best model
    index/database.faiss (+ .json)  FAISS binary index over codes/database.h5
    model.onnx        model.pt exported for ONNX Runtime (``hashret export``; the query engine)
    uploads/          images added through ``hashret serve`` (and their one-row code files)
    .lock             the run's writer lock (see below)

A run folder is self-contained and relocatable: every path recorded inside it that points
into the run is relative (the index records ``../codes/database.h5``), so a run copied or moved
to another workdir works there without touching anything outside itself.

**The writer lock.** Every command that writes into a run (training, ``index add``, ``index
build`` and ``encode`` into the run's folders) holds the run's lock, ``<run>/.lock``, a
:class:`filelock.FileLock` (an OS-level lock: released when the process dies), so concurrent
writers take turns and none loses another's work. Readers (``query``, ``eval``) take it too
while they read the index and its code store, so that they never see one without the other;
in a run folder they cannot write to they read without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashcli.errors import HashretError
from hashcli.fileio import write_json_atomic, write_text_atomic
from hashcli.paths import default_workdir

if TYPE_CHECKING:
    from hashcli.train.config import TrainConfig

CURRENT_FILE = "CURRENT"
CONFIG_FILE = "config.json"
BEST_CHECKPOINT = "model.pt"
LAST_CHECKPOINT = "last.pt"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
DATABASE_CODES = "codes/database.h5"
QUERY_CODES = "codes/queries.h5"
INDEX_DIR = "index"
INDEX_FILE = "index/database.faiss"
ONNX_MODEL = "model.onnx"
LOCK_FILE = ".lock"

#: How long a writer waits for another writer of the same run before giving up (seconds).
LOCK_TIMEOUT = 600.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def resolve_workdir(workdir: str | Path | None) -> Path:
    """The given workdir, else the default (environment, then ./runs)."""
    return Path(workdir) if workdir is not None else default_workdir()


def check_run_name(name: str) -> str:
    """A run name is one folder name: letters, digits and ``._+-``."""
    if not _NAME_RE.match(name):
        raise HashretError(
            f"invalid run name {name!r}: use letters, digits and . _ + - "
            "(no slashes or spaces), starting with a letter or digit"
        )
    return name


def default_run_name(dataset: str, backbone: str, bits: int) -> str:
    """``<dataset>-<backbone>-<bits>b-<YYYYmmdd-HHMMSS>``."""
    return f"{dataset}-{backbone}-{bits}b-{time.strftime('%Y%m%d-%H%M%S')}"


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def current_run_name(workdir: Path) -> str | None:
    """The name in ``<workdir>/CURRENT``, or None."""
    marker = workdir / CURRENT_FILE
    if not marker.is_file():
        return None
    name = marker.read_text(encoding="utf-8").strip()
    return name or None


def set_current_run(workdir: Path, run_dir: Path) -> None:
    """Make ``run_dir`` (a folder of ``workdir``) the current run."""
    run_dir = Path(run_dir)
    if run_dir.resolve().parent != Path(workdir).resolve():
        raise HashretError(f"{run_dir} is not a run folder of the workdir {workdir}")
    write_text_atomic(Path(workdir) / CURRENT_FILE, run_dir.name + "\n")


def resolve_run(run: str | Path | None, workdir: str | Path | None = None) -> Path:
    """The folder of a run given by name, by path, or (None) the current run of the workdir."""
    wd = resolve_workdir(workdir)
    if run is None:
        name = current_run_name(wd)
        if name is None:
            raise HashretError(
                f"no current run in the workdir {wd}: train one with "
                "`hashret train --dataset digits --backbone tiny --bits 32`, or name one with "
                "--run (see `hashret runs`)"
            )
        candidate = wd / name
        if not is_run_dir(candidate):
            raise HashretError(
                f"the current run {name!r} of {wd} has no {CONFIG_FILE} (deleted or unfinished?); "
                "pick another with `hashret runs use NAME`"
            )
        return candidate
    run_str = str(run)
    as_path = Path(run_str).expanduser()
    candidates = list(dict.fromkeys([wd / run_str, as_path]))
    for candidate in candidates:
        if is_run_dir(candidate):
            return candidate
    where = " nor ".join(str(c) for c in candidates)
    raise HashretError(
        f"no run {run_str!r}: {'neither ' if len(candidates) > 1 else ''}{where} is a run folder "
        f"(with a {CONFIG_FILE}); list the runs with `hashret runs`"
    )


def list_runs(workdir: str | Path | None = None) -> list[Path]:
    """Run folders of the workdir, oldest first (by config.json time)."""
    wd = resolve_workdir(workdir)
    if not wd.is_dir():
        return []
    runs = [p for p in wd.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda p: ((p / CONFIG_FILE).stat().st_mtime, p.name))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HashretError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise HashretError(f"{path} is not valid JSON ({exc})") from None


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json_atomic(run_dir / CONFIG_FILE, config)


def read_config(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / CONFIG_FILE)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """One JSON line per evaluation (appended and flushed; a torn last line is ignored on read)."""
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


@dataclass
class RunInfo:
    """What ``hashret runs`` shows for one run."""

    name: str
    path: Path
    dataset: str | None
    bits: int | None
    backbone: str | None
    epochs: int | None
    best_val_map: float | None
    test_map: float | None
    created: str | None
    current: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def run_info(run_dir: Path, current: bool = False) -> RunInfo:
    config = read_config(run_dir)
    summary = {}
    if (run_dir / SUMMARY_FILE).is_file():
        summary = read_json(run_dir / SUMMARY_FILE)
    return RunInfo(
        name=run_dir.name,
        path=run_dir,
        dataset=config.get("dataset"),
        bits=config.get("bits"),
        backbone=config.get("backbone"),
        epochs=summary.get("epochs_done", config.get("epochs")),
        best_val_map=summary.get("best_val_map"),
        test_map=summary.get("test_map"),
        created=config.get("created"),
        current=current,
    )


def resolve_checkpoint(
    run: str | Path | None = None,
    checkpoint: str | Path | None = None,
    workdir: str | Path | None = None,
) -> tuple[Path, Path | None]:
    """The model checkpoint to use and its run folder (None for a loose ``checkpoint``).

    ``checkpoint`` wins when given; otherwise the best checkpoint (``model.pt``) of ``run``
    (a name or path; None means the current run).
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise HashretError(f"checkpoint {path} does not exist")
        run_dir = path.parent if is_run_dir(path.parent) else None
        return path, run_dir
    run_dir = resolve_run(run, workdir)
    path = run_dir / BEST_CHECKPOINT
    if not path.is_file():
        raise HashretError(
            f"the run {run_dir} has no {BEST_CHECKPOINT} yet (it has not finished an "
            f"evaluation); continue it with `hashret train --resume --run {run_dir.name}`"
        )
    return path, run_dir


def run_file(run_dir: Path, relative: str) -> Path:
    """``run_dir / relative``, which training writes at the end; an error if it is not there."""
    path = run_dir / relative
    if not path.is_file():
        raise HashretError(
            f"the run {run_dir.name} has no {relative} yet (unfinished?); "
            f"continue it with `hashret train --resume --run {run_dir.name}`"
        )
    return path


# --------------------------------------------------------------------------------------------
# one run folder, typed


class _RunFile:
    """A file of the run layout as an attribute: ``RunDir(p).database_codes`` is
    ``p / DATABASE_CODES``."""

    def __init__(self, relative: str) -> None:
        self.relative = relative

    def __get__(self, run: RunDir | None, owner: type | None = None) -> Any:
        return self if run is None else run.path / self.relative


@dataclass(frozen=True)
class RunDir:
    """A run folder: where its files are, its typed config, its lock.

    ``path`` need not exist yet (a run being created). Every path of the layout in the module
    docstring is a property; :meth:`relative` and :meth:`resolve` turn paths into the relative
    form recorded inside the run and back.
    """

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    config_path = _RunFile(CONFIG_FILE)
    best_checkpoint = _RunFile(BEST_CHECKPOINT)
    last_checkpoint = _RunFile(LAST_CHECKPOINT)
    summary_path = _RunFile(SUMMARY_FILE)
    database_codes = _RunFile(DATABASE_CODES)
    query_codes = _RunFile(QUERY_CODES)
    index_file = _RunFile(INDEX_FILE)
    onnx_model = _RunFile(ONNX_MODEL)

    def exists(self) -> bool:
        return is_run_dir(self.path)

    def config(self) -> dict[str, Any]:
        """config.json as saved."""
        return read_config(self.path)

    def train_config(self) -> TrainConfig:
        """The training settings of config.json, defaults filled in for keys not recorded."""
        from hashcli.train.config import TrainConfig

        return TrainConfig.from_dict(self.config().get("train"))

    def file(self, relative: str) -> Path:
        """A file that training writes at the end; an error naming the run if it is missing."""
        return run_file(self.path, relative)

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` lies inside this run folder."""
        return is_under(Path(path), self.path)

    def relative(self, path: str | os.PathLike[str], start: Path | None = None) -> str:
        """How the run records ``path``: relative to ``start`` (default the run folder) when
        it lies inside the run, else absolute."""
        path = Path(path)
        if not self.contains(path):
            return str(absolute(path))
        return os.path.relpath(absolute(path), absolute(start or self.path))

    @contextlib.contextmanager
    def lock(self, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the run's writer lock (see the module docstring); waits up to ``timeout``
        seconds (None: :data:`LOCK_TIMEOUT`) for another writer, then raises HashretError
        (0: fail at once)."""
        with writer_lock(self.path / LOCK_FILE, what=f"the run {self.name}", timeout=timeout):
            yield

    @contextlib.contextmanager
    def reading(self, *, timeout: float | None = None) -> Iterator[None]:
        """The writer lock for a reader: held while it is to be had, skipped where the folder
        is read-only (no writer can be at work there either)."""
        with reading_lock(self.path / LOCK_FILE, what=f"the run {self.name}", timeout=timeout):
            yield


def open_run(run: str | Path | None, workdir: str | Path | None = None) -> RunDir:
    """:func:`resolve_run` as a :class:`RunDir`."""
    return RunDir(resolve_run(run, workdir))


def run_of(path: str | os.PathLike[str]) -> RunDir | None:
    """The run folder holding ``path`` (a file at most two folders deep in it), or None."""
    folder = absolute(Path(path)).parent
    for candidate in (folder, folder.parent):
        if is_run_dir(candidate):
            return RunDir(candidate)
    return None


@contextlib.contextmanager
def writer_lock(lock_path: Path, *, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the file lock ``lock_path`` (a well-kept library's, not a hand-made one), waiting
    up to ``timeout`` seconds (None: :data:`LOCK_TIMEOUT`)."""
    from filelock import FileLock, Timeout

    timeout = LOCK_TIMEOUT if timeout is None else timeout
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        waited = f" (waited {timeout:g} s)" if timeout > 0 else ""
        raise HashretError(
            f"{what} is being written by another hashret process, which holds {lock_path}"
            f"{waited}; try again when that one has finished"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def reading_lock(lock_path: Path, *, what: str, timeout: float | None = None) -> Iterator[None]:
    """:func:`writer_lock`, or nothing where the lock file cannot be created (read-only)."""
    try:
        lock_path.touch(exist_ok=True)
    except OSError:
        yield
        return
    with writer_lock(lock_path, what=what, timeout=timeout):
        yield


def absolute(path: Path) -> Path:
    """``path`` made absolute and normalised, without resolving symbolic links."""
    return Path(os.path.normpath(os.path.abspath(path)))


def is_under(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (or is it), after making both absolute."""
    try:
        absolute(path).relative_to(absolute(folder))
    except ValueError:
        return False
    return True
