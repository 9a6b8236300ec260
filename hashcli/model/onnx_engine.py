"""Encode images with an exported model (:mod:`hashcli.model.export`) on ONNX Runtime.

No torch or torchvision here: images are read with :func:`hashcli.data.images.load_image` and
preprocessed by :mod:`hashcli.data.preprocess` (element for element the evaluation transform),
then run by ONNX Runtime. A cold ``hashret query`` with this engine loads numpy, Pillow,
onnxruntime, FAISS and h5py only.

A missing, truncated or foreign file raises :class:`hashcli.errors.FormatError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashcli.codes.bits import pack_binary
from hashcli.data.preprocess import Preprocessing
from hashcli.errors import FormatError
from hashcli.model.encoded import EncodedImages

INPUT_NAME = "images"


@dataclass(frozen=True)
class OnnxMetadata:
    """hashret's metadata of an exported model."""

    fingerprint: str
    bits: int
    backbone: str
    preprocessing: Preprocessing


def _metadata(path: Path, props: dict[str, str]) -> OnnxMetadata:
    try:
        return OnnxMetadata(
            fingerprint=props["hashret.fingerprint"],
            bits=int(props["hashret.bits"]),
            backbone=props.get("hashret.backbone", "?"),
            preprocessing=Preprocessing.from_dict(json.loads(props["hashret.preprocessing"])),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"{path} is not a model exported by hashret ({exc})") from None


class OnnxEncoder:
    """An exported model in an ONNX Runtime session (CPU, or CUDA when asked and installed)."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FormatError(f"no exported model at {self.path}")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise FormatError(
                    "ONNX Runtime has no CUDA provider here (install onnxruntime-gpu), so the "
                    "onnx engine cannot run on cuda"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's worker threads spin after each run by default, waiting for the next;
        # beside other work (a server's decoding and HTTP threads) that spinning takes the
        # cores they need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FormatError(f"cannot load the exported model {self.path}: {reason}") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = _metadata(self.path, props)
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"

    def with_threads(self, threads: int) -> OnnxEncoder:
        """The same model in a new session whose forward passes use ``threads`` cores (a
        server runs several passes at once, each on its share of the cores)."""
        return OnnxEncoder(self.path, device=self.device, threads=threads)

    @property
    def bits(self) -> int:
        return self.metadata.bits

    def fingerprint(self) -> str:
        """The exported model's ``HashNet.fingerprint()`` (the same call as on a HashNet)."""
        return self.metadata.fingerprint

    @property
    def config(self) -> dict[str, Any]:
        """What a code file records of the model (as ``HashNet.config`` has it)."""
        return {
            "backbone": self.metadata.backbone,
            "image_size": self.metadata.preprocessing.image_size,
            "bits": self.bits,
        }

    def prepare(self, image: Any) -> np.ndarray:
        """float32 (3, size, size): the model input of an RGB PIL image (the evaluation
        transform), which :meth:`encode_prepared` takes; a server prepares each upload in its
        own thread, beside the batch in the model."""
        return self.metadata.preprocessing.array(image)

    def outputs(self, images: Sequence[Any]) -> np.ndarray:
        """float32 (N, bits) pre-sign outputs of RGB PIL images."""
        return self._run([self.prepare(image) for image in images])

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        """uint8 (N, bits / 8) packed codes (bit = output >= 0), like the torch engine."""
        return self.encode_prepared([self.prepare(image) for image in images])

    def encode_prepared(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`encode` of inputs made by :meth:`prepare`."""
        return pack_binary(self._run(inputs) >= 0)

    def _run(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return self.session.run(None, {INPUT_NAME: np.stack(inputs)})[0]

    def encode_records(
        self,
        records: Sequence[Any],
        *,
        batch_size: int = 64,
        skip_bad_images: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> EncodedImages:
        """Codes of image records (their files, upright, cropped to their boxes when
        ``crop_to_box``), decoded in this process, as :func:`hashcli.model.inference.
        encode_records` returns them. DataError for an unreadable image unless
        ``skip_bad_images``."""
        import time

        from hashcli.data.images import load_image
        from hashcli.errors import DataError

        started = time.perf_counter()
        codes, rows, bad = [], [], []
        if progress is not None:
            progress(0, len(records))
        for start in range(0, len(records), batch_size):
            images = []
            for i, record in enumerate(records[start : start + batch_size], start=start):
                try:
                    images.append(load_image(record.path))
                except DataError:
                    if not skip_bad_images:
                        raise
                    bad.append(str(record.path))
                    continue
                rows.append(i)
            if images:
                codes.append(self.encode(images))
            if progress is not None:
                progress(min(start + batch_size, len(records)), len(records))
        width = -(-self.bits // 8)
        return EncodedImages(
            codes=np.concatenate(codes) if codes else np.zeros((0, width), np.uint8),
            rows=np.asarray(rows, dtype=np.int64),
            labels=np.asarray([records[i].label for i in rows], dtype=np.int64),
            bits=self.bits,
            bad_paths=bad,
            seconds=time.perf_counter() - started,
            workers=0,
        )


def checkpoint_fingerprint(path: str | Path) -> str | None:
    """The ``fingerprint`` a hashret checkpoint (``model.pt``) records, read without torch.

    A checkpoint is a zip whose ``data.pkl`` holds the dict; it is unpickled with every class
    replaced by an inert stand-in and every tensor by None, so nothing in the file runs and
    only builtins come back (the weights are not read). None when the file is not a readable
    checkpoint or records no fingerprint.
    """
    import collections
    import pickle
    import zipfile

    class _Inert:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __setstate__(self, state: object) -> None:
            pass

    def _inert(*args: object, **kwargs: object) -> None:
        return None

    class _Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            return _inert if name.startswith("_rebuild") else _Inert

        def persistent_load(self, pid: object) -> None:
            return None

    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with archive.open(name) as data:
                state = _Reader(data).load()
    except Exception:  # missing, truncated, not a zip, no data.pkl, any oddity of a foreign file
        return None
    fingerprint = state.get("fingerprint") if isinstance(state, dict) else None
    return fingerprint if isinstance(fingerprint, str) else None
