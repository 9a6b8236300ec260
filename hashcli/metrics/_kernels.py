"""The two inner loops of the evaluator: XOR-popcount distances and integer histograms.

Both run per pair of (query, database item), so they decide the evaluator's speed. Two
backends compute the same numbers:

* ``faiss``: FAISS's C++ ``hammings`` (popcount over 64-bit words) and ``ivec_hist``. Both
  release the GIL, so Python threads over query blocks use every core. About 0.5 ns per pair
  per core for distance plus histogram on 64-bit codes, the same order as a FAISS k-NN scan.
* ``numpy``: ``bitwise_count`` (or a byte lookup table on numpy < 2) and ``bincount``; ten
  times slower, used when FAISS cannot be imported, and in the tests as a second path.

The FAISS backend lives in :mod:`hashcli.index.kernels` (the index package is the only one
that imports FAISS) and is imported lazily. Codes must be padded to whole 64-bit words first
(:func:`pad_to_words`): zero bytes change no distance, and FAISS's word kernels need them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BACKENDS = ("auto", "faiss", "numpy")


def pad_to_words(codes: np.ndarray) -> np.ndarray:
    """uint8 (N, nbytes) -> C-contiguous uint8 (N, 8 * ceil(nbytes / 8)), zero padded."""
    n, nbytes = codes.shape
    width = -(-nbytes // 8) * 8
    if width == nbytes:
        return np.ascontiguousarray(codes)
    padded = np.zeros((n, width), dtype=np.uint8)
    padded[:, :nbytes] = codes
    return padded


class NumpyKernels:
    """Reference backend: plain numpy."""

    name = "numpy"

    def __init__(self) -> None:
        if hasattr(np, "bitwise_count"):
            self._popcount = np.bitwise_count
        else:  # numpy < 2.0: popcount through a 256-entry table over the bytes
            table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

            def popcount(words: np.ndarray) -> np.ndarray:
                as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
                return table[as_bytes].sum(axis=-1, dtype=np.uint8)

            self._popcount = popcount

    def distances(self, queries: np.ndarray, database: np.ndarray, out: np.ndarray) -> None:
        """Hamming distances: uint8 (nq, W) x uint8 (nb, W) -> out int32 (nq, nb); W % 8 == 0."""
        q = queries.view(np.uint64)
        x = database.view(np.uint64)
        out[...] = 0
        for word in range(q.shape[1]):
            out += self._popcount(q[:, word, None] ^ x[None, :, word])

    def histogram(self, values: np.ndarray, nbins: int, out: np.ndarray) -> None:
        """out[v] = number of entries equal to v, for int32 values in [0, nbins)."""
        out[...] = np.bincount(values, minlength=nbins)[:nbins]


def get_kernels(backend: str = "auto") -> Any:
    """The kernels for ``backend``: "faiss", "numpy", or "auto" (FAISS when importable)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "numpy":
        return NumpyKernels()
    try:
        from hashcli.index.kernels import FaissKernels

        return FaissKernels()
    except ImportError:
        if backend == "faiss":
            raise
        return NumpyKernels()
