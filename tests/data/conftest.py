"""Fixtures for the dataset tests; the builders themselves live in tests/builders.py."""

from __future__ import annotations

import pytest
from builders import build_cub, build_dogs, write_image


@pytest.fixture
def cub_builder():
    return build_cub


@pytest.fixture
def dogs_builder():
    return build_dogs


@pytest.fixture
def image_writer():
    return write_image


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path, monkeypatch):
    """Keep the digits' cache fallback (and the data root default) inside the test folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HASHRET_DATA", str(tmp_path / "default-data-root"))
