"""code_statistics() against oracles: a loop over all pairs, a Counter of code tuples, entropy
with math.log2, and tiny examples written out by hand."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

from hashcli.codes import pack_binary
from hashcli.metrics import CodeStats, code_statistics
from hashcli.metrics import code_stats as code_stats_module

H_QUARTER = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 0.8113 bits


def _entropy(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _oracle(rows: list[tuple[int, ...]], labels: list[int] | None) -> dict:
    """Every statistic by plain loops over the unpacked rows."""
    n, bits = len(rows), len(rows[0])
    counts = Counter(rows)
    shares = [sum(row[k] for row in rows) / n for k in range(bits)]
    worst = min(range(bits), key=lambda k: (-abs(shares[k] - 0.5), k))
    within, between = [], []
    if labels is not None:
        for i, j in itertools.combinations(range(n), 2):
            distance = sum(a != b for a, b in zip(rows[i], rows[j], strict=True))
            (within if labels[i] == labels[j] else between).append(distance)
    return {
        "n_codes": n,
        "bits": bits,
        "ones_share_per_bit": shares,
        "worst_bit": worst,
        "worst_bit_ones_share": shares[worst],
        "effective_bits": math.fsum(_entropy(p) for p in shares),
        "distinct_codes": len(counts),
        "largest_bucket": max(counts.values()),
        "largest_bucket_share": max(counts.values()) / n,
        "mean_hamming_within_class": sum(within) / len(within) if within else None,
        "mean_hamming_between_classes": sum(between) / len(between) if between else None,
    }


def _check_against_oracle(bit_rows: np.ndarray, labels: np.ndarray | None) -> None:
    bits = bit_rows.shape[1]
    stats = code_statistics(pack_binary(bit_rows), labels, bits)
    rows = [tuple(row) for row in bit_rows.astype(int).tolist()]
    expected = _oracle(rows, None if labels is None else labels.tolist())
    got = stats.to_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_a_tiny_example_by_hand():
    rows = [
        [1, 0, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
    ]
    stats = code_statistics(pack_binary(np.array(rows)), np.array([0, 0, 1, 1]), 8)
    assert (stats.n_codes, stats.bits) == (4, 8)
    assert stats.ones_share_per_bit == [1.0, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.5]
    # H(1) = H(0) = 0 (five bits), H(0.5) = 1 (two bits), H(0.25) = 0.8113 (two bits).
    assert stats.effective_bits == pytest.approx(2 + 2 * H_QUARTER, abs=1e-12)
    # Bits 0, 4, 5 and 6 are all 0.5 away from 0.5: the lowest index is reported.
    assert (stats.worst_bit, stats.worst_bit_ones_share) == (0, 1.0)
    # Codes 0 and 1 are equal: 3 distinct codes, the largest bucket holds 2 of 4.
    assert (stats.distinct_codes, stats.largest_bucket, stats.largest_bucket_share) == (3, 2, 0.5)
    # Same class: (0, 1) at distance 0, (2, 3) at distance 2: mean 1. Different classes:
    # (0, 2) 2, (0, 3) 4, (1, 2) 2, (1, 3) 4: mean 3.
    assert stats.mean_hamming_within_class == 1.0
    assert stats.mean_hamming_between_classes == 3.0


def test_worst_bit_is_the_farthest_from_a_half_even_below_it():
    # Shares 0.5, 0.75, 0, 0.75: bit 2 (always 0) is the farthest from 0.5, from below.
    rows = np.array([[1, 1, 0, 1], [0, 1, 0, 1], [1, 0, 0, 0], [0, 1, 0, 1]])
    stats = code_statistics(pack_binary(rows), None, 4)
    assert stats.ones_share_per_bit == [0.5, 0.75, 0.0, 0.75]
    assert (stats.worst_bit, stats.worst_bit_ones_share) == (2, 0.0)
    assert stats.effective_bits == pytest.approx(1 + 2 * H_QUARTER, abs=1e-12)


@pytest.mark.parametrize(("seed", "bits"), [(0, 24), (1, 12), (2, 64), (3, 100)])
def test_random_codes_against_loops(seed, bits):
    """Bits of unequal balance, a bucket of at least 6, and code widths on every path: whole
    bytes, padding bits (12, 100), exactly 8 bytes (64) and more than 8 bytes (100)."""
    rng = np.random.default_rng(seed)
    n = 60
    bit_rows = rng.random((n, bits)) < rng.random(bits)
    bit_rows[10:15] = bit_rows[3]
    bit_rows[:, 1] = True  # a constant bit
    labels = rng.integers(0, 4, n)
    _check_against_oracle(bit_rows, labels)
    stats = code_statistics(pack_binary(bit_rows), labels, bits)
    assert stats.largest_bucket >= 6 and len(stats.ones_share_per_bit) == bits


def test_blocks_of_rows_give_the_same_numbers(monkeypatch):
    """Many small blocks (the path of millions of rows) against the oracle."""
    monkeypatch.setattr(code_stats_module, "_CHUNK_CELLS", 7 * 16)  # 7 rows per block
    rng = np.random.default_rng(5)
    bit_rows = rng.random((50, 16)) < 0.3
    _check_against_oracle(bit_rows, rng.integers(-2, 3, 50))  # negative labels are classes


def test_without_labels_and_with_multi_hot_labels_class_distances_are_none():
    codes = pack_binary(np.array([[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1]]))
    for labels in (None, np.array([[True, False], [True, True]])):
        stats = code_statistics(codes, labels, 8)
        assert stats.mean_hamming_within_class is None
        assert stats.mean_hamming_between_classes is None
        assert stats.effective_bits == 8.0 and stats.distinct_codes == 2
        assert stats.ones_share_per_bit == [0.5] * 8


def test_one_class_one_item_and_no_codes():
    codes = pack_binary(np.array([[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1]]))
    same = code_statistics(codes, np.array([3, 3]), 8)  # no pair of different classes
    assert same.mean_hamming_within_class == 8.0 and same.mean_hamming_between_classes is None
    apart = code_statistics(codes, np.array([3, 4]), 8)  # no pair of the same class
    assert apart.mean_hamming_within_class is None and apart.mean_hamming_between_classes == 8.0
    single = code_statistics(codes[:1], np.array([0]), 8)  # no pairs at all
    assert single.mean_hamming_within_class is None
    assert single.mean_hamming_between_classes is None
    assert (single.distinct_codes, single.largest_bucket, single.largest_bucket_share) == (1, 1, 1)
    assert single.effective_bits == 0.0 and single.ones_share_per_bit == [1.0, 0.0] * 4
    empty = code_statistics(np.zeros((0, 2), np.uint8), np.zeros(0, int), 16)
    assert empty.to_dict() == {
        "n_codes": 0,
        "bits": 16,
        "ones_share_per_bit": [None] * 16,
        "worst_bit": None,
        "worst_bit_ones_share": None,
        "effective_bits": 0.0,
        "distinct_codes": 0,
        "largest_bucket": 0,
        "largest_bucket_share": None,
        "mean_hamming_within_class": None,
        "mean_hamming_between_classes": None,
    }


def test_all_equal_and_all_distinct_codes():
    equal = code_statistics(np.full((5, 2), 0b10100101, np.uint8), np.arange(5), 16)
    assert (equal.distinct_codes, equal.largest_bucket, equal.largest_bucket_share) == (1, 5, 1.0)
    assert equal.effective_bits == 0.0 and equal.mean_hamming_between_classes == 0.0
    assert equal.ones_share_per_bit == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0] * 2
    distinct = code_statistics(np.arange(256, dtype=np.uint8)[:, None], None, 8)
    assert (distinct.distinct_codes, distinct.largest_bucket) == (256, 1)
    assert distinct.largest_bucket_share == 1 / 256
    assert distinct.effective_bits == pytest.approx(8.0, abs=1e-12)
    assert distinct.ones_share_per_bit == [0.5] * 8


def test_codes_differing_only_in_later_bytes_are_distinct():
    """Rows of 9 bytes (not one integer key) equal in their first 8 bytes."""
    codes = np.zeros((3, 9), np.uint8)
    codes[1, 8] = 0b10000000
    codes[2, 8] = 0b10000000
    stats = code_statistics(codes, None, 72)
    assert (stats.distinct_codes, stats.largest_bucket) == (2, 2)


def test_bits_default_and_bad_inputs():
    codes = pack_binary(np.eye(16, dtype=int))
    assert code_statistics(codes).bits == 16
    with pytest.raises(
        ValueError, match=r"24-bit codes must be uint8 \(N, 3\), got uint8 \(16, 2\)"
    ):
        code_statistics(codes, None, 24)
    with pytest.raises(ValueError, match="uint8"):
        code_statistics(codes.astype(np.int64), None, 16)
    with pytest.raises(ValueError, match="5 labels for 16 codes"):
        code_statistics(codes, np.zeros(5, int), 16)


def test_to_dict_is_plain_json_without_nan():
    rng = np.random.default_rng(9)
    stats = code_statistics(pack_binary(rng.random((20, 10)) < 0.5), rng.integers(0, 3, 20), 10)
    assert isinstance(stats, CodeStats)
    data = json.loads(json.dumps(stats.to_dict(), allow_nan=False))
    assert data == stats.to_dict()
    assert {type(v) for v in data["ones_share_per_bit"]} == {float}
    assert isinstance(data["worst_bit"], int) and isinstance(data["distinct_codes"], int)
