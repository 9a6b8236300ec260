"""CIFAR-10 from the official python archive, split by DeepHash-pytorch's three protocols.

``--data-root`` is the folder ``cifar-10-batches-py`` or the folder holding it (what
``tar xzf cifar-10-python.tar.gz`` or ``hashret data download cifar10`` makes). The five data
batches and the test batch are read as they are, with a restricted unpickler that accepts only
numpy arrays, lists and strings (a pickle can run any code; a file placed by hand should not),
and without the per-load checksum of the whole 180 MB that torchvision's reader pays: the
archive's MD5 is checked once, when ``hashret data download`` fetches it.

Images are numbered 0..59,999 in file order (the 50,000 rows of ``data_batch_1`` .. ``_5``,
then the 10,000 of ``test_batch``), the merged order DeepHash-pytorch splits. On first use they
are written as PNG files, ``<root>/cifar10-png/<class>/<index:05d>.png`` (beside the batches
folder), once for all three protocols, with ``labels.json`` (the labels in merged order), which
is all a later load reads (atomically; to the user cache when the root is not writable).

Protocols, per class of the merged 6,000 images (:data:`PROTOCOLS`):

============  =====  ======  ==================  ==========================
name          test   train   database            totals (test/train/db)
============  =====  ======  ==================  ==========================
cifar10       100    500     the other 5,400     1,000 / 5,000 / 54,000
cifar10-1     100    500     train + the other   1,000 / 5,000 / 59,000
cifar10-2     1,000  5,000   train               10,000 / 50,000 / 50,000
============  =====  ======  ==================  ==========================

The order within a class is fixed once and for all: images sorted by the SHA-256 of
``"cifar10:<SPLIT_SEED>:<index>"``, so the split depends on no random-number stream that a
library version could change, nor on the training seed. (DeepHash-pytorch draws it with
``np.random.permutation``, unseeded in its first versions: two runs could test on different
images, and train on the other run's test images.) As for every dataset, the validation split is
then carved from train (10% of each class by default, with the training seed).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

from hashcli.data._common import extract_once
from hashcli.data.records import ImageDataset, ImageRecord
from hashcli.errors import DataError

BATCHES = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
PNG_FOLDER = "cifar10-png"
LABELS = "labels.json"  # in PNG_FOLDER: {"classes": [...], "labels": [...]} in merged order
SPLIT_SEED = 0
ROW_BYTES = 3 * 32 * 32

#: name -> (test per class, train per class, whether the database includes train, whether it
#: includes the rest)
PROTOCOLS: dict[str, tuple[int, int, bool, bool]] = {
    "cifar10": (100, 500, False, True),
    "cifar10-1": (100, 500, True, True),
    "cifar10-2": (1000, 5000, True, False),
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; any other global is refused."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        import numpy as np

        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in Python 3's protocol-2 pickles
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{path} is missing: a complete {BATCHES} folder holds {', '.join(TRAIN_BATCHES)}, "
            f"{TEST_BATCH} and {META} (hashret data download cifar10 fetches them)"
        ) from None
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 (any decoding failure is the same bad file)
        raise DataError(f"{path} is not a CIFAR-10 python batch: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR-10 python batch (no dictionary inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def find_batches(root: Path) -> Path:
    """The ``cifar-10-batches-py`` folder: ``root`` itself or its child."""
    for candidate in (root, root / BATCHES):
        if (candidate / META).is_file():
            return candidate
    raise DataError(
        f"no CIFAR-10 python batches under {root}: expected {root / BATCHES}/{META} (the "
        "folder cifar-10-python.tar.gz unpacks to); hashret data download cifar10 fetches it"
    )


def read_batches(folder: Path):  # -> tuple[np.ndarray, np.ndarray, list[str]]
    """(images uint8 (N, 32, 32, 3), labels int64 (N,), class names) in the merged order."""
    import numpy as np

    meta = _unpickle(folder / META)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    images, labels = [], []
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        batch = _unpickle(folder / name)
        data, batch_labels = batch.get("data"), batch.get("labels")
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != ROW_BYTES:
            raise DataError(f"{folder / name}: 'data' is not an (N, {ROW_BYTES}) array")
        if batch_labels is None or len(batch_labels) != len(data):
            raise DataError(f"{folder / name}: 'labels' does not give one label per row")
        images.append(data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    merged = np.concatenate(labels)
    if not names or merged.min() < 0 or merged.max() >= len(names):
        raise DataError(f"{folder}: labels outside the {len(names)} names of {META}")
    return np.concatenate(images).transpose(0, 2, 3, 1), merged, names


def split_order_key(index: int) -> bytes:
    """The key that fixes an image's place in its class's order (see the module docstring)."""
    return hashlib.sha256(f"cifar10:{SPLIT_SEED}:{index}".encode()).digest()


def protocol_splits(labels: Sequence[int], protocol: str) -> list[str]:
    """ "test", "train" or "database" for every image (merged order), by ``protocol``.

    Per class, in :func:`split_order_key` order: the first ``test`` images are "test", the next
    ``train`` "train", the rest "database" (left out, as "", when the protocol's database has
    no such images: ``cifar10-2``). A class with too few images is an error.
    """
    test, train, _, with_rest = PROTOCOLS[protocol]
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    out = [""] * len(labels)
    for label, indices in sorted(by_class.items()):
        if len(indices) < test + train:
            raise DataError(
                f"class {label} has {len(indices)} images; the {protocol} protocol takes "
                f"{test} test and {train} train images of each class"
            )
        ordered = sorted(indices, key=split_order_key)
        for place, index in enumerate(ordered):
            if place < test:
                out[index] = "test"
            elif place < test + train:
                out[index] = "train"
            elif with_rest:
                out[index] = "database"
    return out


def _write_pngs(batches: Path):  # -> Callable[[Path], None]
    def write(folder: Path) -> None:
        from PIL import Image

        images, labels, names = read_batches(batches)
        for name in names:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for index, (pixels, label) in enumerate(zip(images, labels.tolist(), strict=True)):
            Image.fromarray(pixels).save(folder / names[label] / f"{index:05d}.png")
        (folder / LABELS).write_text(json.dumps({"classes": names, "labels": labels.tolist()}))

    return write


def read_cifar10(data_root: Path, protocol: str = "cifar10") -> ImageDataset:
    """CIFAR-10 split by ``protocol`` (a key of :data:`PROTOCOLS`) as an :class:`ImageDataset`."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown CIFAR-10 protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    batches = find_batches(Path(data_root))
    # The batches are read once, to write the PNG files; later loads read the labels only.
    png, warnings = extract_once(
        batches.parent / PNG_FOLDER, _write_pngs(batches), "the CIFAR-10 images"
    )
    index_file = json.loads((png / LABELS).read_text())
    names, labels = index_file["classes"], index_file["labels"]
    splits = protocol_splits(labels, protocol)
    records = [
        ImageRecord(png / names[label] / f"{index:05d}.png", label, split)
        for index, (label, split) in enumerate(zip(labels, splits, strict=True))
        if split
    ]
    _, _, db_train, db_rest = PROTOCOLS[protocol]
    database = (("train", "val") if db_train else ()) + (("database",) if db_rest else ())
    return ImageDataset(
        name=protocol,
        root=batches,
        classes=names,
        records=records,
        warnings=warnings,
        database_splits=database,
    )
