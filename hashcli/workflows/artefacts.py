"""The one writer of code files with their provenance (training's final codes, ``hashret
encode``): every code file hashret makes from images records the same attributes.

Attributes: ``model_fingerprint``, ``backbone``, ``image_size``, ``dataset`` (``"images"`` for
loose image files), ``split``, ``run`` (its name), ``checkpoint`` (relative to the run folder
when it lies in the run, else absolute), ``skipped_images`` (a count), ``class_names`` (JSON,
where labels are known) and ``created`` (:func:`hashcli.fileio.timestamp`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashcli.errors import HashretError

if TYPE_CHECKING:
    from hashcli.codes.store import CodeFile
    from hashcli.data.records import ImageRecord
    from hashcli.model.hashnet import HashNet
    from hashcli.model.inference import EncodedImages
    from hashcli.model.onnx_engine import OnnxEncoder
    from hashcli.workflows.runs import RunDir

#: ``dataset`` attribute of a code file made from loose image files.
LOOSE_IMAGES = "images"


def write_code_file(
    target: Path,
    encoded: EncodedImages,
    records: Sequence[ImageRecord],
    *,
    model: HashNet | OnnxEncoder,
    dataset: str,
    split: str | None,
    class_names: Sequence[str] | None,
    checkpoint: Path,
    run: RunDir | None,
) -> CodeFile:
    """Write the codes of ``encoded`` (rows of ``records``) to ``target`` atomically.

    Labels go in when ``class_names`` is given (dataset splits), not for loose images. Raises
    HashretError, writing nothing, when no image could be read.
    """
    from hashcli.codes.store import CodeFile, write_codes

    if len(encoded.rows) == 0:
        raise HashretError(
            f"none of the {len(records)} images could be read (first: "
            f"{encoded.bad_paths[0] if encoded.bad_paths else '?'}); nothing written"
        )
    attrs: dict[str, Any] = {
        "model_fingerprint": model.fingerprint(),
        "backbone": model.config.get("backbone"),
        "image_size": model.config.get("image_size"),
        "dataset": dataset,
        "split": split,
        "run": run.name if run is not None else None,
        "checkpoint": run.relative(checkpoint) if run is not None else str(checkpoint),
        "skipped_images": len(encoded.bad_paths),
    }
    if class_names is not None:
        attrs["class_names"] = json.dumps(list(class_names))
    code_file = CodeFile(
        codes=encoded.codes,
        bits=model.bits,
        labels=encoded.labels if class_names is not None else None,
        paths=[str(records[i].path) for i in encoded.rows],
        attrs=attrs,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    write_codes(target, code_file)
    return code_file
