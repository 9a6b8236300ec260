"""The torch side: transforms, ImageRecordDataset, skipping bad images, clean worker errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hashcli.data.records import ImageRecord
from hashcli.data.torch_data import (
    BadImage,
    ImageRecordDataset,
    RecordLoader,
    collate_skip_bad,
)
from hashcli.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from hashcli.errors import DataError


def _records(tmp_path, n=6, bad=()):
    records = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        if i in bad:
            path.write_bytes(b"not a png")
        else:
            Image.new("RGB", (40, 30), (10 * i, 20, 250)).save(path)
        records.append(ImageRecord(path, label=i % 3, split="train"))
    return records


def test_eval_transform_resizes_crops_and_normalises(tmp_path):
    image = Image.new("RGB", (50, 40), (255, 0, 128))
    tensor = eval_transform(16)(image)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    expected = [
        (c / 255 - m) / s
        for c, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    assert torch.allclose(tensor.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_eval_transform_is_a_centre_crop_of_the_resize():
    # A 256 x 224 gradient: Resize(256) makes it 292 x 256, CenterCrop(224) keeps the middle.
    ramp = np.tile(np.arange(256, dtype=np.uint8), (224, 1))
    out = eval_transform(224)(Image.fromarray(ramp).convert("RGB"))
    red = out[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    centre = red[:, 112].mean().item() * 255
    assert abs(centre - 127.5) < 2


def test_train_transform_random_crop_and_flip():
    image = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))).convert("RGB")
    torch.manual_seed(0)
    outs = [train_transform(32, hflip=True)(image) for _ in range(20)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    slopes = {bool(o[0, 0, -1] > o[0, 0, 0]) for o in outs}
    assert slopes == {True, False}  # some flipped, some not
    no_flip = [train_transform(32, hflip=False)(image) for _ in range(20)]
    assert all(bool(o[0, 0, -1] > o[0, 0, 0]) for o in no_flip)


def test_dataset_items_and_box_crop(tmp_path):
    records = _records(tmp_path, 3)
    records[1] = ImageRecord(records[1].path, 1, "train", box=(0, 0, 10, 5))
    plain = ImageRecordDataset(records, transform=None)
    image, label, index = plain[1]
    assert image.size == (40, 30) and (label, index) == (1, 1)
    cropped = ImageRecordDataset(records, transform=None, crop_to_box=True)
    assert cropped[1][0].size == (10, 5)
    assert cropped[0][0].size == (40, 30)  # no box: whole image


def test_bad_image_raises_naming_the_file(tmp_path):
    dataset = ImageRecordDataset(_records(tmp_path, 4, bad=(2,)), eval_transform(8))
    with pytest.raises(DataError, match=r"2\.png"):
        dataset[2]


def test_skip_bad_images_with_collate(tmp_path):
    dataset = ImageRecordDataset(
        _records(tmp_path, 6, bad=(1, 4)), eval_transform(8), skip_bad_images=True
    )
    items = [dataset[i] for i in range(6)]
    assert isinstance(items[1], BadImage) and items[1].path.endswith("1.png")
    batch = collate_skip_bad(items)
    assert batch.images.shape == (4, 3, 8, 8)
    assert batch.indices.tolist() == [0, 2, 3, 5]
    assert batch.labels.tolist() == [0, 2, 0, 2]
    assert [b.index for b in batch.bad] == [1, 4]
    assert dataset.bad_paths == [str(tmp_path / "1.png"), str(tmp_path / "4.png")]
    empty = collate_skip_bad([items[1]])
    assert empty.images.shape[0] == 0 and empty.labels.numel() == 0


def test_loader_in_workers_skips_and_reports_in_the_main_process(tmp_path):
    dataset = ImageRecordDataset(
        _records(tmp_path, 6, bad=(3,)), eval_transform(8), skip_bad_images=True
    )
    loader = RecordLoader(dataset, batch_size=4, num_workers=1)
    seen = []
    for _ in range(2):  # two epochs: the bad path is reported once
        for batch in loader:
            seen.extend(batch.indices.tolist())
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 4, 4, 5, 5]
    assert dataset.bad_paths == [str(tmp_path / "3.png")]


def test_loader_in_workers_raises_a_clean_error(tmp_path):
    dataset = ImageRecordDataset(_records(tmp_path, 4, bad=(2,)), eval_transform(8))
    loader = RecordLoader(dataset, batch_size=2, num_workers=1)
    with pytest.raises(DataError) as info:
        list(loader)
    message = str(info.value)
    assert "2.png" in message and "\n" not in message and "Traceback" not in message


def test_loader_starts_its_epoch_when_iterated(tmp_path):
    """iter() starts the DataLoader (which draws its seed from torch's random state) before
    any batch is asked for: a trainer resuming mid-epoch fences that draw off."""
    loader = RecordLoader(ImageRecordDataset(_records(tmp_path), eval_transform(8)), batch_size=2)
    before = torch.get_rng_state()
    batches = iter(loader)
    assert not torch.equal(torch.get_rng_state(), before)
    assert len(list(batches)) == 3
