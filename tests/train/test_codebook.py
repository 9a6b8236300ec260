"""Hash centres against oracles: scipy's Hadamard matrix, a double loop over pairs, a per-item
loop for multi-label centres."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard

from hashcli.errors import FormatError, HashretError
from hashcli.model.checkpoint import load_checkpoint, save_checkpoint
from hashcli.train.codebook import Codebook, hash_centres


def _loop_distances(centres):
    """Oracle: Hamming distance of every pair (i < j), one pair and one bit at a time."""
    rows = centres.tolist()
    return {
        (i, j): sum(a != b for a, b in zip(rows[i], rows[j], strict=True))
        for i, j in itertools.combinations(range(len(rows)), 2)
    }


@pytest.fixture(scope="module")
def random_codebooks():
    """Default random codebooks of 200 classes, made once (the search takes a fraction of a s)."""
    return {bits: hash_centres(200, bits, seed=0) for bits in (12, 16, 24, 48)}


def _assert_plus_minus_one(codebook, n_classes, bits):
    assert codebook.centres.dtype == torch.float32
    assert tuple(codebook.centres.shape) == (n_classes, bits)
    assert set(codebook.centres.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize(("n_classes", "bits"), [(1, 1), (2, 1), (10, 32), (32, 32), (64, 32)])
def test_hadamard_rows_then_negations(n_classes, bits):
    codebook = hash_centres(n_classes, bits)
    assert codebook.method == "hadamard"
    _assert_plus_minus_one(codebook, n_classes, bits)
    # The references' order: rows of H, then the rows of -H, cut at n_classes.
    expected = np.concatenate([hadamard(bits), -hadamard(bits)])[:n_classes]
    np.testing.assert_array_equal(codebook.centres.numpy(), expected)
    assert codebook.centres[0].eq(1).all()  # row 0 of a Sylvester matrix is all +1
    assert not codebook.balanced and codebook.target_distance is None


def test_hadamard_distances_by_hand():
    bits = 16
    codebook = hash_centres(2 * bits, bits)
    for (i, j), d in _loop_distances(codebook.centres).items():
        # Distinct rows of H (or of -H, or a row and another's negation) are orthogonal:
        # half the bits differ; a row and its own negation differ everywhere.
        assert d == (bits if j == i + bits else bits // 2), (i, j)
    assert codebook.min_distance == bits // 2
    assert codebook.mean_distance == pytest.approx(
        (bits // 2 * (496 - 16) + bits * 16) / 496
    )  # 496 = 32 * 31 / 2 pairs, 16 of them a row and its negation


def test_hadamard_balance():
    codebook = hash_centres(8, 8)
    share = (codebook.centres == 1).float().mean(dim=0)
    # Column 0 of H is all +1; every other column is +1 in exactly half of the rows.
    assert share[0] == 1.0
    assert (share[1:] == 0.5).all()
    # With the negations added, every column is balanced.
    assert ((hash_centres(16, 8).centres == 1).float().mean(dim=0) == 0.5).all()


@pytest.mark.parametrize(("n_classes", "bits"), [(17, 8), (5, 12), (200, 16), (3, 6)])
def test_random_where_hadamard_does_not_fit(n_classes, bits):
    codebook = hash_centres(n_classes, bits, max_rounds=20)
    assert codebook.method == "random"
    _assert_plus_minus_one(codebook, n_classes, bits)
    with pytest.raises(HashretError, match="power-of-two"):
        hash_centres(n_classes, bits, method="hadamard")


@pytest.mark.parametrize("bits", [12, 16, 24, 48])
def test_random_guaranteed_distance_against_a_loop(random_codebooks, bits):
    codebook = random_codebooks[bits]
    assert codebook.method == "random"
    _assert_plus_minus_one(codebook, 200, bits)
    distances = _loop_distances(codebook.centres)
    assert min(distances.values()) == codebook.min_distance
    assert codebook.min_distance >= codebook.reached_distance >= 1
    assert sum(distances.values()) / len(distances) == pytest.approx(codebook.mean_distance)
    # The figures of the module docstring's table (seed 0). A no-op search fails them all:
    # the first draw's nearest pair is 0 bits apart at 12 and 16 bits, 2 at 24, 10 at 48.
    assert codebook.min_distance >= {12: 2, 16: 4, 24: 6, 48: 16}[bits]


def test_random_balance(random_codebooks):
    for bits, codebook in random_codebooks.items():
        plus = (codebook.centres == 1).sum(dim=1)
        # Each centre has exactly bits // 2 bits at -1 (CSQ's balanced draw).
        assert (plus == bits - bits // 2).all()
        # Across centres each bit is +1 for about half of the classes: the share of 200 fair
        # coins has standard deviation 0.5 / sqrt(200) = 0.035; allow 4 of them (0.14).
        share = (codebook.centres == 1).float().mean(dim=0)
        assert (share - 0.5).abs().max() <= 0.14, bits


def test_unbalanced_draw_and_too_many_classes_for_balance():
    codebook = hash_centres(200, 16, balanced=False, max_rounds=20)
    assert not codebook.balanced
    assert (codebook.centres == 1).sum(dim=1).tolist() != [8] * 200
    # 3 bits have 3 balanced codes (one -1) but 8 distinct ones: all 8 are used.
    codebook = hash_centres(8, 3)
    assert not codebook.balanced
    assert {tuple(row) for row in codebook.centres.tolist()} == set(
        itertools.product([-1.0, 1.0], repeat=3)
    )
    assert codebook.min_distance == 1


def test_requested_distance_is_met_or_lowered_on_record():
    met = hash_centres(50, 24, min_distance=8, max_rounds=50)
    assert met.target_distance == met.reached_distance == 8 and not met.lowered
    assert min(_loop_distances(met.centres).values()) >= 8
    # 200 balanced codes of 12 bits cannot all be 4 apart (at most 132 such codes exist).
    lowered = hash_centres(200, 12, min_distance=4, max_rounds=20)
    assert lowered.lowered and lowered.target_distance == 4 and lowered.reached_distance < 4
    assert min(_loop_distances(lowered.centres).values()) >= lowered.reached_distance
    assert "asked for 4, lowered to" in lowered.describe()


def test_seeding():
    a = hash_centres(40, 20, seed=3, max_rounds=20)
    b = hash_centres(40, 20, seed=3, max_rounds=20)
    c = hash_centres(40, 20, seed=4, max_rounds=20)
    assert torch.equal(a.centres, b.centres)
    assert not torch.equal(a.centres, c.centres)
    # The global random states play no part.
    np.random.seed(0)
    torch.manual_seed(0)
    assert torch.equal(a.centres, hash_centres(40, 20, seed=3, max_rounds=20).centres)


def test_describe_states_the_nearest_centres(random_codebooks):
    text = random_codebooks[16].describe()
    assert "200 centres of 16 bits" in text
    assert f"nearest centres {random_codebooks[16].min_distance} bits apart" in text
    assert "a single centre" in hash_centres(1, 16).describe()


def test_state_round_trip_through_a_checkpoint(tmp_path, random_codebooks):
    for codebook in (random_codebooks[24], hash_centres(20, 16), hash_centres(1, 5)):
        path = save_checkpoint(tmp_path / "c.pt", {"codebook": codebook.to_state()})
        again = Codebook.from_state(load_checkpoint(path)["codebook"])
        assert torch.equal(again.centres, codebook.centres)
        assert again.centres.dtype == torch.float32
        assert again.to_config() == codebook.to_config()


def test_bad_state_is_a_format_error():
    state = hash_centres(4, 8).to_state()
    for broken in (
        {**state, "version": 99},
        {**state, "centres": torch.zeros(4, 8, dtype=torch.int8)},
        {**state, "centres": torch.ones(4, 9, dtype=torch.int8)},
        {**state, "method": "magic"},
        {key: value for key, value in state.items() if key != "seed"},
        "not a dict",
    ):
        with pytest.raises(FormatError):
            Codebook.from_state(broken)


@pytest.mark.parametrize(
    ("n_classes", "bits", "kwargs", "message"),
    [
        (0, 16, {}, "at least 1 class"),
        (10, 0, {}, "at least 1 class"),
        (9, 3, {}, "at most 8"),
        (5, 16, {"method": "nope"}, "unknown codebook method"),
        (5, 16, {"min_distance": 17}, "min_distance"),
        (5, 16, {"max_rounds": 0}, "max_rounds"),
        (200, 32, {"method": "hadamard"}, "at most 2 x bits"),
    ],
)
def test_bad_input(n_classes, bits, kwargs, message):
    with pytest.raises(HashretError, match=message):
        hash_centres(n_classes, bits, **kwargs)
