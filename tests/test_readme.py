"""The README's quick start, run as written (parsed from the README so the two cannot drift)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(tag: str) -> list[str]:
    """The command lines of the fenced block after ``<!-- ci:<tag> -->``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- ci:{tag} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"README.md has no ci:{tag} block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_readme_has_one_install_and_one_test_command():
    assert readme_block("install") == ["pip install -e '.[dev]'"]
    assert readme_block("test") == ["python -m pytest -q"]


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path):
    commands = readme_block("quickstart")
    assert [shlex.split(c)[:2] for c in commands] == [
        ["hashret", "train"],
        ["hashret", "query"],
        ["hashret", "eval"],
    ]
    bin_dir = Path(sys.executable).parent
    env = {key: value for key, value in os.environ.items() if not key.startswith("HASHRET_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for command in commands:
        proc = subprocess.run(
            shlex.split(command),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "results.jpg").is_file()
    assert (tmp_path / "runs" / "CURRENT").is_file()
