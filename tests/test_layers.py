"""The package layering, read from the source (every import statement, lazy and TYPE_CHECKING
ones included): the library never imports typer or rich, domain packages never reach up to
the workflows or the CLI, and the few sideways directions that must not exist do not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hashcli"
DOMAIN = ("codes", "data", "index", "metrics", "model", "render", "runtime", "train")

#: (package, packages it must not import)
FORBIDDEN = [
    *[(domain, ("workflows", "cli")) for domain in DOMAIN],
    ("model", ("train",)),
    ("metrics", ("index",)),
    ("codes", ("index", "metrics", "model")),
    ("workflows", ("cli",)),
]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str | None = None) -> list[Path]:
    root = PACKAGE / package if package else PACKAGE
    return sorted(root.rglob("*.py"))


def _package_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_the_reader_sees_lazy_imports():
    # hashcli.workflows.query imports the contact sheet inside a function.
    assert "hashcli.render.contact_sheet" in _imports(PACKAGE / "workflows" / "query.py")


def test_the_library_imports_no_typer_or_rich():
    found = [
        (str(path.relative_to(PACKAGE)), name)
        for path in _modules()
        if _package_of(path) != "cli"
        for name in _imports(path)
        if name.split(".")[0] in ("typer", "rich", "click")
    ]
    assert found == []


@pytest.mark.parametrize(("package", "forbidden"), FORBIDDEN)
def test_no_import_against_the_layering(package, forbidden):
    found = [
        (str(path.relative_to(PACKAGE)), name)
        for path in _modules(package)
        for name in _imports(path)
        if name.split(".")[:2] in [["hashcli", other] for other in forbidden]
    ]
    assert found == []
