"""The two inner loops of the evaluator: XOR-popcount distances and integer histograms.

Both run per pair of (query, database item), so they decide the evaluator's speed. The
evaluator takes them as an argument (:class:`HammingKernels`), so that its array passes stay
plain numpy; two implementations compute the same numbers:

* :class:`NumpyKernels` (here, the default): ``bitwise_count`` (or a byte lookup table on
  numpy < 2) and ``bincount``; the reference.
* ``FaissKernels`` of the index package (the one FAISS importer): FAISS's C++ ``hammings``
  (popcount over 64-bit words) and ``ivec_hist``, which release the GIL, so Python threads
  over query blocks use every core; about ten times faster (0.5 ns per pair per core on
  64-bit codes). The workflows pass these (``evaluation_kernels``).

A third kind, :class:`hashcli.metrics.compiled.CompiledKernels` (numba), replaces the array
passes themselves: it has a ``rank_block`` method, which the evaluator then hands whole query
blocks (about the time of a FAISS k=1 scan, where the passes over FAISS's loops take 1.7 to
10 times that, more with denser relevance).

Codes are padded to whole 64-bit words first (:func:`pad_to_words`): zero bytes change no
distance, and the word kernels need them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hashcli.codes.bits import BYTE_POPCOUNT


class HammingKernels(Protocol):
    """What the evaluator needs: the two inner loops (both may run in several threads)."""

    name: str

    def distances(self, queries: np.ndarray, database: np.ndarray, out: np.ndarray) -> None:
        """Hamming distances: uint8 (nq, W) x uint8 (nb, W) -> out int32 (nq, nb); W % 8 == 0."""

    def histogram(self, values: np.ndarray, nbins: int, out: np.ndarray) -> None:
        """out[v] = number of entries equal to v, for int32 values in [0, nbins)."""


class BlockKernels(Protocol):
    """Kernels that compute a whole query block's statistics themselves (see
    :meth:`hashcli.metrics.compiled.CompiledKernels.rank_block`)."""

    name: str

    def rank_block(
        self,
        queries: np.ndarray,
        database: np.ndarray,
        values: int,
        ks: tuple[int, ...],
        positions: np.ndarray | None = None,
        query_labels: np.ndarray | None = None,
        database_labels: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


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
        else:  # numpy < 2.0: popcount through the byte table

            def popcount(words: np.ndarray) -> np.ndarray:
                as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
                return BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.uint8)

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
