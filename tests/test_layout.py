"""The package layout: every package only points down (imports read from the source with ast,
typing-only imports included, so that a wrong-way dependency cannot hide behind a lazy import).

Layers, top first: cli > server > workflows > {train, render} > {model, index, metrics}
> {data, codes} > {runtime} > the shared modules (errors, fileio, paths).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hashcli"

#: What each package may import from hashcli besides itself and the shared modules.
ALLOWED = {
    "cli": {
        "workflows",
        "train",
        "model",
        "index",
        "metrics",
        "data",
        "codes",
        "runtime",
        "render",
        "server",
    },
    "server": {"workflows", "data", "runtime"},
    "workflows": {"train", "render", "model", "index", "metrics", "data", "codes", "runtime"},
    "train": {"model", "data", "codes", "runtime"},
    "render": {"data", "metrics"},
    "model": {"data", "codes", "runtime"},
    "index": {"codes"},
    "metrics": {"codes", "runtime"},
    "data": set(),
    "codes": set(),
    "runtime": set(),
}
SHARED = {"errors", "fileio", "paths", "__init__"}


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute; relative imports are not used here)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _package_files(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def test_the_reader_sees_lazy_imports():
    # hashcli.workflows.query imports the contact sheet inside a function.
    assert "hashcli.render.contact_sheet" in _imports(PACKAGE / "workflows" / "query.py")


def test_every_package_is_listed():
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert found == set(ALLOWED)


def _wrong_way(package: str, files: list[Path]) -> list[str]:
    """The imports of ``files`` (modules of ``package``) that ALLOWED does not allow."""
    wrong = []
    for path in files:
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "hashcli" or len(parts) < 2:
                continue
            target = parts[1]
            if target in SHARED or target == package or target == "__version__":
                continue
            if target not in ALLOWED[package]:
                wrong.append(f"{path.name} imports {name}")
    return wrong


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_only_point_down(package):
    wrong = _wrong_way(package, _package_files(package))
    assert not wrong, "\n".join(wrong)


def test_the_library_never_imports_typer_or_rich():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for package in sorted(set(ALLOWED) - {"cli"})
        for path in _package_files(package)
        for name in _imports(path)
        if name.split(".")[0] in ("typer", "rich", "click")
    ]
    offenders += [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in PACKAGE.glob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in ("typer", "rich", "click")
    ]
    assert not offenders


def test_faiss_and_h5py_each_have_one_home():
    """FAISS only in the index package, h5py only in the code store (STYLE.md point 5), numba
    only in the evaluator's compiled loops."""
    homes = {"faiss": "index", "h5py": "codes/store.py", "numba": "metrics/compiled.py"}
    for module, home in homes.items():
        users = sorted(
            str(path.relative_to(PACKAGE))
            for path in PACKAGE.rglob("*.py")
            if any(name.split(".")[0] == module for name in _imports(path))
        )
        assert users and all(user.startswith(home) for user in users), (module, users)


def test_the_layout_rule_catches_a_wrong_way_import(tmp_path):
    """The checker itself: an index module importing the model package, even for typing only,
    is reported; one importing codes and the shared modules is not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from hashcli.model.hashnet import HashNet\n"
    )
    good = tmp_path / "good.py"
    good.write_text("from hashcli.codes.bits import code_bytes\nfrom hashcli.errors import E\n")
    assert sorted(_wrong_way("index", [bad, good])) == [
        "bad.py imports hashcli.model.hashnet",
        "bad.py imports hashcli.model.hashnet.HashNet",
    ]
