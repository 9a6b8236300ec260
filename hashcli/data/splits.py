"""Seeded stratified splits: the validation split carved from train, and test splits for folders.

Rule, per class (classes visited in label order, one ``random.Random(seed)`` for the whole
split, so the result depends only on the labels, the fraction and the seed):

- ``n`` images of the class, ``k = round(n * fraction)`` of them carved out;
- when ``fraction > 0`` and ``n >= 2``, ``k`` is clamped to ``1 .. n - 1``, so the class has at
  least one image on each side;
- a class with a single image keeps it (``k = 0``).

Only the standard library is used, so importing this module stays instant.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from hashcli.data.records import ImageRecord


def carve_count(n: int, fraction: float) -> int:
    """How many of a class's ``n`` images go to the carved-out side."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(round(n * fraction), 1), n - 1)


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split positions ``0 .. len(labels) - 1`` into (kept, carved), both sorted ascending.

    ``fraction`` is the share carved out of every class (see the module docstring for the
    rounding rule); the same labels, fraction and seed always give the same split.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_class[label].append(position)
    rng = random.Random(seed)
    carved: list[int] = []
    for label in sorted(by_class):
        positions = by_class[label]
        k = carve_count(len(positions), fraction)
        if k:
            carved.extend(rng.sample(positions, k))
    carved_set = set(carved)
    kept = [i for i in range(len(labels)) if i not in carved_set]
    return kept, sorted(carved_set)


def carve_validation(
    records: Sequence[ImageRecord], fraction: float = 0.1, seed: int = 0
) -> list[ImageRecord]:
    """Move a stratified, seeded ``fraction`` of the train records to the "val" split.

    Records keep their order; only the ``split`` field of the carved ones changes. Records that
    are already "val" or "test" are left alone. ``fraction = 0`` carves nothing.
    """
    train_positions = [i for i, r in enumerate(records) if r.split == "train"]
    _, carved = stratified_split([records[i].label for i in train_positions], fraction, seed)
    to_val = {train_positions[j] for j in carved}
    return [replace(r, split="val") if i in to_val else r for i, r in enumerate(records)]


def choose_unseen_classes(num_classes: int, share: float, seed: int) -> list[int]:
    """The classes the unseen-class protocol leaves out of training, sorted.

    ``k = round(share * num_classes)`` classes, at least 1 when ``share > 0``, drawn with
    ``random.Random(seed).sample``; at least two classes must stay seen (a retrieval loss needs
    two classes to tell apart), else ValueError. ``share = 0`` gives none.
    """
    if not 0 <= share < 1:
        raise ValueError(f"the unseen share must be in [0, 1), got {share}")
    if share == 0:
        return []
    k = max(1, round(share * num_classes))
    if num_classes - k < 2:
        raise ValueError(
            f"leaving {k} of {num_classes} classes unseen keeps fewer than 2 to train on"
        )
    return sorted(random.Random(seed).sample(range(num_classes), k))
