"""Byte layout of packed codes: the input contract and the zero padding FAISS is fastest with.

Codes are uint8 arrays of shape (N, ceil(bits / 8)), bits packed most significant first (as
``np.packbits`` does), the unused low bits of the last byte zero. Hamming distance does not care
about bit order, and appending zero bytes to BOTH sides leaves every distance unchanged.
"""

from __future__ import annotations

import numpy as np

from hashcli.codes.bits import code_bytes
from hashcli.errors import HashretError

#: Code sizes (bytes) FAISS 1.15 has a specialised Hamming kernel for. Measured on the 2-core
#: development machine, IndexBinaryFlat over 300,000 random codes, k=10, per query:
#: 4 B 57 us, 8 B 73 us, 16 B 83 us, 20 B 118 us, 32 B 97 us, 64 B 151 us; every other size
#: from 1 to 48 bytes took 290-460 us (2 B 342, 3 B 373, 6 B 376, 12 B 364, 24 B 335 us).
#: Padding to the next size in this list is therefore always faster, up to 64 bytes.
FAST_CODE_BYTES: tuple[int, ...] = (4, 8, 16, 20, 32, 64)


def padded_code_bytes(bits: int) -> int:
    """Bytes per code inside the index: the smallest fast size that holds ``bits`` bits.

    Codes longer than 64 bytes (512 bits) are left as they are (not measured).
    """
    size = code_bytes(bits)
    return next((fast for fast in FAST_CODE_BYTES if fast >= size), size)


def check_positive_bits(bits: object) -> int:
    """``bits`` as an int if it is any positive integer (an index takes every code length),
    else a HashretError."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or int(bits) < 1:
        raise HashretError(f"the code length must be a positive number of bits; got {bits!r}")
    return int(bits)


def check_codes(x: object, bits: int, padded: int | None = None, what: str = "codes") -> np.ndarray:
    """Check ``x`` against the packed-code contract; return it C-contiguous, unpadded or padded.

    Accepts (N, ceil(bits/8)) or, already padded, (N, ``padded`` bytes; default
    ``padded_code_bytes(bits)``) with zero padding bytes. Raises HashretError saying what was
    expected otherwise.
    """
    nbytes = code_bytes(bits)
    padded = padded_code_bytes(bits) if padded is None else padded
    expected = (
        f"a uint8 array of shape (N, {nbytes}) holding {bits}-bit codes packed with np.packbits"
    )
    if not isinstance(x, np.ndarray):
        raise HashretError(f"{what} must be {expected}; got {type(x).__name__}")
    if x.ndim == 1 and x.shape[0] in (nbytes, padded) and x.dtype == np.uint8:
        raise HashretError(
            f"{what} must be 2-D, one code per row; for a single code pass codes[None, :]"
        )
    if x.ndim != 2 or x.dtype != np.uint8 or x.shape[1] not in (nbytes, padded):
        hint = ""
        if x.ndim == 2 and x.shape[1] == bits and bits != nbytes:
            hint = " (it looks like one value per bit: pack it with np.packbits(x > 0, axis=1))"
        raise HashretError(
            f"{what} must be {expected}; got a {x.dtype} array of shape {x.shape}{hint}"
        )
    x = np.ascontiguousarray(x)
    if x.shape[1] == padded and padded != nbytes and x[:, nbytes:].any():
        raise HashretError(f"{what}: the padding bytes after byte {nbytes} must be zero")
    if bits % 8 and len(x) and (x[:, nbytes - 1] & ((1 << (8 - bits % 8)) - 1)).any():
        raise HashretError(
            f"{what} have bits set past the {bits}-bit code length: the low "
            f"{8 - bits % 8} bits of the last byte must be zero (np.packbits packs MSB first)"
        )
    return x


def pad_codes(x: np.ndarray, padded_bytes: int) -> np.ndarray:
    """``x`` (N, n) uint8 zero-padded on the right to (N, padded_bytes) (``x`` if wide enough)."""
    if x.shape[1] >= padded_bytes:
        return x
    out = np.zeros((x.shape[0], padded_bytes), dtype=np.uint8)
    out[:, : x.shape[1]] = x
    return out
