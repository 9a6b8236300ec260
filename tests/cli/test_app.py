"""The CLI skeleton: help, version, the one error handler, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from hashcli import __version__
from hashcli.cli import app as app_module
from hashcli.errors import HashretError

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app_module.app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output


def test_version():
    result = runner.invoke(app_module.app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hashret {__version__}"


def _failing_app() -> typer.Typer:
    app = typer.Typer(cls=app_module.HashretGroup)

    @app.command()
    def boom() -> None:
        raise HashretError("the thing is missing; run `hashret fix` first")

    @app.command()
    def other() -> None:
        pass

    return app


def test_hashret_error_is_one_line_and_exit_1(monkeypatch):
    monkeypatch.delenv(app_module.DEBUG_ENV, raising=False)
    result = runner.invoke(_failing_app(), ["boom"])
    assert result.exit_code == 1
    assert result.stderr == "Error: the thing is missing; run `hashret fix` first\n"
    assert result.stdout == ""


def test_debug_env_shows_the_exception(monkeypatch):
    monkeypatch.setenv(app_module.DEBUG_ENV, "1")
    result = runner.invoke(_failing_app(), ["boom"])
    assert result.exit_code == 1
    assert isinstance(result.exception, HashretError)


def test_usage_error_exits_2():
    result = runner.invoke(app_module.app, ["no-such-command"])
    assert result.exit_code == 2


def _fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize(
    "module", ["torch", "torchvision", "faiss", "h5py", "scipy", "numba", "onnxruntime"]
)
def test_importing_the_cli_imports_no_heavy_library(module):
    proc = _fresh(f"import sys, hashcli.cli.app\nprint({module!r} in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_console_script_help_and_error_in_a_real_process(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "hashret")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "hashcli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"hashret {__version__}"
