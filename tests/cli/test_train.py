"""``hashret train`` options through the real app: bad methods and settings are one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hashcli.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "spectral"], "unknown method 'spectral'; choose one of: csq, dpn"),
        (
            ["--method", "triplet", "--miner", "hardest"],
            "unknown miner 'hardest'; choose one of: batch-all",
        ),
        (
            ["--method", "csq", "--miner", "batch-hard"],
            "the csq method has no --miner option; it is for the methods triplet",
        ),
        (
            ["--method", "hashnet", "--quantization", "0.1"],
            "the hashnet method has no --quantization option",
        ),
        (["--method", "dpn", "-o", "scale=8"], "the dpn method has no option scale; its options"),
        (["--method", "orthohash", "-o", "scale"], "--option takes NAME=VALUE, got 'scale'"),
        (["--method", "orthohash", "-o", "scale=x"], "the orthohash method's scale must be a"),
    ],
)
def test_bad_method_settings_are_one_error_line_and_leave_no_run(
    arguments, message, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HASHRET_DEBUG", raising=False)
    monkeypatch.delenv("HASHRET_RUN", raising=False)
    result = runner.invoke(
        app,
        ["train", "--dataset", "digits", "--backbone", "tiny", "--workdir", "runs", *arguments],
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
