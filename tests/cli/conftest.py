"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import pytest
from workflows.test_query import make_fake_run


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.delenv("HASHRET_DEBUG", raising=False)
    monkeypatch.delenv("HASHRET_RUN", raising=False)
    return make_fake_run(tmp_path)
