"""Decode one image file into an 8-bit RGB PIL image, whatever its mode.

Conversions (none of them is an error):

- grayscale ("L", "1"), palette ("P"), CMYK, YCbCr: Pillow's own conversion to RGB;
- 16-bit grayscale ("I;16", "I;16B", "I;16L") and 32-bit integer "I" (how some readers and older
  Pillow versions open 16-bit PNG/TIFF files): values read as 0..65535 and scaled to 0..255 with
  ``round(v * 255 / 65535)``; values outside that range are clipped;
- floating point "F": values in 0..1 are scaled by 255, any other range is clipped to 0..255;
- anything with transparency (RGBA, LA, PA, a palette with a transparent entry): composited on a
  WHITE background, so a transparent pixel becomes white rather than whatever colour happens to
  be stored under alpha 0.

Photos as cameras and phones write them: the EXIF orientation tag is applied first (Pillow's
``ImageOps.exif_transpose``), so a photo stored turned with orientation 6 reads upright, as
every viewer shows it, and gets the code of the upright file. A bounding box is in pixels of
the upright image.

A file that is missing, truncated, corrupt or not an image raises :class:`DataError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from hashcli.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File extensions read as images (compared case-insensitively)."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def is_image_file(path: str | Path) -> bool:
    """True for a non-hidden file whose extension is in :data:`IMAGE_EXTENSIONS`."""
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def load_image(
    path: str | Path, box: tuple[float, float, float, float] | None = None
) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image, cropped to ``box`` = (x, y, width, height) if given.

    The box is in pixels of the original image; it is widened to whole pixels and clipped to the
    image, and an empty box after clipping leaves the image uncropped.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(upright(image))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read image {path}: {_reason(exc)}") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - needs a huge file
        raise DataError(f"cannot read image {path}: {exc}") from None
    if box is not None:
        rgb = crop_to_box(rgb, box)
    return rgb


#: The EXIF tag that says how the stored pixels are turned (1: as stored).
_ORIENTATION = 0x0112


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (itself when there is nothing to do)."""
    if image.getexif().get(_ORIENTATION, 1) in (0, 1):
        return image
    return ImageOps.exif_transpose(image)


def decode_image(data: bytes, name: str = "upload") -> Image.Image:
    """:func:`load_image` for bytes in memory (an upload): upright, 8-bit RGB. DataError naming
    ``name`` for anything that is not a decodable image, and for a decompression bomb (more
    pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``, where Pillow would only warn)."""
    import io
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return to_rgb(upright(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"cannot read image {name}: too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read image {name}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file (or a format Pillow cannot decode)"
    return str(exc).strip() or type(exc).__name__


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB (rules in the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in _SIXTEEN_BIT_MODES:
        return _scaled_to_rgb(image, 65535.0)
    if mode == "F":
        return _scaled_to_rgb(image, None)
    if mode == "P":
        # A palette may mark a colour (or several, via a tRNS chunk) as transparent.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode == "RGB":
            return image
        mode = "RGBA"
    elif mode in ("L", "1") and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ValueError(f"unsupported image mode {mode!r} ({exc})") from None


def _scaled_to_rgb(image: Image.Image, full_scale: float | None) -> Image.Image:
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if full_scale is None:  # float image: 0..1 is a common convention, else assume 0..255
        full_scale = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    scaled = np.clip(np.rint(np.nan_to_num(values) * (255.0 / full_scale)), 0, 255)
    return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")


def crop_to_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop to (x, y, width, height), widened to whole pixels and clipped to the image."""
    import math

    x, y, w, h = box
    left = max(0, math.floor(x))
    top = max(0, math.floor(y))
    right = min(image.width, math.ceil(x + w))
    bottom = min(image.height, math.ceil(y + h))
    if right <= left or bottom <= top:
        return image
    return image.crop((left, top, right, bottom))


def find_unreadable(
    paths: Sequence[str | Path],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[Path, str]]:
    """Decode every file; return (path, reason) for each one :func:`load_image` rejects.

    Decoding runs in ``workers`` threads (default: up to 8, one per CPU; Pillow releases the
    GIL while decoding). ``progress(done, total)`` is called after every file, in the caller's
    thread. The result keeps the order of ``paths``.
    """
    total = len(paths)
    workers = workers or min(8, os.cpu_count() or 1)

    def check(path: str | Path) -> tuple[Path, str] | None:
        try:
            load_image(path)
        except DataError as exc:
            return Path(path), str(exc)
        return None

    failures: list[tuple[Path, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, result in enumerate(pool.map(check, paths), start=1):
            if result is not None:
                failures.append(result)
            if progress is not None:
                progress(done, total)
    return failures
