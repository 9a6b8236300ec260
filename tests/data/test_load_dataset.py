"""load_dataset: names, defaults, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hashcli.data import DATASET_NAMES, load_dataset
from hashcli.errors import HashretError


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(HashretError) as info:
        load_dataset("imagenet")
    for name in DATASET_NAMES:
        assert name in str(info.value)


def test_root_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHRET_DATA", str(tmp_path / "env-root"))
    dataset = load_dataset("digits")
    assert dataset.root == tmp_path / "env-root" / "digits"


def test_bad_fractions():
    with pytest.raises(HashretError, match="validation fraction"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(HashretError, match="test fraction"):
        load_dataset("folder", test_fraction=0)


def test_boxes_only_where_there_are_some(tmp_path):
    with pytest.raises(HashretError, match="no bounding boxes"):
        load_dataset("digits", tmp_path, boxes=True)


def test_importing_the_readers_is_light():
    code = (
        "import sys\n"
        "import hashcli.data, hashcli.data.cub, hashcli.data.dogs, hashcli.data.folder\n"
        "import hashcli.data.digits, hashcli.data.download, hashcli.data.splits\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'scipy', 'rich', 'typer')"
        " if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_cli_offers_the_same_dataset_names():
    from hashcli.cli import _options

    assert _options.DATASET_NAMES == DATASET_NAMES
