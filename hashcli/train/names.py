"""Names of the training pieces, torch-free so shell completion and ``--help`` stay instant.
The factories in :mod:`hashcli.train.losses` and :mod:`hashcli.train.schedule` must agree
with these (a test checks)."""

from __future__ import annotations

#: Online triplet mining inside a batch (the triplet method's ``--miner``); ``batch-all`` is the
#: original project's.
MINER_NAMES: tuple[str, ...] = ("batch-all", "batch-hard", "semi-hard")
#: How per-triplet losses are averaged: over all mined triplets (the original) or the non-zero.
REDUCTION_NAMES: tuple[str, ...] = ("all", "nonzero")
#: Learning-rate schedules; ``inverse-sqrt`` is the original (XLM's AdamInverseSqrtWithWarmup).
SCHEDULE_NAMES: tuple[str, ...] = ("inverse-sqrt", "cosine", "constant")
#: Deep-hashing methods (:mod:`hashcli.train.methods`), each a loss with its defaults.
METHOD_NAMES: tuple[str, ...] = (
    "csq",
    "dpn",
    "dpsh",
    "dsh",
    "greedyhash",
    "hashnet",
    "orthohash",
    "triplet",
)
#: The method ``hashret train`` uses unless told, chosen by measurement (docs/results.md): no
#: method is best on both digits and the CUB subset; CSQ is best on the real photographs (CUB),
#: within 0.0002 of second place on digits, and has the best mean of the two.
DEFAULT_METHOD = "csq"
