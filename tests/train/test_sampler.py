"""PKSampler: composition, seeding, epochs, shards and resuming mid-epoch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hashcli.errors import HashretError
from hashcli.train.sampler import PKSampler, ShuffledBatchSampler

# 7 classes of uneven size, one smaller than K, one of a single image.
SIZES = [9, 4, 6, 2, 12, 1, 8]
LABELS = np.repeat(np.arange(len(SIZES)) * 10, SIZES)  # labels need not be 0..C-1
P, K = 3, 3


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return [tuple(batch) for batch in sampler]


def test_every_batch_is_p_classes_by_k_images():
    sampler = PKSampler(LABELS, P, K, seed=0)
    assert sampler.num_batches == len(LABELS) // (P * K) == len(sampler) == 4
    seen_small = False
    for epoch in range(6):
        batches = _epoch(sampler, epoch)
        assert len(batches) == 4
        for batch in batches:
            assert len(batch) == P * K
            assert all(0 <= i < len(LABELS) for i in batch)
            groups = [LABELS[list(batch[j * K : (j + 1) * K])] for j in range(P)]
            assert all(len(set(group)) == 1 for group in groups)  # grouped by class
            assert len({group[0] for group in groups}) == P  # P distinct classes
            for group_start in range(0, P * K, K):
                members = batch[group_start : group_start + K]
                label = LABELS[members[0]]
                if SIZES[label // 10] >= K:
                    assert len(set(members)) == K  # no repeats when the class is big enough
                else:
                    seen_small = True
                    assert set(members) == set(np.flatnonzero(LABELS == label).tolist())
    assert seen_small


def test_epoch_covers_most_images_of_balanced_data():
    labels = np.repeat(np.arange(10), 8)
    sampler = PKSampler(labels, 4, 2, seed=3)
    seen = [i for batch in _epoch(sampler, 0) for i in batch]
    assert len(seen) == 80
    assert len(set(seen)) >= 70
    assert max(Counter(labels[seen]).values()) <= 10


def test_reproducible_and_seed_and_epoch_dependent():
    a, b = PKSampler(LABELS, P, K, seed=5), PKSampler(LABELS, P, K, seed=5)
    assert _epoch(a, 0) == _epoch(b, 0)
    assert _epoch(a, 1) == _epoch(b, 1)
    assert _epoch(a, 0) != _epoch(a, 1)
    assert _epoch(PKSampler(LABELS, P, K, seed=6), 0) != _epoch(b, 0)
    # Independent of the global random state.
    torch.manual_seed(123)
    np.random.seed(123)
    assert _epoch(PKSampler(LABELS, P, K, seed=5), 1) == _epoch(b, 1)


def test_shards_are_disjoint_and_interleave_the_single_process_order():
    labels = np.repeat(np.arange(8), 6)  # 48 images, P*K = 6: 8 batches
    single = PKSampler(labels, 3, 2, seed=1)
    shards = [PKSampler(labels, 3, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [4, 4]
    for epoch in range(2):
        full = _epoch(single, epoch)
        rank0, rank1 = (_epoch(s, epoch) for s in shards)
        assert not set(rank0) & set(rank1)
        assert [b for pair in zip(rank0, rank1, strict=True) for b in pair] == full


def test_resume_mid_epoch_continues_identically():
    uninterrupted = PKSampler(LABELS, P, K, seed=9)
    expected = [b for epoch in range(3) for b in _epoch(uninterrupted, epoch)]

    first = PKSampler(LABELS, P, K, seed=9)
    got = _epoch(first, 0)
    first.set_epoch(1)
    iterator = iter(first)
    got += [tuple(next(iterator)) for _ in range(2)]  # killed after 2 batches of epoch 1
    state = first.state_dict()
    assert state["epoch"] == 1 and state["position"] == 2

    resumed = PKSampler(LABELS, P, K, seed=9)
    resumed.load_state_dict(state)
    assert len(resumed) == resumed.num_batches - 2
    for epoch in range(state["epoch"], 3):
        got += _epoch(resumed, epoch)
    assert got == expected


def test_resume_through_a_dataloader_with_explicit_position():
    dataset = TensorDataset(torch.arange(len(LABELS)))
    sampler = PKSampler(LABELS, P, K, seed=2)
    loader = DataLoader(dataset, batch_sampler=sampler)
    full = [batch[0].tolist() for batch in loader]

    resumed = PKSampler(LABELS, P, K, seed=2)
    resumed.load_state_dict(sampler.state_dict(position=1))
    rest = [batch[0].tolist() for batch in DataLoader(dataset, batch_sampler=resumed)]
    assert rest == full[1:]


def test_resume_with_other_settings_is_refused():
    state = PKSampler(LABELS, P, K, seed=1).state_dict()
    with pytest.raises(HashretError, match="seed 1"):
        PKSampler(LABELS, P, K, seed=2).load_state_dict(state)
    with pytest.raises(HashretError, match="labels_digest"):
        PKSampler(LABELS[::-1].copy(), P, K, seed=1).load_state_dict(state)


def test_invalid_settings():
    with pytest.raises(HashretError, match="only 7 classes"):
        PKSampler(LABELS, 8, 2)
    with pytest.raises(HashretError, match="K >= 2"):
        PKSampler(LABELS, 3, 1)
    with pytest.raises(HashretError, match="rank"):
        PKSampler(LABELS, 3, 2, rank=2, world_size=2)
    with pytest.raises(HashretError, match="integer"):
        PKSampler([0.5, 1.5], 2, 2)
    # Fewer images than one batch: still one batch per epoch.
    assert len(PKSampler([0, 0, 1, 1], 2, 4)) == 1


def test_shuffled_batches_are_full_permutations_by_seed_and_epoch():
    """Multi-label data: batches cut from default_rng([seed, epoch]).permutation(n), all full;
    two ranks share an epoch's batches without overlap; resume continues the same sequence."""
    n, batch = 23, 5
    sampler = ShuffledBatchSampler(n, batch, seed=4)
    assert len(sampler) == n // batch == 4
    sampler.set_epoch(2)
    batches = list(sampler)
    expected = np.random.default_rng([4, 2]).permutation(n)[: 4 * batch].reshape(4, batch)
    assert batches == expected.tolist()
    ranks = [ShuffledBatchSampler(n, batch, seed=4, rank=r, world_size=2) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(2)
    assert len(ranks[0]) == 2
    assert list(ranks[0]) + list(ranks[1]) == [batches[0], batches[2], batches[1], batches[3]]
    state = sampler.state_dict(position=1)
    resumed = ShuffledBatchSampler(n, batch, seed=4)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert list(resumed) == batches[1:]
    with pytest.raises(HashretError, match="seed"):
        ShuffledBatchSampler(n, batch, seed=5).load_state_dict(state)


def test_shuffled_batches_of_a_small_split_take_it_whole():
    sampler = ShuffledBatchSampler(3, 8, seed=0)
    assert sampler.batch_size == 3 and [sorted(b) for b in sampler] == [[0, 1, 2]]
