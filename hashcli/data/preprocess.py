"""The evaluation transform in numpy and Pillow: what the ONNX engine feeds its model.

:func:`hashcli.data.transforms.eval_transform` (torchvision) is the reference: shorter side
resized to ``round(size * 256 / 224)`` with Pillow's bilinear filter, a centre crop of ``size``,
then ``uint8 / 255`` and ImageNet normalisation in float32. :func:`eval_array` does the same
steps with the same library calls and float32 operations in the same order (torchvision
multiplies by ``1 / 255`` and then subtracts the mean and divides by the std), so the arrays are
equal element for element, which a test checks over many image sizes. It imports neither torch
nor torchvision: a query with the ONNX engine never loads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size(image_size: int) -> int:
    """The shorter-side size images are resized to before cropping ``image_size`` pixels."""
    if image_size < 1:
        raise ValueError(f"image size must be positive, got {image_size}")
    return round(image_size * 256 / 224)


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation transform's settings, as written into an exported model's metadata."""

    image_size: int
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_size(cls, image_size: int) -> Preprocessing:
        return cls(image_size=image_size, resize=resize_size(image_size))

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Preprocessing:
        if data.get("interpolation", "bilinear") != "bilinear":
            raise ValueError(f"unsupported interpolation {data.get('interpolation')!r}")
        return cls(
            image_size=int(data["image_size"]),  # type: ignore[call-overload]
            resize=int(data["resize"]),  # type: ignore[call-overload]
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type,attr-defined]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type,attr-defined]
        )

    def array(self, image: Image.Image) -> np.ndarray:
        """float32 (3, size, size) of an RGB image (see the module docstring)."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        # torchvision's output size: the shorter side to `resize`, the longer truncated
        new_short, new_long = self.resize, int(self.resize * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), resample=Image.Resampling.BILINEAR)
        size = self.image_size
        if size > new_w or size > new_h:
            raise ValueError(f"a {new_w}x{new_h} image is smaller than the {size}-pixel crop")
        top = int(round((new_h - size) / 2.0))
        left = int(round((new_w - size) / 2.0))
        pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
        out = pixels.transpose(2, 0, 1).astype(np.float32)
        out *= np.float32(1.0 / 255)
        out -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        out /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return out


def eval_array(image: Image.Image, image_size: int) -> np.ndarray:
    """float32 (3, image_size, image_size): ``eval_transform(image_size)(image)`` as numpy."""
    return Preprocessing.for_size(image_size).array(image)
