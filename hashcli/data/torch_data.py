"""The torch side of the records: a Dataset, a collate function and a loader.

- :class:`ImageRecordDataset` turns records into ``(image, label, index)``: ``image`` the
  transform's output (float32 (3, H, W) with the transforms of :mod:`.transforms`), ``label`` an
  int (a (C,) bool multi-hot array for multi-label records), ``index`` the position in
  ``records``.
- A file that cannot be decoded raises :class:`DataError` naming it, or, with
  ``skip_bad_images=True``, yields a :class:`BadImage` marker instead (a marker rather than
  ``None`` so that the path survives the trip back from a DataLoader worker).
- :func:`collate_skip_bad` stacks the good items into an :class:`ImageBatch` and keeps the
  markers in ``batch.bad``.
- :class:`RecordLoader` wraps a DataLoader so that bad images are handled in the MAIN process:
  with ``skip_bad_images`` their paths are collected in ``dataset.bad_paths`` (once each); without
  it, the first one raises a clean one-line DataError naming the file, instead of the multi-line
  "Caught DataError in DataLoader worker process N" that torch makes of worker exceptions.

Importing this module imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hashcli.data.images import load_image
from hashcli.data.records import ImageRecord
from hashcli.errors import DataError


class BadImage(NamedTuple):
    """Stands in for an image that could not be decoded."""

    index: int
    path: str
    reason: str  # the DataError message (it names the file)


class ImageBatch(NamedTuple):
    """A collated batch: only the good images; ``bad`` lists the ones left out.

    ``images`` float32 (B, 3, H, W) (B = 0 when every image of the batch was bad: then the
    tensor is (0, 3, 0, 0)), ``labels`` int64 (B,), ``indices`` int64 (B,) positions in the
    dataset.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    bad: tuple[BadImage, ...]


class ImageRecordDataset(Dataset):
    """Records as a torch Dataset of ``(image, label, index)``.

    ``transform`` maps an RGB PIL image to a tensor (``None`` returns the PIL image);
    ``crop_to_box`` crops to ``record.box`` when the record has one.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Any], Any] | None,
        crop_to_box: bool = False,
        skip_bad_images: bool = False,
        num_classes: int | None = None,
    ) -> None:
        self.records = list(records)
        self.labels = [r.label for r in self.records]
        self.num_classes = num_classes
        if num_classes is None and any(r.labels is not None for r in self.records):
            raise ValueError("multi-label records need num_classes (their multi-hot width)")
        self.transform = transform
        self.crop_to_box = crop_to_box
        self.skip_bad_images = skip_bad_images
        self.bad_paths: list[str] = []  # filled in the main process (see RecordLoader)
        self._bad_seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    def read(self, index: int) -> tuple[Any, int, int] | BadImage:
        """The item at ``index``, or a :class:`BadImage` when the file cannot be decoded."""
        record = self.records[index]
        try:
            image = load_image(record.path, record.box if self.crop_to_box else None)
        except DataError as exc:
            return BadImage(index, str(record.path), str(exc))
        if self.transform is not None:
            image = self.transform(image)
        if record.labels is not None:
            multi_hot = np.zeros(self.num_classes, dtype=np.bool_)
            multi_hot[list(record.labels)] = True
            return image, multi_hot, index
        return image, record.label, index

    def __getitem__(self, index: int) -> tuple[Any, int, int] | BadImage:
        item = self.read(index)
        if isinstance(item, BadImage):
            if not self.skip_bad_images:
                raise DataError(item.reason)
            self.note_bad([item])
        return item

    def note_bad(self, bad: Sequence[BadImage]) -> None:
        """Record the paths of bad images (each once, in the order first seen)."""
        for item in bad:
            if item.path not in self._bad_seen:
                self._bad_seen.add(item.path)
                self.bad_paths.append(item.path)


def collate_skip_bad(items: Sequence[tuple[Any, int, int] | BadImage]) -> ImageBatch:
    """Stack the good ``(image, label, index)`` items; keep the :class:`BadImage` markers aside."""
    good = [item for item in items if not isinstance(item, BadImage)]
    bad = tuple(item for item in items if isinstance(item, BadImage))
    if good:
        images = torch.stack([torch.as_tensor(item[0]) for item in good])
    else:
        images = torch.empty((0, 3, 0, 0), dtype=torch.float32)
    if good and isinstance(good[0][1], np.ndarray):  # multi-hot rows: (B, C) bool
        labels = torch.from_numpy(np.stack([item[1] for item in good]))
    else:
        labels = torch.tensor([item[1] for item in good], dtype=torch.int64)
    indices = torch.tensor([item[2] for item in good], dtype=torch.int64)
    return ImageBatch(images, labels, indices, bad)


class _MarkBad(Dataset):
    """Reads through ``dataset.read`` so that workers return markers instead of raising."""

    def __init__(self, dataset: ImageRecordDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int, int] | BadImage:
        return self.dataset.read(index)


class RecordLoader:
    """A DataLoader over an :class:`ImageRecordDataset` yielding :class:`ImageBatch` es.

    Keyword arguments go to :class:`torch.utils.data.DataLoader` (batch_size, shuffle, sampler,
    batch_sampler, num_workers, pin_memory, drop_last, generator, persistent_workers...);
    ``collate_fn`` is always :func:`collate_skip_bad`. Bad images are handled in the main process
    (see the module docstring).
    """

    def __init__(self, dataset: ImageRecordDataset, **loader_kwargs: Any) -> None:
        if "collate_fn" in loader_kwargs:
            raise TypeError("RecordLoader sets collate_fn itself (collate_skip_bad)")
        self.dataset = dataset
        self.loader = DataLoader(_MarkBad(dataset), collate_fn=collate_skip_bad, **loader_kwargs)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[ImageBatch]:
        # The DataLoader's iterator starts here, not at the first batch: starting draws a seed
        # from torch's random state, which a resumed epoch must be able to fence off.
        return self._checked(iter(self.loader))

    def _checked(self, batches: Iterator[ImageBatch]) -> Iterator[ImageBatch]:
        for batch in batches:
            if batch.bad:
                if not self.dataset.skip_bad_images:
                    raise DataError(batch.bad[0].reason)
                self.dataset.note_bad(batch.bad)
            yield batch
