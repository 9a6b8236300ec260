"""P x K batch sampler: every batch holds P distinct classes with K images each.

Epoch construction (all randomness from ``numpy.random.default_rng([seed, epoch])``, so an epoch
is a pure function of seed and epoch, whatever else uses the global random state):

1. Each class's images are shuffled and cut into chunks of K. A partial last chunk is filled
   with other images of the same class drawn without replacement; a class with fewer than K
   images (n < K) gives one chunk holding all n plus K - n drawn from them with replacement, so
   the batch repeats some of its images.
2. Batches are formed by drawing P distinct classes at random, each with probability
   proportional to its chunks left, and taking the next chunk of each: large classes do not
   pile up at the end of the epoch. When fewer than P classes have chunks left, a new round
   of step 1 starts.
3. The epoch has ``num_batches = max(1, len(labels) // (P * K) // world_size)`` batches per
   rank, so the ranks together see about every image once per epoch; rank ``r`` takes batches
   ``r, r + world_size, ...`` of the shared list (disjoint batches, class structure kept).

Within a batch the images come grouped by class (class 1 x K, class 2 x K, ...).

Resuming: ``state_dict(position)`` records the epoch and how many batches of it were
consumed; after ``load_state_dict`` the next iteration continues with the following batch, and
``set_epoch`` with the same epoch keeps that position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from hashcli.errors import HashretError
from hashcli.train.recipe import batches_per_epoch


class PKSampler(Sampler[list[int]]):
    """Batch sampler of P classes x K images (see the module docstring).

    ``labels``: class of each dataset item, (N,) integers. ``p`` >= 2 classes per batch,
    ``k`` >= 2 images per class. Use as ``DataLoader(dataset, batch_sampler=sampler)`` and call
    ``set_epoch(epoch)`` before each epoch.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        p: int,
        k: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if torch.is_tensor(labels):
            labels = labels.cpu().numpy()
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise HashretError(f"labels must be a non-empty 1-D integer array, got {labels.dtype}")
        if p < 2 or k < 2:
            raise HashretError(
                f"P x K sampling needs P >= 2 classes (for negatives) and K >= 2 images per "
                f"class (for positives), got P={p}, K={k}"
            )
        classes, inverse = np.unique(labels, return_inverse=True)
        if len(classes) < p:
            raise HashretError(
                f"P={p} classes per batch, but the data has only {len(classes)} classes"
            )
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse))[:-1]
        self._class_indices: list[np.ndarray] = np.split(order, bounds)
        digest = hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest()[:16]
        self._setup(p, k, len(labels), digest, seed=seed, rank=rank, world_size=world_size)

    def _setup(
        self,
        p: int,
        k: int,
        num_samples: int,
        labels_digest: str,
        *,
        seed: int,
        rank: int,
        world_size: int,
    ) -> None:
        """The checks and the position state every batch sampler here shares."""
        if seed < 0:
            raise HashretError(f"the sampler seed must be >= 0, got {seed}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise HashretError(f"need 0 <= rank < world_size, got rank={rank}, {world_size=}")
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.num_samples = num_samples
        self.labels_digest = labels_digest
        #: Batches per rank per epoch.
        self.num_batches = batches_per_epoch(num_samples, p, k, world_size)
        self.epoch = 0
        self._start = 0  # first batch of the next iteration (a resumed position)
        self._yielded = 0  # batches of this epoch handed out so far
        self._cache: tuple[int, list[np.ndarray]] | None = None

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def __len__(self) -> int:
        """Batches the next iteration yields: the epoch length less a resumed position."""
        return self.num_batches - self._start

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a position loaded for this same epoch is kept."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._start = 0
            self._yielded = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches(self.epoch)
        self._yielded = self._start
        for index in range(self._start, len(batches)):
            self._yielded = index + 1
            yield batches[index].tolist()

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch``: ``num_batches`` arrays of P*K dataset indices."""
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            shared = self._make_batches(rng, self.num_batches * self.world_size)
            self._cache = (epoch, shared[self.rank :: self.world_size])
        return self._cache[1]

    def _make_batches(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        batches: list[np.ndarray] = []
        while len(batches) < count:
            chunks = [self._chunks(indices, rng) for indices in self._class_indices]
            left = np.array([len(c) for c in chunks])
            while len(batches) < count and np.count_nonzero(left) >= self.p:
                chosen = rng.choice(len(chunks), size=self.p, replace=False, p=left / left.sum())
                batches.append(
                    np.concatenate([chunks[c][len(chunks[c]) - left[c]] for c in chosen])
                )
                left[chosen] -= 1
        return batches

    def _chunks(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(ceil(n / K), K) chunks of one class's shuffled indices (see the module docstring)."""
        shuffled = rng.permutation(indices)
        n, k = len(shuffled), self.k
        if n < k:
            extra = rng.choice(shuffled, size=k - n, replace=True)
            return np.concatenate([shuffled, extra])[None, :]
        partial = n % k
        if partial:
            extra = rng.choice(shuffled[: n - partial], size=k - partial, replace=False)
            shuffled = np.concatenate([shuffled, extra])
        return shuffled.reshape(-1, k)

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """The sampler state: epoch, position within it, and the settings that must match.

        ``position``: batches of this epoch already consumed by the training loop; defaults to
        the batches handed out, which runs ahead of the loop when a DataLoader prefetches, so
        pass the loop's own count when saving mid-epoch.
        """
        position = self._yielded if position is None else int(position)
        if not 0 <= position <= self.num_batches:
            raise ValueError(f"position must be in [0, {self.num_batches}], got {position}")
        return {
            "epoch": self.epoch,
            "position": position,
            "seed": self.seed,
            "p": self.p,
            "k": self.k,
            "world_size": self.world_size,
            "num_samples": self.num_samples,
            "labels_digest": self.labels_digest,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next iteration starts at its position in its epoch.

        HashretError when the settings or the labels differ from the saved ones (the resumed
        run would not continue the same sequence of batches).
        """
        mine = self.state_dict(position=0)
        differ = [
            f"{key} {state.get(key)!r} (now {mine[key]!r})"
            for key in ("seed", "p", "k", "world_size", "num_samples", "labels_digest")
            if state.get(key) != mine[key]
        ]
        if differ:
            raise HashretError(
                "cannot resume the P x K sampler: the saved run had " + ", ".join(differ)
            )
        position = int(state["position"])
        if not 0 <= position <= self.num_batches:
            raise HashretError(f"saved sampler position {position} is outside the epoch")
        self.epoch = int(state["epoch"])
        self._start = self._yielded = position


class ShuffledBatchSampler(PKSampler):
    """Plain shuffled batches, for multi-label data (whose classes do not partition the images,
    so P x K batches are not defined).

    Epoch ``e`` is ``numpy.random.default_rng([seed, e]).permutation(n)`` cut into batches of
    ``batch_size`` (the remainder waits for the next permutation: every batch is full); rank
    ``r`` takes batches ``r, r + world_size, ...``. Resuming, ``set_epoch`` and the epoch length
    work as :class:`PKSampler`'s (its state has ``p = batch_size`` and ``k = 1``).
    """

    def __init__(
        self, n_items: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if n_items < 1 or batch_size < 1:
            raise HashretError(f"need items and a batch size, got {n_items=}, {batch_size=}")
        # batches do not depend on the labels: no digest of them
        p = min(batch_size, n_items)
        self._setup(p, 1, n_items, "unlabelled", seed=seed, rank=rank, world_size=world_size)

    def _make_batches(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        batches: list[np.ndarray] = []
        while len(batches) < count:
            order = rng.permutation(self.num_samples)
            full = len(order) // self.p
            batches.extend(order[i * self.p : (i + 1) * self.p] for i in range(full))
        return batches[:count]
