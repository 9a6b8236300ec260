"""Image transforms (torchvision.transforms.v2): PIL RGB image in, normalised float tensor out.

Train: Resize(round(size * 256 / 224)) (shorter side), RandomCrop(size), optional
RandomHorizontalFlip, then float32 in 0..1 and ImageNet normalisation. Eval: the same resize and a
CenterCrop(size). At 224 px this is the classic Resize(256) + crop 224 recipe; the built-in
digits use 32 px (8x8 images upscaled). Output: float32 tensor (3, size, size).

Importing this module imports torch and torchvision: import it where the tensors are needed.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

# The same settings drive the numpy version of the eval transform (the ONNX engine's).
from hashcli.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_size

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "resize_size", "train_transform"]


def _to_normalised_tensor() -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]


def train_transform(image_size: int = 224, hflip: bool = True) -> v2.Compose:
    """Resize, random crop, optional horizontal flip, normalise (see the module docstring)."""
    steps: list[v2.Transform] = [
        v2.Resize(resize_size(image_size), antialias=True),
        v2.RandomCrop(image_size),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalised_tensor())


def eval_transform(image_size: int = 224) -> v2.Compose:
    """Resize, centre crop, normalise: deterministic."""
    return v2.Compose(
        [
            v2.Resize(resize_size(image_size), antialias=True),
            v2.CenterCrop(image_size),
            *_to_normalised_tensor(),
        ]
    )
