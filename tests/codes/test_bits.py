"""Packing outputs into bits: the sign rule, {0, 1} codes, bit order and padding."""

from __future__ import annotations

import numpy as np
import pytest

from hashcli.codes import code_bytes, pack_binary, pack_bits, unpack_bits


def test_sign_rule_counts_zero_as_one_most_significant_bit_first():
    outputs = np.array([[0.5, -0.1, 0.0, -0.0, -3.0, 2.0, -1e-9, 1e-9, 0.7, -0.2]])
    # bits: 1 0 1 1 0 1 0 1 | 1 0 (+ six zero padding bits)
    assert pack_bits(outputs).tolist() == [[0b10110101, 0b10000000]]


def test_plus_minus_one_integers_are_accepted():
    codes = np.array([[1, -1, -1, 1, 1, 1, -1, -1]], dtype=np.int8)
    assert pack_bits(codes).tolist() == [[0b10011100]]


@pytest.mark.parametrize(
    "bad",
    [
        np.array([[0, 1, 1, 0]]),  # {0, 1}: zeros would silently become 1-bits
        np.array([[True, False]]),
        np.array([[2, -1]]),
    ],
)
def test_pack_bits_refuses_what_is_not_a_sign_code(bad):
    with pytest.raises(ValueError):
        pack_bits(bad)


def test_pack_bits_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        pack_bits(np.array([[0.1, np.nan]]))


def test_pack_binary_keeps_zero_as_zero():
    assert pack_binary(np.array([[0, 1, 1, 0, 0, 0, 0, 1, 1]])).tolist() == [
        [0b01100001, 0b10000000]
    ]
    assert pack_binary(np.array([[False, True]])).tolist() == [[0b01000000]]
    with pytest.raises(ValueError):
        pack_binary(np.array([[0, -1]]))


@pytest.mark.parametrize("bits", [1, 7, 8, 12, 48, 64, 65])
def test_round_trip_and_padding(bits):
    rng = np.random.default_rng(bits)
    outputs = rng.standard_normal((20, bits))
    packed = pack_bits(outputs)
    assert packed.dtype == np.uint8 and packed.shape == (20, code_bytes(bits))
    assert np.array_equal(unpack_bits(packed, bits), (outputs >= 0).astype(np.uint8))
    spare = code_bytes(bits) * 8 - bits
    assert not np.any(packed[:, -1] & ((1 << spare) - 1))
    # Both conventions give the same code for the same bits.
    assert np.array_equal(pack_binary(outputs >= 0), packed)
    assert np.array_equal(pack_bits(np.where(outputs >= 0, 1, -1)), packed)


def test_unpack_checks_its_input():
    with pytest.raises(ValueError):
        unpack_bits(np.zeros((2, 3), dtype=np.uint8), 16)
