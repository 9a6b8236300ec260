"""``hashret query`` through the real app (CliRunner) and the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner
from workflows.test_query import (
    BITS,
    CLASSES,
    brute_force,
    make_fake_run,
    make_model,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    oracle_codes,
    tree_snapshot,
)

from hashcli.cli.app import app
from hashcli.codes import CodeFile, read_codes, write_codes
from hashcli.data.images import load_image
from hashcli.data.transforms import eval_transform
from hashcli.model.checkpoint import load_model, model_state, save_checkpoint
from hashcli.workflows.index import build_index

runner = CliRunner()
EXE = Path(sys.executable).parent / "hashret"


def test_json_lines_follow_the_schema_and_equal_a_brute_force(fake):
    queries = [fake.db_paths[1], fake.photos[0], fake.test_paths[1]]
    result = runner.invoke(
        app, ["query", *map(str, queries), "--json", "--top", "6", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected = brute_force(oracle_codes(fake.model, queries), fake.db_codes)
    assert len(lines) == 3
    for line, query, xq, (dist, rows) in zip(
        lines, queries, oracle_codes(fake.model, queries), expected, strict=True
    ):
        assert set(line) == {"query", "code", "label", "class", "results"}
        assert line["query"] == str(query) and line["code"] == xq.tobytes().hex()
        assert [r["rank"] for r in line["results"]] == [1, 2, 3, 4, 5, 6]
        assert [r["row"] for r in line["results"]] == rows[:6].tolist()
        assert [r["distance"] for r in line["results"]] == dist[:6].tolist()
        distances = [r["distance"] for r in line["results"]]
        assert distances == sorted(distances)
        for r in line["results"]:
            assert set(r) == {"rank", "row", "path", "label", "class", "distance"}
            assert r["path"] == str(fake.db_paths[r["row"]])
            assert r["label"] == fake.db_labels[r["row"]] and r["class"] == CLASSES[r["label"]]
    assert [(line["label"], line["class"]) for line in lines] == [
        (1, "dog"),
        (None, None),
        (0, "cat"),
    ]
    assert "Searched 3 queries" in result.stderr.replace("\n", " ")


def test_tables_on_stderr(fake, tmp_path):
    result = runner.invoke(app, ["query", str(tmp_path / "photos"), str(fake.db_paths[2])])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = result.stderr
    assert "Query 1/3" in text and "Query 3/3" in text and "class unknown" in text
    assert "class owl, known from the database" in text
    assert "dist" in text and "class" in text
    # paths relative to the database's common folder, which the caption names: 80 columns
    # suffice (--json keeps full paths)
    folder = os.path.commonpath([str(p.parent) for p in fake.db_paths])
    assert f"paths under {folder}" in " ".join(text.split())
    rows = [line for line in text.splitlines() if line.endswith(".png") or ".png " in line]
    relative = os.path.relpath(fake.db_paths[2], folder)
    assert any(line.split()[-1] == relative for line in rows if line.split()[0].isdigit())


def test_tables_fit_80_columns(fake, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["query", str(fake.db_paths[2]), "--top", "8"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    table = lines[1 : lines.index(next(x for x in lines if x.startswith("paths under")))]
    assert table and max(len(line.rstrip()) for line in table) <= 80
    assert all(len(row.split()) == 4 for row in table[3:] if row.strip())  # nothing folded


def test_radius_is_not_capped_by_the_default_top(tmp_path, monkeypatch):
    big = make_fake_run(tmp_path / "big", n_db=26)
    monkeypatch.setenv("HASHRET_WORKDIR", str(big.workdir))
    ((dist, rows),) = brute_force(oracle_codes(big.model, big.photos[:1]), big.db_codes)
    radius = int(dist[22])  # at least 23 items within it: more than the default 20
    within = int((dist <= radius).sum())
    assert within > 20
    query = ["query", str(big.photos[0]), "--json"]
    line = json.loads(runner.invoke(app, [*query, "--radius", str(radius)]).stdout)
    assert [r["row"] for r in line["results"]] == rows[:within].tolist()
    line = json.loads(runner.invoke(app, [*query, "-r", str(radius), "-k", "4"]).stdout)
    assert [r["row"] for r in line["results"]] == rows[:4].tolist()
    line = json.loads(runner.invoke(app, query).stdout)
    assert [r["row"] for r in line["results"]] == rows[:20].tolist()


def test_grid_has_the_documented_size(fake, tmp_path):
    out = tmp_path / "grid.jpg"
    queries = [fake.db_paths[0], fake.photos[1]]
    result = runner.invoke(app, ["query", *map(str, queries), "--top", "4", "--grid", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as sheet:
        # 2 rows of 4 results: width 2*8 + 5*104 + 16 + 3*4, height 2*8 + 2*120 + 4
        assert sheet.size == (564, 260)
    assert f"Wrote the contact sheet {out}" in result.stderr.replace("\n", "")


def _other_checkpoint(tmp_path: Path, bits: int, seed: int) -> Path:
    return save_checkpoint(
        tmp_path / f"other-{bits}-{seed}.pt", model_state(make_model(bits, seed))
    )


def _big_index(fake, tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    codes = np.packbits(rng.integers(0, 2, (3000, BITS), dtype=np.uint8), axis=1)
    store = tmp_path / "big.h5"
    write_codes(store, CodeFile(codes, BITS, attrs={"model_fingerprint": fake.model.fingerprint()}))
    return build_index(store).out


@pytest.mark.parametrize(
    "problem",
    ["model", "bits", "missing index", "bad image", "truncated", "not an index", "gpu k"],
)
def test_errors_are_one_line_exit_1_and_write_nothing(fake, tmp_path, problem):
    args = ["query", str(fake.photos[0]), "--grid", str(tmp_path / "grid.png")]
    if problem == "model":
        args += [
            "--checkpoint",
            str(_other_checkpoint(tmp_path, BITS, 7)),
            "--index",
            str(fake.index),
        ]
        match = "another model"
    elif problem == "bits":
        args += [
            "--checkpoint",
            str(_other_checkpoint(tmp_path, 24, 0)),
            "--index",
            str(fake.index),
        ]
        match = "holds 16-bit codes but the query codes have 24 bits"
    elif problem == "missing index":
        fake.index.unlink()
        match = "build it with `hashret index --run fake-run`"
    elif problem == "bad image":
        bad = tmp_path / "photos" / "broken.png"
        bad.write_bytes(b"\x89PNG not really")
        args[1] = str(bad)
        match = f"cannot read image {bad}"
    elif problem == "truncated":
        data = fake.index.read_bytes()
        fake.index.write_bytes(data[: len(data) // 2])
        match = "truncated"
    elif problem == "not an index":
        size = fake.index.stat().st_size
        fake.index.write_bytes(b"not a faiss index".ljust(size, b"\0"))
        match = "is not a readable FAISS binary index"
    else:
        args += ["--index", str(_big_index(fake, tmp_path)), "--device", "cuda", "--top", "3000"]
        match = "at most 2048 neighbours"
    before = tree_snapshot(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert tree_snapshot(tmp_path) == before


def test_usage_errors_exit_2(fake):
    assert runner.invoke(app, ["query"]).exit_code == 2
    assert runner.invoke(app, ["query", "x.png", "--top", "0"]).exit_code == 2
    result = runner.invoke(app, ["query", "x.png", "--run", "a", "--checkpoint", "b"])
    assert result.exit_code == 2


def _console(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HASHRET_")}
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env},
        timeout=120,
    )


def test_the_console_script_reports_a_truncated_index_without_a_traceback(fake, tmp_path):
    data = fake.index.read_bytes()
    fake.index.write_bytes(data[:-5])
    proc = _console(["query", str(fake.photos[0])], tmp_path, HASHRET_WORKDIR=str(fake.workdir))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    assert "truncated" in proc.stderr and "hashret index" in proc.stderr


@pytest.mark.slow  # 9 s on a quiet machine, 20 s when the 2 cores are shared
def test_train_then_query_end_to_end(tmp_path):
    """The one real training run: `hashret query` answers right after `hashret train`."""
    env = {"HASHRET_WORKDIR": str(tmp_path / "runs"), "HASHRET_DATA": str(tmp_path / "data")}
    train = ["train", "--dataset", "digits", "--backbone", "tiny", "--bits", "16", "--epochs", "1"]
    # One torch thread: on a shared 2-core machine the second one mostly waits.
    proc = _console(
        [*train, "--data-root", str(tmp_path / "data"), "--quiet"],
        tmp_path,
        OMP_NUM_THREADS="1",
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    query = sorted((tmp_path / "data" / "digits" / "test" / "7").glob("*.png"))[0]
    proc = _console(["query", str(query), "--json", "--top", "10"], tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout)
    assert (line["label"], line["class"]) == (7, "7")  # a test image: known from the dataset

    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    model = load_model(run_dir / "model.pt")
    transform = eval_transform(model.config["image_size"])
    with torch.no_grad():
        xq = np.packbits((model(transform(load_image(query))[None]) >= 0).numpy(), axis=1)
    database = read_codes(run_dir / "codes" / "database.h5")
    ((dist, rows),) = brute_force(xq, database.codes)
    assert line["code"] == xq.tobytes().hex()
    assert [r["row"] for r in line["results"]] == rows[:10].tolist()
    assert [r["distance"] for r in line["results"]] == dist[:10].tolist()
    assert [r["path"] for r in line["results"]] == [database.paths[r] for r in rows[:10]]
