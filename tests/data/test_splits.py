"""Stratified seeded splits: every class on both sides, reproducible, disjoint, right sizes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hashcli.data.records import ImageRecord
from hashcli.data.splits import carve_validation, choose_unseen_classes, stratified_split

# class sizes 1, 2, 3, 10, 25, 7: labels deliberately interleaved
SIZES = {0: 1, 1: 2, 2: 3, 3: 10, 4: 25, 5: 7}
LABELS = [label for i in range(25) for label, n in SIZES.items() if i < n]


def _expected_carved(n: int, fraction: float) -> int:
    if n < 2:
        return 0
    return min(max(round(n * fraction), 1), n - 1)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.9])
def test_sizes_and_both_sides(fraction):
    kept, carved = stratified_split(LABELS, fraction, seed=3)
    assert sorted(kept + carved) == list(range(len(LABELS)))  # a partition
    assert not set(kept) & set(carved)
    carved_per_class = Counter(LABELS[i] for i in carved)
    kept_per_class = Counter(LABELS[i] for i in kept)
    for label, n in SIZES.items():
        assert carved_per_class[label] == _expected_carved(n, fraction)
        if n >= 2:
            assert carved_per_class[label] >= 1 and kept_per_class[label] >= 1
        else:
            assert kept_per_class[label] == 1


def test_hand_counts_at_twenty_percent():
    _, carved = stratified_split(LABELS, 0.2, seed=0)
    # 1 -> 0, 2 -> 1 (at least one), 3 -> 1, 10 -> 2, 25 -> 5, 7 -> 1 (round(1.4))
    assert len(carved) == 0 + 1 + 1 + 2 + 5 + 1


def test_seeded_and_reproducible():
    a = stratified_split(LABELS, 0.3, seed=7)
    assert stratified_split(LABELS, 0.3, seed=7) == a
    others = {tuple(stratified_split(LABELS, 0.3, seed=s)[1]) for s in range(8)}
    assert len(others) > 1  # the seed matters


def test_zero_fraction_carves_nothing():
    assert stratified_split(LABELS, 0.0, seed=0) == (list(range(len(LABELS))), [])


def test_bad_fraction():
    with pytest.raises(ValueError):
        stratified_split(LABELS, 1.0, seed=0)


def test_carve_validation_only_touches_train():
    records = [
        ImageRecord(Path(f"{i}.png"), label=i % 3, split="test" if i % 4 == 0 else "train")
        for i in range(60)
    ]
    carved = carve_validation(records, 0.1, seed=1)
    assert [r.path for r in carved] == [r.path for r in records]
    for old, new in zip(records, carved, strict=True):
        assert new.split == old.split or (old.split, new.split) == ("train", "val")
    val = Counter(r.label for r in carved if r.split == "val")
    train = Counter(r.label for r in records if r.split == "train")
    assert val == {label: round(n * 0.1) for label, n in train.items()}
    assert carve_validation(records, 0.1, seed=1) == carved
    # A class with one train image keeps it.
    single = [ImageRecord(Path("x.png"), 0, "train"), ImageRecord(Path("y.png"), 0, "test")]
    assert carve_validation(single, 0.5, seed=0) == single


@pytest.mark.parametrize(
    ("classes", "share", "expected"), [(200, 0.25, 50), (10, 0.25, 2), (4, 0.1, 1), (4, 0.5, 2)]
)
def test_unseen_classes_count_and_seed(classes, share, expected):
    chosen = choose_unseen_classes(classes, share, seed=7)
    assert len(chosen) == expected and chosen == sorted(set(chosen))
    assert all(0 <= c < classes for c in chosen)
    assert choose_unseen_classes(classes, share, seed=7) == chosen  # recorded, reproducible
    assert choose_unseen_classes(classes, 0, seed=7) == []


def test_unseen_classes_follow_the_seed_and_keep_two_seen():
    draws = {tuple(choose_unseen_classes(200, 0.25, seed)) for seed in range(5)}
    assert len(draws) == 5
    with pytest.raises(ValueError, match="fewer than 2"):
        choose_unseen_classes(4, 0.9, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        choose_unseen_classes(4, 1.0, seed=0)
