"""A HashNet as ONNX: backbone + hash head, dynamic batch size, hashret's metadata inside.

Uses torch's own exporter (``torch.onnx.export(..., dynamo=True)``, the supported one since
PyTorch 2.9) and the onnx package; the file is self-contained (no external data) and written
atomically. Its metadata (``metadata_props``):

* ``hashret.format``: :data:`ONNX_FORMAT`;
* ``hashret.fingerprint``: ``HashNet.fingerprint()`` of the exported model;
* ``hashret.bits``, ``hashret.backbone``;
* ``hashret.preprocessing``: JSON of :class:`hashcli.data.preprocess.Preprocessing` (image
  size, resize, interpolation, mean, std): what :mod:`hashcli.model.onnx_engine` feeds it.

The graph's input ``images`` is float32 (N, 3, S, S), its output ``outputs`` float32 (N, bits),
the pre-sign output (the code is ``outputs >= 0``). A backbone the exporter cannot trace gives
one HashretError naming the backbone and the exporter's reason.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from hashcli.data.preprocess import Preprocessing
from hashcli.errors import HashretError
from hashcli.fileio import atomic_path
from hashcli.model.hashnet import HashNet

#: The metadata layout version.
ONNX_FORMAT = "1"
INPUT_NAME = "images"
OUTPUT_NAME = "outputs"


def export_onnx(model: HashNet, path: str | Path) -> Path:
    """Write ``model`` (put in eval mode, on the CPU) to ``path`` as ONNX; returns the path."""
    import onnx

    path = Path(path)
    image_size = model.config.get("image_size")
    if not image_size:
        raise HashretError("the model records no image size, so its input cannot be fixed")
    model = model.to("cpu").eval()
    example = torch.zeros(2, 3, image_size, image_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's advice is not the user's business
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean "cannot export"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HashretError(
            f"cannot export the {model.config.get('backbone')} model to ONNX: {reason}"
        ) from None
    proto = program.model_proto
    metadata = {
        "hashret.format": ONNX_FORMAT,
        "hashret.fingerprint": model.fingerprint(),
        "hashret.bits": str(model.bits),
        "hashret.backbone": str(model.config.get("backbone")),
        "hashret.preprocessing": json.dumps(Preprocessing.for_size(image_size).to_dict()),
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path
