"""The one output object: data on stdout, people's text on stderr, one JSON layout, --quiet."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from rich.table import Table

from hashcli.cli._output import Output

CLI = Path(__file__).resolve().parents[2] / "hashcli" / "cli"


def _table(name: str) -> Table:
    table = Table()
    table.add_column("name")
    table.add_column("bits", justify="right")
    table.add_row(name, "48")
    return table


def test_json_is_one_line_on_stdout_with_nan_and_infinities_as_null(capsys):
    Output(quiet=True).json(
        {"map": float("nan"), "ks": [1, float("inf")], "pair": (2.5, -float("inf")), "s": "é"}
    )
    out, err = capsys.readouterr()
    assert err == ""
    assert out == '{"map": null, "ks": [1, null], "pair": [2.5, null], "s": "\\u00e9"}\n'


def test_json_lines_are_one_object_per_line(capsys):
    Output().json_lines({"row": i} for i in range(3))
    out, err = capsys.readouterr()
    assert out.splitlines() == ['{"row": 0}', '{"row": 1}', '{"row": 2}'] and err == ""


def test_people_text_is_plain_on_stderr_and_quiet_silences_only_status(capsys):
    loud, quiet = Output(), Output(quiet=True)
    text = "Wrote runs/[x]/a :smile: b.h5"  # no markup, no emoji codes
    for out in (loud, quiet):
        out.say(text)
        out.warning("low on disk")
        out.result("classes  10")
        out.error("no run 'nope'")
    stdout, stderr = capsys.readouterr()
    assert stdout == ""
    assert stderr.splitlines() == [
        text,
        "Warning: low on disk",
        "classes  10",
        "Error: no run 'nope'",
        "classes  10",  # --quiet: the answer and the error only
        "Error: no run 'nope'",
    ]


def test_long_status_lines_are_never_wrapped(capsys):
    path = "runs/" + "x" * 300 + "/codes.h5"
    Output().say(f"Wrote {path}")
    assert capsys.readouterr().err == f"Wrote {path}\n"


def test_tables_for_people_go_to_stderr_and_data_tables_to_stdout(capsys):
    name = "digits-tiny-32b-" + "0" * 120  # wider than any terminal default
    Output(quiet=True).table(_table(name))  # a table for people is an answer: not quiet
    out, err = capsys.readouterr()
    assert out == "" and "bits" in err
    Output().table(_table(name), data=True)
    out, err = capsys.readouterr()
    assert err == ""
    # piped: whole rows, no rules, so `hashret runs | grep` sees every name in full
    assert [line.split() for line in out.splitlines() if line.strip()] == [
        ["name", "bits"],
        [name, "48"],
    ]


def test_progress_is_off_when_stderr_is_not_a_terminal(capsys):
    out = Output()
    assert not out.live  # pytest captures stderr
    with out.progress() as progress:
        assert progress.disable
        progress.add_task("epochs", total=3)
    with out.progress_bar("decoding", total=2) as update:
        update(2, 2)
    assert capsys.readouterr() == ("", "")


def _printing_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("print", "echo", "secho", "Console"):
                found.append(f"{path.name}:{node.lineno} {name}")
        elif isinstance(node, ast.ImportFrom) and node.module == "rich.console":
            found.append(f"{path.name}:{node.lineno} import rich.console")
    return found


def test_the_reader_finds_printing_calls(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import typer\ntyper.echo('x')\nprint('y')\nout.print('z')\n")
    assert [row.split()[1] for row in _printing_calls(sample)] == ["echo", "print", "print"]


@pytest.mark.parametrize(
    "module", sorted(p.name for p in CLI.glob("*.py") if p.name != "_output.py")
)
def test_commands_print_only_through_output(module):
    assert _printing_calls(CLI / module) == []
