"""Files generated from the app (docs/cli.md, completions/) must match it: change a command
without running ``python scripts/gen_docs.py`` and this fails with the diff."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from hashcli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gen_docs.py"
GENERATED = [
    Path("docs/cli.md"),
    Path("completions/hashret.bash"),
    Path("completions/hashret.zsh"),
    Path("completions/hashret.fish"),
]


def _generate(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
    )


def test_generated_files_are_up_to_date(tmp_path):
    # From another folder, with the variables that feed defaults set and a narrow terminal:
    # the output must not depend on any of them.
    proc = _generate(
        "--check",
        cwd=tmp_path,
        HASHRET_WORKDIR=str(tmp_path / "w"),
        HASHRET_DATA=str(tmp_path / "d"),
        COLUMNS="37",
    )
    assert proc.returncode == 0, (
        f"{proc.stdout}\n{proc.stderr}\nregenerate with: python scripts/gen_docs.py"
    )


def test_check_mode_fails_with_a_diff_when_a_file_drifts(tmp_path):
    assert _generate("--output-dir", str(tmp_path), cwd=tmp_path).returncode == 0
    for relative in GENERATED:
        assert (tmp_path / relative).read_text(encoding="utf-8") == (REPO / relative).read_text(
            encoding="utf-8"
        )
    doc = tmp_path / "docs" / "cli.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("hashret runs use", "hashret x"))
    (tmp_path / "completions" / "hashret.fish").unlink()
    proc = _generate("--check", "--output-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "-#### `hashret x`" in proc.stdout and "+#### `hashret runs use`" in proc.stdout
    assert "docs/cli.md" in proc.stderr and "completions/hashret.fish" in proc.stderr
    assert "completions/hashret.bash" not in proc.stderr


def _commands(command, ctx):
    yield command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from _commands(sub, type(ctx)(sub, info_name=name, parent=ctx))


_ROOT = typer.main.get_command(app)
ALL_COMMANDS = list(_commands(_ROOT, _ROOT.context_class(_ROOT, info_name="hashret")))


def test_the_reference_documents_every_command():
    doc = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for _command, ctx in ALL_COMMANDS:
        assert f"`{ctx.command_path}`\n" in doc, ctx.command_path


RUNNABLE = [
    pytest.param(command, id=ctx.command_path)
    for command, ctx in ALL_COMMANDS
    if not hasattr(command, "list_commands") or command.invoke_without_command
]


@pytest.mark.parametrize("command", RUNNABLE)
def test_every_command_help_has_an_example(command):
    assert "Example" in (command.help or ""), (
        f"add an `Example: hashret ...` line to {command.name}"
    )
