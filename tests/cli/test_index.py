"""``hashret index`` (build) and ``hashret index add`` through the real app."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner
from workflows.test_query import (
    BITS,
    brute_force,
    new_code_file,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    refused_code_file,
    tree_snapshot,
)

from hashcli.cli.app import app
from hashcli.codes import read_codes
from hashcli.index import BinaryIndex, read_index_metadata

runner = CliRunner()


def _error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    return lines[0]


def test_group_help_lists_build_and_add():
    result = runner.invoke(app, ["index", "--help"])
    assert result.exit_code == 0
    assert "build" in result.output and "add" in result.output


def test_index_without_arguments_rebuilds_the_current_runs_index(fake):
    fake.index.unlink()
    result = runner.invoke(app, ["index", "--type", "hnsw", "--m", "8", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out"] == str(fake.index) and summary["index_type"] == "hnsw"
    assert summary["ntotal"] == 18 and summary["bits"] == BITS and summary["params"]["m"] == 8
    assert f"Wrote {fake.index}" in result.stderr.replace("\n", "")
    assert read_index_metadata(fake.index).index_type == "hnsw"
    # `build` spelled out, with --run, does the same
    result = runner.invoke(app, ["index", "build", "--run", "fake-run", "--quiet"])
    assert result.exit_code == 0 and result.stderr == ""
    assert read_index_metadata(fake.index).index_type == "flat"


def test_index_of_a_code_file_goes_beside_it_and_notes_a_lowered_nlist(fake, tmp_path):
    codes = tmp_path / "mine.h5"
    codes.write_bytes(fake.store.read_bytes())
    result = runner.invoke(app, ["index", str(codes), "--type", "ivf", "--nlist", "64"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "mine.faiss"
    assert out.is_file() and (tmp_path / "mine.faiss.json").is_file()
    text = result.stderr.replace("\n", " ")
    assert "ivf index" in text and "18 codes of 16 bits" in text and "nlist lowered" in text
    loaded = BinaryIndex.load(out)
    assert (loaded.index_type, loaded.ntotal, loaded.params["nlist"]) == ("ivf", 18, 1)

    other = tmp_path / "sub" / "x.faiss"
    result = runner.invoke(app, ["index", str(codes), "--out", str(other), "--quiet"])
    assert result.exit_code == 0 and other.is_file()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--nlist", "4"], "unknown parameter(s) nlist for a flat index"),
        (["--type", "nope"], "unknown index type 'nope'"),
        (["--run", "missing"], "no run 'missing'"),
    ],
)
def test_build_errors_are_one_line_and_write_nothing(fake, args, match):
    before = tree_snapshot(fake.workdir)
    assert match in _error_line(runner.invoke(app, ["index", *args]))
    assert tree_snapshot(fake.workdir) == before


def test_add_appends_rows_to_index_and_store_and_query_finds_them(fake, tmp_path):
    new, paths, codes = new_code_file(fake, tmp_path)
    result = runner.invoke(app, ["index", "add", str(new), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["first_row"], summary["last_row"]) == (3, 18, 20)
    assert summary["ntotal"] == 21 and summary["store"] == str(fake.store)
    assert "rows 18-20" in result.stderr.replace("\n", " ")
    store = read_codes(fake.store)
    np.testing.assert_array_equal(store.codes, np.concatenate([fake.db_codes, codes]))
    assert store.paths[18:] == [str(p) for p in paths]

    result = runner.invoke(app, ["query", str(paths[2]), "--json", "--top", "21"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    ((dist, rows),) = brute_force(codes[2:], store.codes)
    assert [r["row"] for r in line["results"]] == rows.tolist()
    assert [r["distance"] for r in line["results"]] == dist.tolist()
    first = line["results"][0]
    assert first["distance"] == 0 and first["row"] >= 18
    assert first["path"] == str(paths[first["row"] - 18])


def test_add_to_an_explicit_index(fake, tmp_path):
    index = tmp_path / "mine.faiss"
    assert runner.invoke(app, ["index", str(fake.store), "--out", str(index)]).exit_code == 0
    new, _, _ = new_code_file(fake, tmp_path)
    result = runner.invoke(app, ["index", "add", str(new), "--index", str(index), "--quiet"])
    assert result.exit_code == 0, result.output
    assert BinaryIndex.load(index).ntotal == 21 and len(read_codes(fake.store)) == 21


@pytest.mark.parametrize("problem", ["model", "bits", "missing index", "missing file"])
def test_add_errors_are_one_line_and_write_nothing(fake, tmp_path, problem):
    if problem in ("model", "bits"):
        new, match = refused_code_file(fake, tmp_path, problem)
    elif problem == "missing index":
        new, _, _ = new_code_file(fake, tmp_path)
        fake.index.unlink()
        match = "hashret index --run fake-run"
    else:
        new, match = tmp_path / "nothing.h5", "does not exist"
    before = tree_snapshot(fake.workdir)
    assert match in _error_line(runner.invoke(app, ["index", "add", str(new)]))
    assert tree_snapshot(fake.workdir) == before
