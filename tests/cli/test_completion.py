"""Shell completion, tested the way a shell drives it: the real ``hashret`` program in a fresh
process with the completion variables set (model: fastapi/typer ``tests/test_completion/``).

Protocol (typer): ``_HASHRET_COMPLETE=complete_bash`` with ``COMP_WORDS`` (the command line)
and ``COMP_CWORD`` (index of the word being completed) prints one candidate per line;
``complete_zsh`` and ``complete_fish`` read the line from ``_TYPER_COMPLETE_ARGS``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from hashcli.cli import _options
from hashcli.cli.app import app
from hashcli.model.names import BACKBONE_NAMES
from hashcli.train.names import METHOD_NAMES, MINER_NAMES, SCHEDULE_NAMES

EXE = Path(sys.executable).parent / "hashret"
HEAVY = ("torch", "torchvision", "faiss", "h5py", "scipy", "numba", "onnxruntime")
REPO = Path(__file__).resolve().parents[2]


def _env(workdir: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HASHRET_", "_TYPER_"))}
    if workdir is not None:
        env["HASHRET_WORKDIR"] = str(workdir)
    env.update(extra)
    return env


def _run(env: dict[str, str], cwd: Path | None = None, importtime: bool = False):
    cmd = [sys.executable, "-X", "importtime", str(EXE)] if importtime else [str(EXE)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def bash(line: str, workdir: Path | None = None, cwd: Path | None = None) -> list[str]:
    """Candidates for the last word of ``line`` (an empty word when it ends with a space)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    env = _env(workdir, _HASHRET_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(cword))
    proc = _run(env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def zsh(line: str, workdir: Path | None = None) -> str:
    proc = _run(_env(workdir, _HASHRET_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS=line))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def fish(line: str, workdir: Path | None = None) -> list[str]:
    env = _env(
        workdir,
        _HASHRET_COMPLETE="complete_fish",
        _TYPER_COMPLETE_FISH_ACTION="get-args",
        _TYPER_COMPLETE_ARGS=line,
    )
    proc = _run(env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def _top_level_commands() -> list[str]:
    group = typer.main.get_command(app)
    return group.list_commands(group.context_class(group, info_name="hashret"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "runs"
    for name in ("digits-tiny-32b-a", "digits-tiny-32b-b", "cub-resnet50-48b-c"):
        (wd / name).mkdir(parents=True)
        (wd / name / "config.json").write_text("{}", encoding="utf-8")
    (wd / "digits-unfinished").mkdir()  # no config.json: not a run
    (wd / "digits-notes.txt").write_text("a file, not a run", encoding="utf-8")
    (wd / "CURRENT").write_text("digits-tiny-32b-b\n", encoding="utf-8")
    return wd


def test_every_subcommand_completes():
    expected = _top_level_commands()
    assert {"train", "data", "runs"} <= set(expected)
    assert bash("hashret ") == expected


def test_a_subcommand_prefix_completes():
    assert bash("hashret ru") == ["runs"]
    assert bash("hashret runs ") == ["use"]


def test_options_complete():
    assert {"--workdir", "--json", "--help"} <= set(bash("hashret runs --"))
    assert set(bash("hashret train --ba")) == {"--backbone", "--backbone-lr-mult", "--batch-size"}


def test_dataset_names_complete():
    assert bash("hashret train --dataset ") == list(_options.DATASET_NAMES)
    assert bash("hashret train --dataset d") == ["dogs", "digits"]
    assert bash("hashret data info cu") == ["cub"]  # the positional argument too
    assert bash("hashret data info cifar10-") == ["cifar10-1", "cifar10-2"]


def test_backbone_names_complete():
    assert bash("hashret train --backbone ") == list(BACKBONE_NAMES)
    assert bash("hashret train --backbone res") == [n for n in BACKBONE_NAMES if "resnet" in n]


def test_method_miner_and_schedule_names_complete():
    assert bash("hashret train --method ") == list(METHOD_NAMES)
    assert bash("hashret train --method o") == ["orthohash"]
    assert bash("hashret train --miner ") == list(MINER_NAMES)
    assert bash("hashret train --schedule ") == list(SCHEDULE_NAMES)


def test_run_names_complete_from_the_workdir_in_the_environment(workdir, tmp_path):
    runs = ["cub-resnet50-48b-c", "digits-tiny-32b-a", "digits-tiny-32b-b"]
    assert bash("hashret runs use ", workdir=workdir) == runs
    assert bash("hashret runs use dig", workdir=workdir) == runs[1:]
    # no workdir anywhere: nothing to offer, and no error
    assert bash("hashret runs use ", workdir=tmp_path / "missing") == []


def test_run_names_complete_from_a_typed_workdir(workdir, tmp_path):
    other = tmp_path / "other"
    (other / "only-run").mkdir(parents=True)
    (other / "only-run" / "config.json").write_text("{}", encoding="utf-8")
    # --workdir typed on the line wins over $HASHRET_WORKDIR, on the group or the command
    assert bash(f"hashret runs --workdir {other} use ", workdir=workdir) == ["only-run"]
    assert bash(f"hashret runs use --workdir {other} ", workdir=workdir) == ["only-run"]


def test_run_names_default_to_runs_in_the_current_folder(workdir):
    assert bash("hashret runs use cub", cwd=workdir.parent) == ["cub-resnet50-48b-c"]


def test_zsh_and_fish_show_which_run_is_current(workdir):
    out = zsh("hashret runs use digits-tiny", workdir=workdir)
    assert '"digits-tiny-32b-b":"current run"' in out
    assert '"digits-tiny-32b-a"' in out and "cub" not in out
    assert fish("hashret runs use digits-tiny", workdir=workdir) == [
        "digits-tiny-32b-a",
        "digits-tiny-32b-b\tcurrent run",
    ]


def test_run_option_completes_run_names():
    """Every command taking the shared ``--run`` gets the run-name completion."""
    option = _options.RunOpt.__metadata__[0]
    assert option.autocompletion is _options.complete_run


def _options_completing(values: list[str]) -> list[tuple[str, str]]:
    """(command line, option) pairs whose completion offers exactly ``values``."""
    group = typer.main.get_command(app)
    found = []

    def walk(command, ctx):
        for param in command.get_params(ctx):
            if param.param_type_name == "option" and param.opts[0].startswith("--"):
                completed = [item.value for item in param.shell_complete(ctx, "")]
                if completed == values:
                    found.append((ctx.command_path, param.opts[0]))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, type(ctx)(sub, info_name=name, parent=ctx))

    walk(group, group.context_class(group, info_name="hashret"))
    return found


def test_index_types_complete():
    # The documented types, in their documented order (flat first, the default).
    types = ["flat", "hnsw", "ivf", "hash", "multihash"]
    assert _options_completing(types) == [("hashret index build", "--type")]
    assert bash("hashret index build --type ") == types
    assert bash("hashret index build --type h") == ["hnsw", "hash"]
    assert bash("hashret index build -t multi") == ["multihash"]
    assert bash("hashret index build --type x") == []
    # `hashret index ...` is short for `hashret index build ...`, and completes the same.
    assert bash("hashret index --type h") == ["hnsw", "hash"]


@pytest.mark.parametrize(
    "line",
    [
        "hashret ",
        "hashret train --dataset ",
        "hashret train --backbone ",
        "hashret train --method ",
        "hashret train --miner ",
        "hashret runs use ",
        "hashret index build --type ",
    ],
)
def test_completion_imports_no_heavy_library(line, workdir):
    """A TAB must stay instant: the completion process never imports torch and friends."""
    words = line.split()
    env = _env(
        workdir,
        _HASHRET_COMPLETE="complete_bash",
        COMP_WORDS=line,
        COMP_CWORD=str(len(words)),
    )
    proc = _run(env, importtime=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(), "no candidates: the completion did not run"
    imported = {
        row.split("|")[-1].strip().split(".")[0]
        for row in proc.stderr.splitlines()
        if row.startswith("import time:") and "|" in row
    }
    assert "hashcli" in imported  # the -X importtime listing is really there
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_generated_bash_script_completes_in_bash(workdir):
    """End to end: source completions/hashret.bash in bash and press TAB (call the function)."""
    script = REPO / "completions" / "hashret.bash"
    shell = (
        f"source {script}\n"
        'COMP_WORDS=(hashret runs use ""); COMP_CWORD=3\n'
        "_hashret_completion hashret\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = _env(workdir, PATH=f"{EXE.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", shell],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cub-resnet50-48b-c", "digits-tiny-32b-a", "digits-tiny-32b-b"]
