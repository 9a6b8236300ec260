"""Statistics of a set of binary codes: how well the bits are used (numpy only).

They explain why one method beats another: codes that collapse (many items sharing a code or a
distance) leave the exact evaluator little to rank, whatever the loss promised.

>>> from hashcli.metrics import code_statistics
>>> stats = code_statistics(codes, labels, bits=64)  # codes: packed uint8 (N, 8)
>>> stats.effective_bits, stats.distinct_codes, stats.largest_bucket_share

* ``ones_share_per_bit``: the share of items whose bit k is 1 (bit k as
  :func:`hashcli.codes.unpack_bits` numbers it); 0.5 is a bit used evenly. ``worst_bit`` is the
  bit farthest from 0.5 (the lowest index among equally far bits).
* ``effective_bits``: the sum over bits of the binary entropy ``H(p_k)``, in bits: ``bits`` when
  every bit is balanced, 0 for a constant bit. (An upper bound of the code's information: it
  ignores correlations between bits.)
* ``distinct_codes``, ``largest_bucket`` and ``largest_bucket_share``: how many different codes
  there are, and how many items (and which share of all) share the most common one.
* ``mean_hamming_within_class`` / ``mean_hamming_between_classes``: the mean Hamming distance
  over unordered pairs ``i < j`` of distinct items of the same class / of different classes.
  Computed exactly in O(N x bits) from per-bit counts (the pairs that differ at bit k are the
  ones x zeros pairs; within classes, the sum over classes of each class's ones x zeros), not
  from an N x N matrix, so it works at millions of items. None without labels, without such
  pairs, or for multi-hot labels (where "same class" has no single meaning).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashcli.codes.bits import code_bytes, unpack_bits

_CHUNK_CELLS = 1 << 22  # unpacked (row, bit) cells per block: bounds the memory at any N


@dataclass(frozen=True)
class CodeStats:
    """What :func:`code_statistics` measures (see the module docstring for each field).

    Shares and means are floats, or None where undefined (no codes, no pairs, no labels);
    never NaN. :meth:`to_dict` gives the JSON form.
    """

    n_codes: int
    bits: int
    ones_share_per_bit: list[float | None]
    worst_bit: int | None
    worst_bit_ones_share: float | None
    effective_bits: float
    distinct_codes: int
    largest_bucket: int
    largest_bucket_share: float | None
    mean_hamming_within_class: float | None
    mean_hamming_between_classes: float | None

    def to_dict(self) -> dict[str, Any]:
        """Every field under its name, as JSON-ready builtins (lists, ints, floats, None)."""
        return dataclasses.asdict(self)


def code_statistics(
    codes: np.ndarray, labels: np.ndarray | None = None, bits: int | None = None
) -> CodeStats:
    """Statistics of packed binary codes.

    Args:
        codes: uint8 (N, ceil(bits / 8)) packed codes (:func:`hashcli.codes.pack_bits`).
        labels: int (N,) class indices; or (N, C) multi-hot, for which the within / between
            class distances are None (an item pair may share one label and differ in another);
            or None (those distances are None too).
        bits: code length in bits (default: 8 x the bytes per code).

    Returns:
        A :class:`CodeStats`. With N = 0 the shares and ``worst_bit`` are None and
        ``effective_bits`` is 0.

    Raises:
        ValueError: codes that are not uint8 (N, ceil(bits / 8)), or labels not of N rows.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be uint8 (N, bytes), got {codes.dtype} {codes.shape}")
    bits = codes.shape[1] * 8 if bits is None else int(bits)
    if codes.dtype != np.uint8 or codes.shape[1] != code_bytes(bits):
        raise ValueError(
            f"packed {bits}-bit codes must be uint8 (N, {code_bytes(bits)}), "
            f"got {codes.dtype} {codes.shape}"
        )
    n = len(codes)
    class_index = _class_index(labels, n)
    ones, class_sizes, class_ones = _bit_counts(codes, bits, class_index)

    if n:
        share = ones / n
        worst = int(np.argmax(np.abs(share - 0.5)))  # argmax: the first of equally far bits
        distinct, largest = _buckets(codes)
    else:
        share, worst, distinct, largest = None, None, 0, 0
    within, between = _mean_distances(n, ones, class_sizes, class_ones)
    return CodeStats(
        n_codes=n,
        bits=bits,
        ones_share_per_bit=[None] * bits if share is None else [float(p) for p in share],
        worst_bit=worst,
        worst_bit_ones_share=None if share is None else float(share[worst]),
        effective_bits=0.0 if share is None else float(binary_entropy(share).sum()),
        distinct_codes=distinct,
        largest_bucket=largest,
        largest_bucket_share=largest / n if n else None,
        mean_hamming_within_class=within,
        mean_hamming_between_classes=between,
    )


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log2 p - (1 - p) log2 (1 - p) in bits, element-wise; 0 at p = 0 and p = 1."""
    p = np.asarray(p, dtype=np.float64)
    q = 1.0 - p
    inside = (p > 0) & (q > 0)
    h = np.zeros_like(p)
    h[inside] = -(p[inside] * np.log2(p[inside]) + q[inside] * np.log2(q[inside]))
    return h


def _class_index(labels: np.ndarray | None, n: int) -> np.ndarray | None:
    """int64 (N,) class numbers 0..C-1 for single-label data; None otherwise."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} codes")
    if labels.ndim != 1:
        return None  # multi-hot: no single notion of "the same class"
    return np.unique(labels, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _bit_counts(
    codes: np.ndarray, bits: int, class_index: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """int64 (bits,) ones per bit; with classes also int64 (C,) class sizes and (C, bits)
    ones per class and bit. Unpacks a block of rows at a time."""
    ones = np.zeros(bits, dtype=np.int64)
    class_sizes = class_ones = None
    if class_index is not None:
        n_classes = int(class_index.max()) + 1 if len(class_index) else 0
        class_sizes = np.bincount(class_index, minlength=n_classes).astype(np.int64)
        class_ones = np.zeros(n_classes * bits, dtype=np.int64)
        bit_offsets = np.arange(bits, dtype=np.int64)
    rows = max(1, _CHUNK_CELLS // bits)
    for start in range(0, len(codes), rows):
        block = unpack_bits(codes[start : start + rows], bits)  # uint8 (rows, bits) of 0/1
        ones += block.sum(axis=0, dtype=np.int64)
        if class_index is not None:
            # Flat (class, bit) cell of every 1-bit of the block, counted in one bincount.
            cells = class_index[start : start + rows, None] * bits + bit_offsets
            class_ones += np.bincount(cells[block.astype(bool)], minlength=class_ones.size)
    if class_ones is not None:
        class_ones = class_ones.reshape(-1, bits)
    return ones, class_sizes, class_ones


def _buckets(codes: np.ndarray) -> tuple[int, int]:
    """(number of distinct rows, size of the largest group of equal rows) of uint8 (N, B)."""
    width = codes.shape[1]
    if width <= 8:
        # One uint64 per code (zero bytes appended): an integer sort, the fastest unique.
        keys = np.zeros((len(codes), 8), dtype=np.uint8)
        keys[:, :width] = codes
        keys = keys.view(np.uint64).reshape(-1)
    else:
        keys = np.ascontiguousarray(codes).view(np.dtype((np.void, width))).reshape(-1)
    _, counts = np.unique(keys, return_counts=True)
    return len(counts), int(counts.max())


def _mean_distances(
    n: int, ones: np.ndarray, class_sizes: np.ndarray | None, class_ones: np.ndarray | None
) -> tuple[float | None, float | None]:
    """Mean Hamming distance over same-class and different-class pairs (see the module)."""
    if class_sizes is None or class_ones is None or n < 2:
        return None, None
    all_differing = int((ones * (n - ones)).sum())
    within_differing = int((class_ones * (class_sizes[:, None] - class_ones)).sum())
    all_pairs = n * (n - 1) // 2
    within_pairs = int((class_sizes * (class_sizes - 1) // 2).sum())
    between_pairs = all_pairs - within_pairs
    within = within_differing / within_pairs if within_pairs else None
    between = (all_differing - within_differing) / between_pairs if between_pairs else None
    return within, between
