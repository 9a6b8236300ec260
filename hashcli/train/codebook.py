"""Hash centres (codebooks) for the hash-centre methods: OrthoHash, CSQ and DPN.

Each class gets a fixed +-1 code of ``bits`` bits, its centre; a method pulls the outputs of a
class toward its centre. :func:`hash_centres` makes them one of two ways:

* ``"hadamard"`` (CSQ, Yuan et al., CVPR 2020; the reference code, yuanli2333's
  Hadamard-Matrix-for-hashing and DeepHash-pytorch's ``CSQ.py``): when ``bits`` is a power of
  two and there are at most ``2 * bits`` classes, the rows of the Sylvester Hadamard matrix
  ``H_bits`` in order, then their negations (``[H; -H][:n_classes]``, as the references). Any
  two distinct rows are orthogonal, ``bits / 2`` bits apart; a row and its negation ``bits``
  apart. Row 0 is all +1 (and its negation all -1), as in the references.
* ``"random"``, for every other case (12, 24, 48 bits; 200 CUB classes at 16, 32 or 64 bits):
  balanced codes (each centre has ``bits // 2`` bits at -1 and the rest at +1, as CSQ's
  fallback draws them; OrthoHash draws Bernoulli(0.5) codes, ``balanced=False``), drawn from
  ``numpy.random.default_rng(seed)`` with a guaranteed minimum pairwise Hamming distance.
  Pairwise distances come from one matrix product, ``d = (bits - X @ X.T) / 2``; a centre that
  is too close to an earlier one is redrawn, all such centres at once, for up to
  ``max_rounds`` rounds. By default the search starts from the first draw's nearest pair and
  raises the target (by 2 for balanced codes of an even bit count, whose distances are all
  even; else by 1) until a target is not met within ``max_rounds``, keeping the last codebook
  that met one. Given a ``min_distance``, it aims for that and lowers it until met, and the
  codebook records both the distance asked for and the one reached.

Nearest centres of the default codebooks (seed 0, ``max_rounds`` 200), in bits:

    ====== ======= ========= =========== ========================================
    bits   classes method    nearest     for comparison
    ====== ======= ========= =========== ========================================
    12     200     random    2           CSQ asks for more than 3 (bits / 4)
    16     200     random    4           CSQ: more than 4; best code known: 6
    24     200     random    6           CSQ asks for more than 6
    32     10      hadamard  16
    32     200     random    10          CSQ asks for more than 8
    48     200     random    16
    64     200     random    24          Hadamard rows (up to 128 classes): 32
    128    200     hadamard  64
    200    200     random    84
    ====== ======= ========= =========== ========================================

So at 16 bits and 200 classes the two nearest centres differ in only 4 of 16 bits (a quarter
of the code), and at 12 bits in 2: balanced codes of 12 bits with 200 classes cannot do
better than 2 (a constant-weight code of length 12, weight 6 and distance 4 holds at most
132 words). Most pairs are much farther apart (mean about ``bits / 2``). CSQ's criterion
(nearest pair more than ``bits / 4`` apart) is out of reach of a random search at 12, 16 and
24 bits with 200 classes; CSQ's code gives up after 20 draws and keeps the last, whatever its
distances. At 16 bits the Nordstrom-Robinson code (256 words, 6 apart) would do better than
any random search; it is not built here. Where Hadamard rows do not suffice (more than
``2 * bits`` classes), CSQ's code keeps them for the first ``2 * bits`` classes and draws only
the rest; here all centres are drawn, so that no class sits nearer its neighbours than others.

The codebook is a plain record (:class:`Codebook`); :meth:`Codebook.to_state` and
:meth:`Codebook.from_state` put it in a checkpoint (a tensor and builtins only) so that a
resumed run or a later re-encoding uses the very same centres, whatever the numpy version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hashcli.errors import FormatError, HashretError

#: How centres can be made; ``"auto"`` picks ``"hadamard"`` where it applies, else ``"random"``.
CODEBOOK_METHODS = ("auto", "hadamard", "random")

#: Version of the dict written by :meth:`Codebook.to_state`.
STATE_VERSION = 1


@dataclass(frozen=True, eq=False)  # a tensor field: == would be ambiguous
class Codebook:
    """Hash centres and how they were made.

    ``centres`` is a float32 (n_classes, bits) CPU tensor of +-1; row ``c`` is class ``c``'s
    centre. ``min_distance`` is the Hamming distance of the nearest two centres (``None`` for a
    single class) and ``mean_distance`` the mean over all pairs. ``balanced``: random centres
    drawn with ``bits // 2`` bits at -1 (False for Hadamard rows, row 0 being all +1).
    ``target_distance`` is the minimum the search asked for first and ``reached_distance`` the
    one it guaranteed (equal unless the target was lowered; both ``None`` for Hadamard centres,
    which need no search, and for a single class).
    """

    centres: torch.Tensor
    method: str  #: "hadamard" or "random"
    seed: int
    min_distance: int | None
    mean_distance: float | None
    balanced: bool
    target_distance: int | None = None
    reached_distance: int | None = None

    @property
    def n_classes(self) -> int:
        return int(self.centres.shape[0])

    @property
    def bits(self) -> int:
        return int(self.centres.shape[1])

    @property
    def lowered(self) -> bool:
        """Whether a requested minimum distance could not be met and was lowered."""
        return (
            self.target_distance is not None
            and self.reached_distance is not None
            and self.reached_distance < self.target_distance
        )

    def describe(self) -> str:
        """One line for people: what was made and how close the nearest centres are."""
        how = "Hadamard rows" if self.method == "hadamard" else f"random (seed {self.seed})"
        text = f"{self.n_classes} centres of {self.bits} bits, {how}"
        if self.min_distance is None:
            return text + ": a single centre"
        unit = "bit" if self.min_distance == 1 else "bits"
        text += (
            f": nearest centres {self.min_distance} {unit} apart "
            f"({self.min_distance / self.bits:.0%} of the code), mean {self.mean_distance:.1f}"
        )
        if self.lowered:
            text += f"; asked for {self.target_distance}, lowered to {self.reached_distance}"
        return text

    def to_config(self) -> dict[str, Any]:
        """How the centres were made, as JSON-ready builtins (for config.json; no centres)."""
        return {
            "method": self.method,
            "n_classes": self.n_classes,
            "bits": self.bits,
            "seed": self.seed,
            "balanced": self.balanced,
            "min_distance": self.min_distance,
            "mean_distance": self.mean_distance,
            "target_distance": self.target_distance,
            "reached_distance": self.reached_distance,
        }

    def to_state(self) -> dict[str, Any]:
        """A checkpoint entry: the centres (int8 tensor) and :meth:`to_config`'s builtins."""
        return {
            "version": STATE_VERSION,
            "centres": self.centres.to(torch.int8).clone(),
            **self.to_config(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Codebook:
        """Inverse of :meth:`to_state`; FormatError if the entry is not a valid codebook."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise FormatError(
                f"not a hash-centre codebook of version {STATE_VERSION} "
                f"(got version {state.get('version') if isinstance(state, Mapping) else None!r})"
            )
        centres = state.get("centres")
        if not torch.is_tensor(centres) or centres.ndim != 2 or centres.numel() == 0:
            raise FormatError("the codebook's centres are not a non-empty (classes, bits) tensor")
        if not bool(((centres == 1) | (centres == -1)).all()):
            raise FormatError("the codebook's centres hold values other than +1 and -1")
        if state.get("method") not in ("hadamard", "random"):
            raise FormatError(f"unknown codebook method {state.get('method')!r}")
        if (state.get("n_classes"), state.get("bits")) != tuple(centres.shape):
            raise FormatError(
                f"the codebook says {state.get('n_classes')} x {state.get('bits')} but its "
                f"centres are {tuple(centres.shape)}"
            )
        try:
            return cls(
                centres=centres.to(device="cpu", dtype=torch.float32),
                method=state["method"],
                seed=int(state["seed"]),
                min_distance=state["min_distance"],
                mean_distance=state["mean_distance"],
                balanced=bool(state["balanced"]),
                target_distance=state["target_distance"],
                reached_distance=state["reached_distance"],
            )
        except KeyError as error:
            raise FormatError(f"the codebook entry lacks {error.args[0]!r}") from None


def is_power_of_two(n: int) -> bool:
    """Whether ``n`` is 1, 2, 4, 8..."""
    return n >= 1 and n & (n - 1) == 0


def sylvester_hadamard(bits: int) -> np.ndarray:
    """The Sylvester Hadamard matrix H_bits, int8 (bits, bits); ``bits`` a power of two.

    H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]]: the same matrix as ``scipy.linalg.hadamard``.
    """
    if not is_power_of_two(bits):
        raise HashretError(f"a Hadamard matrix needs a power-of-two bit count, got {bits}")
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < bits:
        h = np.block([[h, h], [h, -h]])
    return h


def hash_centres(
    n_classes: int,
    bits: int,
    *,
    seed: int = 0,
    method: str = "auto",
    balanced: bool = True,
    min_distance: int | None = None,
    max_rounds: int = 200,
) -> Codebook:
    """One +-1 centre per class (see the module docstring for the two ways).

    ``method`` is ``"auto"`` (Hadamard where it applies: ``bits`` a power of two and
    ``n_classes <= 2 * bits``; else random), ``"hadamard"`` or ``"random"``. For random centres,
    ``balanced`` draws each with ``bits // 2`` bits at -1 (CSQ; falls back to unbalanced draws
    when there are more classes than balanced codes), else Bernoulli(0.5) bits (OrthoHash);
    ``min_distance`` is the nearest-pair distance to aim for (default: as far as the search
    gets), ``max_rounds`` the redraw rounds allowed per target. The same arguments always give
    the same centres. HashretError for fewer than 1 class or bit, more classes than the
    ``2 ** bits`` distinct codes, or Hadamard centres asked for where they do not apply.
    """
    if n_classes < 1 or bits < 1:
        raise HashretError(
            f"hash centres need at least 1 class and 1 bit, got {n_classes} x {bits}"
        )
    if bits < 63 and n_classes > 2**bits:
        raise HashretError(
            f"{n_classes} classes cannot have distinct centres of {bits} bits (at most "
            f"{2**bits}); use more bits"
        )
    if method not in CODEBOOK_METHODS:
        raise HashretError(f"unknown codebook method {method!r}; use one of {CODEBOOK_METHODS}")
    if max_rounds < 1:
        raise HashretError(f"max_rounds must be at least 1, got {max_rounds}")
    if min_distance is not None and not 1 <= min_distance <= bits:
        raise HashretError(f"min_distance must lie in 1..{bits}, got {min_distance}")
    hadamard_fits = is_power_of_two(bits) and n_classes <= 2 * bits
    if method == "hadamard" and not hadamard_fits:
        raise HashretError(
            f"Hadamard centres need a power-of-two bit count and at most 2 x bits classes, got "
            f"{n_classes} classes of {bits} bits; use method 'random' or 'auto'"
        )
    if method == "hadamard" or (method == "auto" and hadamard_fits):
        h = sylvester_hadamard(bits)
        codes = np.concatenate([h, -h])[:n_classes]
        method, balanced, target, reached = "hadamard", False, None, None
    else:
        # Too many classes for distinct balanced codes: drop the balance, keep distinctness.
        balanced = balanced and n_classes <= math.comb(bits, bits // 2)
        rng = np.random.default_rng(seed)
        codes, target, reached = _random_codes(
            n_classes, bits, rng, balanced, min_distance, max_rounds
        )
        method = "random"
    nearest, mean = _distance_summary(codes)
    return Codebook(
        centres=torch.from_numpy(codes.astype(np.float32)),
        method=method,
        seed=seed,
        min_distance=nearest,
        mean_distance=mean,
        balanced=balanced,
        target_distance=target,
        reached_distance=reached,
    )


def _draw(rng: np.random.Generator, n: int, bits: int, balanced: bool) -> np.ndarray:
    """(n, bits) int32 +-1 codes; balanced: each row a random arrangement of bits // 2 -1s.

    Integer codes keep the small matrix products of the search out of BLAS, whose threads
    cost more than they bring at these sizes (several times slower on a busy machine).
    """
    if balanced:
        ranks = rng.random((n, bits)).argsort(axis=1).argsort(axis=1)
        return np.where(ranks < bits // 2, -1, 1).astype(np.int32)
    return np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int32)


def _meet(
    codes: np.ndarray, target: int, rng: np.random.Generator, balanced: bool, max_rounds: int
) -> bool:
    """Redraw centres too close to an earlier one until no pair is nearer than ``target``.

    Works in place on ``codes``, int32 (n, bits). A centre is redrawn when it is nearer than
    ``target`` to one of a lower index, so centre 0 stays and the rest settle in order. After
    the first round only the redrawn centres' distances are computed, a (k, bits) x (bits, n)
    product: a centre not redrawn can only have become too close to a redrawn one.
    """
    n, bits = codes.shape
    index = np.arange(n)
    close = (bits - codes @ codes.T) // 2 < target
    bad = (close & (index[None, :] < index[:, None])).any(axis=1).nonzero()[0]
    for _ in range(max_rounds):
        if bad.size == 0:
            return True
        codes[bad] = _draw(rng, bad.size, bits, balanced)
        close = (bits - codes[bad] @ codes.T) // 2 < target  # (k, n)
        redrawn_too_close = (close & (index[None, :] < bad[:, None])).any(axis=1)
        later_too_close = (close & (index[None, :] > bad[:, None])).any(axis=0)
        bad = np.union1d(bad[redrawn_too_close], later_too_close.nonzero()[0])
    return False


def _random_codes(
    n_classes: int,
    bits: int,
    rng: np.random.Generator,
    balanced: bool,
    min_distance: int | None,
    max_rounds: int,
) -> tuple[np.ndarray, int | None, int | None]:
    """Random centres with a guaranteed nearest distance: (codes, target asked, target met)."""
    codes = _draw(rng, n_classes, bits, balanced)
    if n_classes == 1:
        return codes, None, None
    if min_distance is not None:
        target = min_distance
        while target > 1 and not _meet(codes, target, rng, balanced, max_rounds):
            target -= 1
        if target == 1 and not _meet(codes, 1, rng, balanced, max_rounds):
            return _distinct_codes(n_classes, bits, rng), min_distance, 1
        return codes, min_distance, target
    # Climb from what the first draw gives, keeping the last codebook that met a target.
    if not _meet(codes, 1, rng, balanced, max_rounds):
        return _distinct_codes(n_classes, bits, rng), 1, 1
    # Balanced codes of an even bit count are always an even distance apart: an odd target
    # would only repeat the search for the even one above it.
    step = 2 if balanced and bits % 2 == 0 else 1
    reached = _distance_summary(codes)[0]
    best = codes.copy()
    while reached + step <= bits and _meet(codes, reached + step, rng, balanced, max_rounds):
        reached = _distance_summary(codes)[0]
        best = codes.copy()
    return best, reached, reached


def _distinct_codes(n_classes: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct +-1 codes (no balance), for nearly all 2**bits codes in use: int8 (n, bits)."""
    # Only reached when redrawing could not separate every pair, i.e. when n_classes is close to
    # 2**bits, so bits is small here and the integers fit.
    numbers = rng.choice(2**bits, size=n_classes, replace=False)
    ones = (numbers[:, None] >> np.arange(bits)) & 1
    return np.where(ones == 1, 1, -1).astype(np.int8)


def _distance_summary(codes: np.ndarray) -> tuple[int | None, float | None]:
    """(nearest, mean) Hamming distance over distinct pairs of centres; None for one centre."""
    n, bits = codes.shape
    if n < 2:
        return None, None
    x = codes.astype(np.int32)
    dist = (bits - x @ x.T) // 2
    pairs = dist[np.triu_indices(n, k=1)]
    return int(pairs.min()), float(pairs.mean(dtype=np.float64))
