"""Names and defaults of the model package, torch-free so shell completion and ``--help`` stay
instant. The registry in :mod:`hashcli.model.registry` must agree with these (a test checks)."""

from __future__ import annotations

#: Registered backbones, the default first.
BACKBONE_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "vit_b_16", "tiny")
DEFAULT_BACKBONE = "resnet18"

#: Input size (square, pixels) each backbone is built for when ``image_size`` is not given.
DEFAULT_IMAGE_SIZES: dict[str, int] = {
    "resnet18": 224,
    "resnet34": 224,
    "resnet50": 224,
    "vit_b_16": 224,
    "tiny": 32,
}

#: Code lengths a :class:`~hashcli.model.hashnet.HashNet` accepts: multiples of 8 (whole bytes).
MIN_BITS = 8
MAX_BITS = 1024


def check_whole_byte_bits(bits: int) -> int:
    """Return ``bits`` when it is a multiple of 8 from 8 to 1024, else raise HashretError."""
    from hashcli.errors import HashretError

    if isinstance(bits, bool) or not isinstance(bits, int):
        raise HashretError(f"bits must be an integer, got {bits!r}")
    if bits % 8 or not MIN_BITS <= bits <= MAX_BITS:
        raise HashretError(
            f"bits must be a multiple of 8 from {MIN_BITS} to {MAX_BITS}, got {bits}"
        )
    return bits
