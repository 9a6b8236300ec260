"""Training pieces: the hashing methods (one module each in ``methods/``, by name), hash-centre
codebooks, the triplet loss with miners and distances, the P x K batch sampler, optimiser and
learning-rate schedules, the resolved figures of a run, and the step loop that is handed them
(with checkpoint and validation hooks). A training run with its folder, data and final codes
is ``hashcli.workflows.train``.

Importing this package is cheap (no torch); the pieces live in submodules::

    from hashcli.train.methods import build_method, get_method, create_method_loss
    from hashcli.train.codebook import hash_centres, Codebook
    from hashcli.train.losses import build_loss, TripletMarginLoss
    from hashcli.train.miners import BatchAllMiner, BatchHardMiner, SemiHardMiner
    from hashcli.train.sampler import PKSampler
    from hashcli.train.schedule import build_optimizer, build_scheduler
    from hashcli.train.recipe import Recipe, resolve_recipe          # torch-free
    from hashcli.train.observer import TrainObserver                 # torch-free
    from hashcli.train.trainer import Trainer, CheckpointHook, ValidationHook
"""

from __future__ import annotations

from hashcli.train.names import (
    DEFAULT_METHOD,
    METHOD_NAMES,
    MINER_NAMES,
    REDUCTION_NAMES,
    SCHEDULE_NAMES,
)

__all__ = [
    "DEFAULT_METHOD",
    "METHOD_NAMES",
    "MINER_NAMES",
    "REDUCTION_NAMES",
    "SCHEDULE_NAMES",
]
