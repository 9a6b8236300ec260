"""Index types and their parameters (no FAISS import, so shell completion stays instant)."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any

from hashcli.errors import HashretError

#: Every index type :class:`hashcli.index.BinaryIndex` builds, default first.
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf", "hash", "multihash")

#: Build and search parameters per type; ``None`` means "derived from the bit count".
DEFAULT_PARAMS: dict[str, dict[str, int | None]] = {
    "flat": {},
    # M neighbours per graph node; efConstruction / efSearch are FAISS's beam widths.
    "hnsw": {"m": 32, "ef_construction": 40, "ef_search": 64},
    # nlist is clamped to the database size at training time (see BinaryIndex.notes).
    "ivf": {"nlist": 1024, "nprobe": 16},
    # b hashed bits (default min(bits, 16)); nflip: bits flipped when probing buckets.
    "hash": {"b": None, "nflip": 2},
    # nhash tables of b bits each (default b = min(16, bits // nhash)).
    "multihash": {"nhash": 4, "b": None, "nflip": 1},
}

#: Parameters that only affect search, so they can change on a built or loaded index.
SEARCH_PARAMS: dict[str, tuple[str, ...]] = {
    "flat": (),
    "hnsw": ("ef_search",),
    "ivf": ("nprobe",),
    "hash": ("nflip",),
    "multihash": ("nflip",),
}


def check_index_type(index_type: str) -> str:
    """Return ``index_type`` if it is known, else raise a HashretError listing the valid ones."""
    if index_type not in INDEX_TYPES:
        raise HashretError(
            f"unknown index type {index_type!r}; expected one of {', '.join(INDEX_TYPES)}"
        )
    return index_type


def positive_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (not a bool), else a HashretError
    naming ``name`` (a search's k, radius, top, or an index parameter)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise HashretError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _index_param(index_type: str, name: str, value: Any, minimum: int = 1) -> int:
    return positive_int(f"{index_type} index parameter {name}", value, minimum)


def resolve_params(
    index_type: str, bits: int, params: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Defaults filled in and every value checked against ``bits``; unknown names are errors."""
    check_index_type(index_type)
    defaults = DEFAULT_PARAMS[index_type]
    given = dict(params or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise HashretError(
            f"unknown parameter(s) {', '.join(unknown)} for a {index_type} index; valid: {valid}"
        )
    merged = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    # Hash tables read whole leading bytes, so by default hash only whole bytes of real bits.
    whole_bits = max(8, 8 * (bits // 8)) if bits >= 8 else bits
    if index_type == "hash" and merged["b"] is None:
        merged["b"] = min(whole_bits, 16)
    if index_type == "multihash" and merged["b"] is None:
        nhash = _index_param(index_type, "nhash", merged["nhash"])
        merged["b"] = max(1, min(16, bits // nhash))
    out = {}
    for name, value in merged.items():
        minimum = 0 if name == "nflip" else (2 if name == "m" else 1)
        out[name] = _index_param(index_type, name, value, minimum)
    if index_type == "hash" and out["b"] > min(bits, 64):
        raise HashretError(f"hash index: b={out['b']} exceeds the {bits}-bit code length")
    if index_type == "multihash" and out["nhash"] * out["b"] > bits:
        raise HashretError(
            f"multihash index: nhash * b = {out['nhash']} * {out['b']} exceeds the "
            f"{bits}-bit code length"
        )
    if index_type in ("hash", "multihash") and out["nflip"] > out["b"]:
        raise HashretError(f"{index_type} index: nflip={out['nflip']} exceeds b={out['b']}")
    return out
