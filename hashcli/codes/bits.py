"""Packing network outputs into binary codes, and back (numpy only).

A code of ``bits`` bits is stored as ``ceil(bits / 8)`` uint8 bytes, most significant bit first
(``numpy.packbits``' default order), with the unused low bits of the last byte set to 0. This is
the layout FAISS binary indexes use, so Hamming distances are plain XOR-popcounts of the bytes.

Two packers, because the two input conventions disagree on what 0 means:

* :func:`pack_bits` takes real-valued outputs (tanh, logits) or ``{-1, +1}`` codes: bit j is 1
  exactly when output j is ``>= 0``, so an output of exactly 0 counts as +1 (the original
  project counted it as matching neither sign, which made distances wrong).
* :func:`pack_binary` takes ``{0, 1}`` or boolean codes: bit j is the value itself.
"""

from __future__ import annotations

import numpy as np

#: Number of 1 bits of every byte value: ``BYTE_POPCOUNT[b]`` for a uint8 ``b``; uint8 (256,).
#: Indexing it with XORed code bytes gives per-byte Hamming distances (numpy < 2 has no
#: ``bitwise_count``).
BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def code_bytes(bits: int) -> int:
    """Bytes per packed code: ``ceil(bits / 8)``."""
    if bits < 1:
        raise ValueError(f"a code needs at least 1 bit, got {bits}")
    return (bits + 7) // 8


def padding_mask(bits: int) -> int:
    """The unused low bits of the last byte of a ``bits``-bit code (0 when bits % 8 == 0)."""
    spare = code_bytes(bits) * 8 - bits
    return (1 << spare) - 1


def _check_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be 2-D (N, bits), got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{what} must have at least one column (bit), got shape {array.shape}")
    return array


def pack_bits(outputs: np.ndarray) -> np.ndarray:
    """Pack real-valued or ``{-1, +1}`` outputs by sign.

    Args:
        outputs: (N, bits) float array (any float dtype), or an integer array holding only
            -1 and +1.

    Returns:
        uint8 (N, ceil(bits / 8)): bit j of row i is 1 exactly when ``outputs[i, j] >= 0``.

    Raises:
        ValueError: on NaN, on a boolean array, or on an integer array with values other than
            -1 and +1 (a ``{0, 1}`` array belongs to :func:`pack_binary`: under the sign rule
            its zeros would become 1-bits).
    """
    outputs = _check_2d(outputs, "outputs")
    if outputs.dtype == np.bool_:
        raise ValueError("boolean codes are {0, 1} codes: use pack_binary, not pack_bits")
    if np.issubdtype(outputs.dtype, np.integer):
        if outputs.size and not np.all((outputs == 1) | (outputs == -1)):
            raise ValueError(
                "integer outputs for pack_bits must be -1 or +1; use pack_binary for {0, 1} "
                "codes, or pass real-valued network outputs as floats"
            )
    elif np.issubdtype(outputs.dtype, np.floating):
        if np.isnan(outputs).any():
            raise ValueError("outputs contain NaN; a NaN has no sign")
    else:
        raise ValueError(f"outputs must be a float or integer array, got dtype {outputs.dtype}")
    return np.packbits(outputs >= 0, axis=1)


def pack_binary(codes: np.ndarray) -> np.ndarray:
    """Pack ``{0, 1}`` (or boolean) codes as they are.

    Args:
        codes: (N, bits) boolean array, or a numeric array holding only 0 and 1.

    Returns:
        uint8 (N, ceil(bits / 8)): bit j of row i equals ``codes[i, j]``.

    Raises:
        ValueError: when a value is neither 0 nor 1.
    """
    codes = _check_2d(codes, "codes")
    if codes.dtype != np.bool_:
        if codes.size and not np.all((codes == 0) | (codes == 1)):
            raise ValueError("codes for pack_binary must hold only 0 and 1")
        codes = codes == 1
    return np.packbits(codes, axis=1)


def unpack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unpack packed codes.

    Args:
        codes: uint8 (N, ceil(bits / 8)), as made by :func:`pack_bits` / :func:`pack_binary`.
        bits: code length in bits.

    Returns:
        uint8 (N, bits) of 0s and 1s.
    """
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != code_bytes(bits):
        raise ValueError(
            f"packed {bits}-bit codes must be uint8 (N, {code_bytes(bits)}), "
            f"got {codes.dtype} {codes.shape}"
        )
    return np.unpackbits(codes, axis=1, count=bits)
