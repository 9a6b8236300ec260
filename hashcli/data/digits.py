"""The built-in dataset: 1,797 real 8x8 handwritten digits (UCI, CC BY 4.0), served as images.

The package ships them as ``hashcli/data/builtin/digits.npz`` (see ``DIGITS_README.md`` beside
it). On first use they are written as PNG files into ``<data-root>/digits/``, laid out as a
folder dataset: ``train/<digit>/<nnnn>.png`` and ``test/<digit>/<nnnn>.png``, where ``nnnn`` is
the row in the npz. The split is a fixed stratified 80/20 split (seed 0); pixel values 0..16 are
scaled to 0..255 with ``round(v * 255 / 16)`` (8x8 grayscale: the transforms upscale).

The extraction is atomic: files are written into a temporary folder beside the target, which is
renamed only when complete, so an interrupted run never leaves half a dataset. When the data root
is not writable, the digits go to the user cache (``$XDG_CACHE_HOME/hashret``, else
``~/.cache/hashret``) and the dataset carries a warning saying so.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from hashcli.data._common import extract_once
from hashcli.data.records import ImageDataset
from hashcli.data.splits import stratified_split

FOLDER = "digits"
TEST_FRACTION = 0.2
SPLIT_SEED = 0
IMAGE_SIZE = 32
README = "DIGITS_README.md"


def _builtin_file(name: str):  # -> importlib.resources Traversable
    return resources.files("hashcli.data").joinpath("builtin", name)


def builtin_digits():  # -> tuple[np.ndarray, np.ndarray]
    """(images uint8 (1797, 8, 8) with values 0..16, labels uint8 (1797,)) from the package."""
    import numpy as np

    with _builtin_file("digits.npz").open("rb") as handle, np.load(handle) as archive:
        return archive["images"], archive["labels"]


def digits_splits(labels) -> list[str]:  # labels: Sequence[int]
    """ "train" or "test" for every row: the fixed stratified 80/20 split (seed 0)."""
    _, test = stratified_split([int(v) for v in labels], TEST_FRACTION, SPLIT_SEED)
    test_set = set(test)
    return ["test" if i in test_set else "train" for i in range(len(labels))]


def _write_digits(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    images, labels = builtin_digits()
    pixels = np.rint(images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    for row, (image, label, split) in enumerate(
        zip(pixels, labels, digits_splits(labels), strict=True)
    ):
        class_dir = folder / split / str(int(label))
        class_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(class_dir / f"{row:04d}.png")
    with _builtin_file(README).open("rb") as source, (folder / README).open("wb") as target:
        shutil.copyfileobj(source, target)


def ensure_digits(data_root: Path) -> tuple[Path, list[str]]:
    """The folder holding the extracted digits (extracting them if needed), plus warnings."""
    return extract_once(Path(data_root) / FOLDER, _write_digits, "the built-in digits")


def read_digits(data_root: Path) -> ImageDataset:
    """The built-in digits as an :class:`ImageDataset` (classes "0".."9", 32 px, no flips)."""
    from hashcli.data.folder import read_folder

    folder, warnings = ensure_digits(Path(data_root))
    dataset = read_folder(folder, name="digits")
    dataset.warnings[:0] = warnings
    dataset.image_size = IMAGE_SIZE
    dataset.hflip = False  # a mirrored digit is another symbol (or none)
    return dataset
