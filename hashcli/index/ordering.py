"""The ordering rule of every search: neighbours by (Hamming distance, row), missing ones last.

FAISS does not promise it (a GPU or an approximate index returns the members of a cut tie group
in any order, or short lists padded with row -1), so every search passes FAISS's answer through
:func:`order_rows` and asks :func:`cut_tie_groups` which queries need their k-th tie group
completed. No faiss here: these work on FAISS's (D, I) arrays only.
"""

# ruff: noqa: E741  (D, I: FAISS's own names for distances and ids)

from __future__ import annotations

import numpy as np


def order_rows(D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of (D, I) sorted by (distance, id), missing ids (-1) last."""
    key = np.where(I >= 0, D.astype(np.int64), np.iinfo(np.int64).max)
    order = np.lexsort((I, key))
    return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)


def cut_tie_groups(D: np.ndarray, I: np.ndarray, k: int, ntotal: int) -> np.ndarray:
    """bool (nq,): the queries whose k-th neighbour's tie group may go on past the first k.

    ``D``, ``I``: (nq, >= k), ordered by :func:`order_rows`, over an index of ``ntotal``
    codes. A (k+1)-th column settles it: the group goes on exactly when that neighbour exists
    at the k-th distance. Without one (FAISS's GPU limit), every query with a k-th neighbour
    may be cut, unless k is the whole database.
    """
    if D.shape[1] > k:
        return (I[:, k] >= 0) & (D[:, k] == D[:, k - 1])
    if k < ntotal:
        return I[:, k - 1] >= 0
    return np.zeros(len(I), dtype=bool)
