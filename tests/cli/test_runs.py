"""``hashret runs``: the listing (table and JSON), the empty workdir, ``runs use``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashcli.cli.app import app

runner = CliRunner()

DIGITS = "digits-tiny-32b-20250101-120000"
CUB = "cub-resnet50-48b-20250102-080000"


def _make_run(workdir: Path, name: str, config: dict, summary: dict | None, mtime: int) -> Path:
    run_dir = workdir / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    os.utime(run_dir / "config.json", (mtime, mtime))  # list_runs orders by config.json time
    return run_dir


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "runs"
    _make_run(
        wd,
        DIGITS,
        {
            "dataset": "digits",
            "bits": 32,
            "backbone": "tiny",
            "epochs": 15,
            "created": "2025-01-01T12:00:00+0000",
        },
        {"epochs_done": 15, "best_val_map": 0.91234, "test_map": 0.875},
        mtime=1_000,
    )
    _make_run(
        wd,
        CUB,
        {
            "dataset": "cub",
            "bits": 48,
            "backbone": "resnet50",
            "epochs": 90,
            "created": "2025-01-02T08:00:00+0000",
        },
        None,  # still training: no summary yet
        mtime=2_000,
    )
    (wd / "not-a-run").mkdir()  # no config.json: ignored
    (wd / "CURRENT").write_text(DIGITS + "\n", encoding="utf-8")
    return wd


def _invoke(args: list[str], **env: str):
    return runner.invoke(app, args, env={"HASHRET_WORKDIR": None, **env})


def test_table_lists_runs_on_stdout_with_the_current_one_marked(workdir):
    result = _invoke(["runs", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    header, digits_row, cub_row = rows  # oldest first
    assert header == [
        "name",
        "dataset",
        "bits",
        "backbone",
        "epochs",
        "best",
        "val",
        "mAP",
        "test",
        "mAP",
        "created",
    ]
    assert digits_row == [
        "*",
        DIGITS,
        "digits",
        "32",
        "tiny",
        "15",
        "0.9123",
        "0.8750",
        "2025-01-01",
        "12:00",
    ]
    assert cub_row == [CUB, "cub", "48", "resnet50", "90", "-", "-", "2025-01-02", "08:00"]


def test_json_is_an_array_with_every_field(workdir):
    result = _invoke(["runs", "--json", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stderr == ""  # one line, like every --json
    runs = json.loads(result.stdout)
    assert [run["name"] for run in runs] == [DIGITS, CUB]
    assert runs[0] == {
        "name": DIGITS,
        "path": str(workdir / DIGITS),
        "dataset": "digits",
        "bits": 32,
        "backbone": "tiny",
        "epochs": 15,
        "best_val_map": 0.91234,
        "test_map": 0.875,
        "created": "2025-01-01T12:00:00+0000",
        "current": True,
    }
    assert runs[1]["current"] is False and runs[1]["test_map"] is None


def test_workdir_from_the_environment(workdir):
    result = _invoke(["runs", "--json"], HASHRET_WORKDIR=str(workdir))
    assert [run["name"] for run in json.loads(result.stdout)] == [DIGITS, CUB]


@pytest.mark.parametrize("exists", [True, False])
def test_empty_workdir_is_a_friendly_message_and_exit_0(tmp_path, exists):
    wd = tmp_path / "empty"
    if exists:
        wd.mkdir()
    result = _invoke(["runs", "--workdir", str(wd)])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No runs in" in result.stderr and "hashret train" in result.stderr
    result = _invoke(["runs", "--json", "--workdir", str(wd)])
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_a_broken_run_is_skipped_with_a_warning(workdir):
    (workdir / "broken").mkdir()
    (workdir / "broken" / "config.json").write_text("{not json", encoding="utf-8")
    result = _invoke(["runs", "--workdir", str(workdir)])
    assert result.exit_code == 0
    assert "Warning: skipped the run broken" in result.stderr
    assert DIGITS in result.stdout and CUB in result.stdout


def test_use_by_name_sets_the_current_run(workdir):
    result = _invoke(["runs", "use", CUB, "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert (workdir / "CURRENT").read_text(encoding="utf-8").strip() == CUB
    assert f"Current run: {CUB}" in result.stderr and result.stdout == ""
    listed = json.loads(_invoke(["runs", "--json", "--workdir", str(workdir)]).stdout)
    assert [run["name"] for run in listed if run["current"]] == [CUB]


def test_use_takes_the_workdir_given_to_the_group(workdir):
    result = _invoke(["runs", "--workdir", str(workdir), "use", CUB])
    assert result.exit_code == 0, result.output
    assert (workdir / "CURRENT").read_text(encoding="utf-8").strip() == CUB


def test_use_by_path_inside_the_workdir(workdir):
    result = _invoke(["runs", "use", str(workdir / CUB)], HASHRET_WORKDIR=str(workdir))
    assert result.exit_code == 0, result.output
    assert (workdir / "CURRENT").read_text(encoding="utf-8").strip() == CUB


def test_use_a_path_outside_the_workdir_is_a_clear_error(workdir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _make_run(elsewhere, "other", {"dataset": "digits"}, None, mtime=3_000)
    result = _invoke(["runs", "use", str(elsewhere / "other"), "--workdir", str(workdir)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "not a folder of the workdir" in result.stderr and "--workdir" in result.stderr
    assert (workdir / "CURRENT").read_text(encoding="utf-8").strip() == DIGITS  # unchanged


def test_use_an_unknown_run_is_an_error(workdir):
    result = _invoke(["runs", "use", "nope", "--workdir", str(workdir)])
    assert result.exit_code == 1
    assert "no run 'nope'" in result.stderr


@pytest.mark.parametrize("args", [["runs", "--help"], ["runs", "use", "--help"]])
def test_help_has_an_example(args):
    result = _invoke(args)
    assert result.exit_code == 0
    assert "Example: hashret runs" in result.stdout
