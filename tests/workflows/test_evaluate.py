"""Which kernels the evaluator gets: the compiled loop when numba imports, else FAISS's."""

from __future__ import annotations

import sys

import pytest

from hashcli.errors import HashretError
from hashcli.workflows.evaluate import evaluation_kernels


def test_auto_prefers_the_compiled_loop_then_faiss(monkeypatch):
    assert evaluation_kernels().name == "numba"
    assert evaluation_kernels("faiss").name == "faiss"
    assert evaluation_kernels("numpy").name == "numpy"
    # without numba (an import of the compiled module fails), auto falls back to FAISS
    monkeypatch.setitem(sys.modules, "hashcli.metrics.compiled", None)
    assert evaluation_kernels().name == "faiss"
    with pytest.raises(ImportError):
        evaluation_kernels("numba")


def test_unknown_backend_is_an_error():
    with pytest.raises(HashretError, match="unknown backend 'gpu'"):
        evaluation_kernels("gpu")
