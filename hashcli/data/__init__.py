"""Datasets: every reader returns an :class:`ImageDataset` of :class:`ImageRecord` s.

>>> ds = load_dataset("digits")           # built in, extracted to <data-root>/digits
>>> ds.counts()                            # {'train': ..., 'val': ..., 'test': ...}

Readers: ``cub`` (:mod:`.cub`), ``dogs`` (:mod:`.dogs`), ``folder`` (:mod:`.folder`), ``digits``
(:mod:`.digits`), ``cifar10``, ``cifar10-1`` and ``cifar10-2`` (:mod:`.cifar`, three split
protocols), ``lists`` (:mod:`.lists`, HashNet-style list files, single- or multi-label).
A validation split is carved from train for model selection (stratified, seeded, 10% by
default; :mod:`.splits`); the test split is never used to select anything. Every dataset
has four roles (:data:`ROLES`): train, val, database (what a run searches: the train split for
most datasets, :attr:`ImageDataset.database_splits`) and test (the queries).

Importing this package loads neither torch, torchvision nor scipy: the torch side lives in
:mod:`hashcli.data.torch_data` and :mod:`hashcli.data.transforms`, imported on demand.
"""

from __future__ import annotations

from pathlib import Path

from hashcli.data.images import IMAGE_EXTENSIONS, load_image
from hashcli.data.records import ROLES, SPLITS, ImageDataset, ImageRecord
from hashcli.data.splits import carve_validation
from hashcli.errors import DataError, HashretError
from hashcli.paths import default_data_root

DATASET_NAMES = (
    "cub",
    "dogs",
    "folder",
    "digits",
    "cifar10",
    "cifar10-1",
    "cifar10-2",
    "lists",
)

__all__ = [
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "ROLES",
    "SPLITS",
    "DataError",
    "ImageDataset",
    "ImageRecord",
    "load_dataset",
    "load_image",
    "resolve_data_root",
]


def resolve_data_root(root: str | Path | None = None) -> Path:
    """``root`` when given, else ``$HASHRET_DATA``, else ``./data``; ``~`` expanded."""
    return Path(root).expanduser() if root is not None else default_data_root().expanduser()


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    boxes: bool = False,
    test_fraction: float = 0.2,
) -> ImageDataset:
    """Read a dataset by name and carve its validation split.

    ``root`` is the data root (default ``$HASHRET_DATA``, else ``./data``): for ``cub`` the
    CUB_200_2011 folder or its parent, for ``dogs`` the Stanford Dogs folder or its parent, for
    ``digits`` where the built-in images are extracted, for ``folder`` the image tree itself
    (``<root>/<class>/<image>``), for the ``cifar10`` protocols the ``cifar-10-batches-py``
    folder or its parent, for ``lists`` the folder of train.txt, test.txt and database.txt.
    ``val_fraction`` of every class's train images (seeded by
    ``seed``) get the split "val"; 0 carves nothing, and nothing is carved when the reader already
    gives a validation split (a folder tree with ``val/``). ``boxes=True`` makes bounding boxes
    required (cub, dogs); CUB boxes are read whenever ``bounding_boxes.txt`` exists.
    ``test_fraction`` is the test share of a folder tree without ``train/``/``test/``.
    """
    if name not in DATASET_NAMES:
        raise HashretError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if not 0 <= val_fraction < 1:
        raise HashretError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    if not 0 < test_fraction < 1:
        raise HashretError(f"the test fraction must be in (0, 1), got {test_fraction}")
    data_root = resolve_data_root(root)
    if boxes and name not in ("cub", "dogs"):
        raise HashretError(f"the {name} dataset has no bounding boxes")
    if name == "cub":
        from hashcli.data.cub import read_cub

        dataset = read_cub(data_root, boxes=boxes)
    elif name == "dogs":
        from hashcli.data.dogs import read_dogs

        dataset = read_dogs(data_root, boxes=boxes)
    elif name == "lists":
        from hashcli.data.lists import read_lists

        dataset = read_lists(data_root)
    elif name.startswith("cifar10"):
        from hashcli.data.cifar import read_cifar10

        dataset = read_cifar10(data_root, name)
    elif name == "folder":
        from hashcli.data.folder import read_folder

        dataset = read_folder(data_root, test_fraction=test_fraction)
    else:
        from hashcli.data.digits import read_digits

        dataset = read_digits(data_root)
    if not any(r.split == "val" for r in dataset.records):
        dataset.records = carve_validation(dataset.records, val_fraction, seed)
    return dataset
