"""The record type every dataset reader returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test", "database")
"""Where a record belongs: training, validation, queries ("test"), or database-only images
(never trained on; CIFAR-10's and list datasets' database images that are not train images)."""
ROLES = ("train", "val", "database", "test")
"""What a run uses: train and val (model selection), the database it searches and its queries."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    ``label`` indexes ``ImageDataset.classes``; ``split`` is one of :data:`SPLITS`;
    ``box`` is an optional (x, y, width, height) bounding box in pixels. In a multi-label
    dataset, ``labels`` holds every class of the image (sorted; maybe none) and ``label`` the
    first of them, or -1 (what stratified splits group by).
    """

    path: Path
    label: int
    split: str
    box: tuple[float, float, float, float] | None = None
    labels: tuple[int, ...] | None = None


@dataclass
class ImageDataset:
    """Records plus class names, the same for every dataset reader.

    ``warnings`` holds messages for people (an unofficial image count, an empty class folder);
    ``image_size`` is the recommended input size in pixels and ``hflip`` whether a horizontal
    flip is a valid augmentation (not for digits). ``database_splits``: the splits whose records
    make up the database (the database role): train and val for most datasets, the "database"
    split (and for some protocols train and val too) for CIFAR-10 and list datasets.
    """

    name: str
    root: Path
    classes: list[str]
    records: list[ImageRecord]
    warnings: list[str] = field(default_factory=list)
    image_size: int = 224
    hflip: bool = True
    database_splits: tuple[str, ...] = ("train", "val")
    #: Whether records carry multi-hot ``labels`` (list files of multi-hot vectors).
    multi_label: bool = False

    def split(self, name: str) -> list[ImageRecord]:
        """The records of one split, in reader order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [r for r in self.records if r.split == name]

    def counts(self) -> dict[str, int]:
        """Images per split (every split present, zeros included)."""
        counter = Counter(r.split for r in self.records)
        return {s: counter.get(s, 0) for s in SPLITS}

    def role(self, name: str) -> list[ImageRecord]:
        """The records of a role (:data:`ROLES`), in reader order: "database" gathers the
        :attr:`database_splits`; the others are the split of that name."""
        if name not in ROLES:
            raise ValueError(f"unknown role {name!r}; expected one of {', '.join(ROLES)}")
        if name != "database":
            return self.split(name)
        return [r for r in self.records if r.split in self.database_splits]

    def role_counts(self) -> dict[str, int]:
        """Images per role: train, val, database, test."""
        return {name: len(self.role(name)) for name in ROLES}

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def has_boxes(self) -> bool:
        """True when at least one record carries a bounding box."""
        return any(r.box is not None for r in self.records)
