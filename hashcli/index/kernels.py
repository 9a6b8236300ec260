"""FAISS's C++ Hamming loops for the evaluator (:mod:`hashcli.metrics`).

XOR-popcount distances (``faiss.hammings``) and integer histograms (``faiss.ivec_hist``) run
per (query, database item) pair, so they decide the evaluator's speed; both release the GIL
and run on the calling thread (no OpenMP: ``faiss.omp_set_num_threads`` does not change their
speed), so Python threads over query blocks use every core without oversubscribing them.
FAISS is imported when the class is built: importing this module stays light.
"""

from __future__ import annotations

import numpy as np


class FaissKernels:
    """Fast backend: FAISS's C++ loops (they release the GIL)."""

    name = "faiss"

    def __init__(self) -> None:
        import faiss

        self._hammings = faiss.hammings
        self._ivec_hist = faiss.ivec_hist
        self._ptr = faiss.swig_ptr

    def distances(self, queries: np.ndarray, database: np.ndarray, out: np.ndarray) -> None:
        """Hamming distances: uint8 (nq, W) x uint8 (nb, W) -> out int32 (nq, nb); W % 8 == 0."""
        ptr = self._ptr
        self._hammings(
            ptr(queries), ptr(database), len(queries), len(database), queries.shape[1], ptr(out)
        )

    def histogram(self, values: np.ndarray, nbins: int, out: np.ndarray) -> None:
        """out[v] = number of entries equal to v, for int32 values in [0, nbins)."""
        self._ivec_hist(len(values), self._ptr(values), nbins, self._ptr(out))
