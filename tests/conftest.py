"""Shared test settings: GPU tests are skipped without CUDA; the real CUB subset is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Training exports model.onnx at the end (seconds per run); the suite trains many tiny runs, so
# it skips that except where a test asks for it (tests/workflows/test_export.py). Set here, at
# import, so that the CLI's subprocesses inherit it.
os.environ["HASHRET_EXPORT_ONNX"] = "0"

SHARED_CUB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cub25"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def cub25_root() -> Path:
    """The real 25-class CUB subset beside the checkout; skips when absent (a user's clone)."""
    if not (SHARED_CUB / "CUB_200_2011" / "images.txt").is_file():
        pytest.skip("the CUB subset ../shared/data/cub25 is not present")
    return SHARED_CUB
