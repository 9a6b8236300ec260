"""Run folders are self-contained and relocatable, and their writers take turns.

Oracles: the bytes of every file of the original run before and after (nothing outside the
copy may change), row counts and codes written by hand, and the codes each added file holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train.test_loop import small_config
from workflows.test_query import BITS, RUN_NAME, make_fake_run, tree_snapshot

from hashcli.codes import CodeFile, read_codes, write_codes
from hashcli.errors import HashretError
from hashcli.index import BinaryIndex, read_index_metadata
from hashcli.workflows import runs
from hashcli.workflows.encode import encode_to_file
from hashcli.workflows.evaluate import evaluate_run
from hashcli.workflows.index import add_to_index, build_index
from hashcli.workflows.query import query_images
from hashcli.workflows.runs import RunDir
from hashcli.workflows.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained for one epoch on the fake run's folder dataset (train/ and test/)."""
    root = tmp_path_factory.mktemp("trained")
    fake = make_fake_run(root)
    config = small_config(
        fake.data_root, dataset="folder", bits=BITS, epochs=1, batch_size=6, val_fraction=0.0
    )
    result = train(config, workdir=root / "workdir-a", run="original")
    assert result.finished
    return root, result.run_dir, fake


def index_codes(index_path: Path) -> np.ndarray:
    """Every code the FAISS index holds, unpadded: uint8 (ntotal, bits / 8)."""
    index = BinaryIndex.load(index_path)
    raw = index._index.reconstruct_n(0, index.ntotal)  # IndexBinaryFlat stores the codes
    return np.asarray(raw, dtype=np.uint8).reshape(index.ntotal, -1)[:, : BITS // 8]


def new_codes(path: Path, fingerprint: str, first: int, n: int) -> CodeFile:
    """``n`` distinct codes (first, first + 1, ... as 16-bit numbers) with paths naming them."""
    values = np.arange(first, first + n, dtype=">u2")
    codes = values.view(np.uint8).reshape(n, 2)
    code_file = CodeFile(
        codes,
        BITS,
        paths=[f"{path.stem}-{i}.png" for i in range(n)],
        attrs={"model_fingerprint": fingerprint},
    )
    write_codes(path, code_file)
    return code_file


def test_training_records_the_code_store_relative_to_the_index(trained):
    _, run_dir, _ = trained
    meta = read_index_metadata(run_dir / runs.INDEX_FILE)
    assert meta.sources[0]["path"] == os.path.join("..", "codes", "database.h5")
    attrs = read_codes(run_dir / runs.DATABASE_CODES).attrs
    assert attrs["checkpoint"] == "model.pt" and attrs["run"] == "original"


def test_a_copied_run_queries_evaluates_and_takes_additions_on_its_own(trained, tmp_path):
    root, original, fake = trained
    before = tree_snapshot(original)
    copy = Path(shutil.copytree(original, tmp_path / "workdir-b" / "copied"))
    workdir = tmp_path / "workdir-b"
    n_before = len(read_codes(copy / runs.DATABASE_CODES))

    report = query_images([str(fake.photos[0])], run="copied", workdir=workdir, top=3)
    assert report.index == copy / runs.INDEX_FILE
    assert report.store == copy / runs.DATABASE_CODES
    assert report.checkpoint == copy / runs.BEST_CHECKPOINT

    evaluation = evaluate_run(run="copied", workdir=workdir)
    assert evaluation.database == copy / runs.DATABASE_CODES

    added = tmp_path / "new.h5"
    encode_to_file([str(p) for p in fake.photos], run="copied", workdir=workdir, out=added)
    summary = add_to_index(added, run="copied", workdir=workdir)
    assert summary.store == copy / runs.DATABASE_CODES and summary.rows == range(
        n_before, n_before + 2
    )
    assert len(read_codes(copy / runs.DATABASE_CODES)) == n_before + 2
    assert BinaryIndex.load(copy / runs.INDEX_FILE).ntotal == n_before + 2

    assert tree_snapshot(original) == before  # byte for byte


def test_a_moved_run_still_works(trained, tmp_path):
    _, original, fake = trained
    moved = Path(shutil.copytree(original, tmp_path / "elsewhere" / "deep" / "run"))
    report = query_images([str(fake.db_paths[0])], run=str(moved), top=1)
    assert report.store == moved / runs.DATABASE_CODES and report.results[0].neighbours


def test_an_older_run_that_names_its_store_by_absolute_path_is_copied_safely(tmp_path):
    """Runs made before relative paths record the original's codes/database.h5 by absolute
    path: a copy reads (and extends) its own file, never the original's."""
    fake = make_fake_run(tmp_path)
    recorded = read_index_metadata(fake.index).sources[0]["path"]
    assert Path(recorded).is_absolute()  # the older form
    before = tree_snapshot(fake.run_dir)
    copy = Path(shutil.copytree(fake.run_dir, tmp_path / "other" / RUN_NAME))
    added = new_codes(tmp_path / "new.h5", fake.model.fingerprint(), 40000, 3)

    summary = add_to_index(tmp_path / "new.h5", run=str(copy))
    assert summary.store == copy / runs.DATABASE_CODES and summary.ntotal == 21
    store = read_codes(copy / runs.DATABASE_CODES)
    np.testing.assert_array_equal(store.codes[18:], added.codes)
    np.testing.assert_array_equal(index_codes(copy / runs.INDEX_FILE), store.codes)
    assert tree_snapshot(fake.run_dir) == before


def test_a_run_index_that_reads_a_file_outside_the_run_is_refused(tmp_path):
    fake = make_fake_run(tmp_path)
    outside = tmp_path / "loose.h5"
    shutil.copy(fake.store, outside)
    build_index(outside, out=fake.index)  # a run's index over a file elsewhere
    with pytest.raises(HashretError, match="outside the run"):
        query_images([str(fake.photos[0])], run=RUN_NAME, workdir=fake.workdir)
    new_codes(tmp_path / "new.h5", fake.model.fingerprint(), 0, 1)
    before = tree_snapshot(tmp_path)
    with pytest.raises(HashretError, match="outside the run"):
        add_to_index(tmp_path / "new.h5", run=RUN_NAME, workdir=fake.workdir)
    assert tree_snapshot(tmp_path) == before


def test_a_store_of_another_model_is_refused(tmp_path):
    fake = make_fake_run(tmp_path)
    store = read_codes(fake.store)
    store.attrs["model_fingerprint"] = "00000000-0000000000000000"
    write_codes(fake.store, store)
    with pytest.raises(HashretError, match="encoded by the model 00000000"):
        query_images([str(fake.photos[0])], run=RUN_NAME, workdir=fake.workdir)


def test_concurrent_additions_all_land(tmp_path):
    """Four `hashret index add` processes started together: every row lands once, and the
    index and its code store hold the same codes in the same order."""
    fake = make_fake_run(tmp_path)
    sizes = [3, 5, 2, 4]
    files = {}
    for i, n in enumerate(sizes):
        path = tmp_path / f"add{i}.h5"
        files[path.stem] = new_codes(path, fake.model.fingerprint(), 1000 * (i + 1), n)
    env = {**os.environ, "HASHRET_WORKDIR": str(fake.workdir)}
    env.pop("HASHRET_DEBUG", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hashcli",
                "index",
                "add",
                str(tmp_path / f"{stem}.h5"),
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for stem in files
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]

    total = 18 + sum(sizes)
    # One after the other: each saw the rows of those before it, and the blocks tile the end.
    blocks = sorted((r["first_row"], r["last_row"], r["ntotal"]) for r in reports)
    assert blocks[0][0] == 18 and blocks[-1][2] == total
    for (_, last, ntotal), (first_next, _, _) in zip(blocks, blocks[1:], strict=False):
        assert first_next == last + 1 == ntotal
    store = read_codes(fake.store)
    assert len(store) == total
    np.testing.assert_array_equal(index_codes(fake.index), store.codes)
    np.testing.assert_array_equal(store.codes[:18], fake.db_codes)
    # Each file's rows form one block, where its report says, with its own codes and paths.
    for report in reports:
        stem = Path(report["source"]).stem
        first, last = report["first_row"], report["last_row"]
        np.testing.assert_array_equal(store.codes[first : last + 1], files[stem].codes)
        assert store.paths[first : last + 1] == files[stem].paths
    meta = read_index_metadata(fake.index)
    assert meta.ntotal == total and sorted(s["rows"] for s in meta.sources[1:]) == sorted(sizes)


def test_a_writer_waits_for_the_lock_then_gives_up_with_one_clear_line(tmp_path, monkeypatch):
    fake = make_fake_run(tmp_path)
    new_codes(tmp_path / "new.h5", fake.model.fingerprint(), 0, 2)
    before = tree_snapshot(tmp_path)
    monkeypatch.setattr(runs, "LOCK_TIMEOUT", 0.2)
    with RunDir(fake.run_dir).lock():
        with pytest.raises(HashretError, match=f"the run {RUN_NAME} is being written by another"):
            add_to_index(tmp_path / "new.h5", run=RUN_NAME, workdir=fake.workdir)
    assert tree_snapshot(tmp_path) == before
    add_to_index(tmp_path / "new.h5", run=RUN_NAME, workdir=fake.workdir)  # free again
    assert len(read_codes(fake.store)) == 20


def test_a_run_folder_that_cannot_be_written_is_read_without_the_lock(tmp_path, monkeypatch):
    """Readers take the lock where they can; where the lock file cannot be made (a read-only
    folder, which these root-run tests cannot make) they read without it."""
    fake = make_fake_run(tmp_path)
    real_touch = Path.touch

    def read_only(self, *args, **kwargs):
        if self.name == runs.LOCK_FILE:
            raise PermissionError(13, "Permission denied", str(self))
        return real_touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", read_only)
    report = query_images([str(fake.photos[0])], run=RUN_NAME, workdir=fake.workdir, top=2)
    assert len(report.results[0].neighbours) == 2
    assert not (fake.run_dir / runs.LOCK_FILE).exists()
