"""What ``hashret export`` calls: a run's best model as ONNX (:func:`export_model`), and the
choice of engine for encoding image files (:func:`choose_engine`).

``hashret train`` exports at the end of a run (``<run>/model.onnx``) unless
``HASHRET_EXPORT_ONNX=0``; an older run gets one with ``hashret export``. The export is stale
when model.pt has changed since (their fingerprints differ): the torch engine then stays the
only one that encodes what model.pt would.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hashcli.errors import FormatError, HashretError
from hashcli.workflows import runs

if TYPE_CHECKING:
    from hashcli.model.onnx_engine import OnnxEncoder

#: Set to 0 to skip the export at the end of training (the test suite does).
EXPORT_ENV = "HASHRET_EXPORT_ONNX"

ENGINES = ("auto", "onnx", "torch")


@dataclass
class ExportResult:
    path: Path
    fingerprint: str
    bits: int
    seconds: float


def export_enabled() -> bool:
    """Whether training exports model.onnx (:data:`EXPORT_ENV`)."""
    return os.environ.get(EXPORT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def export_model(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    out: str | Path | None = None,
    workdir: str | Path | None = None,
) -> ExportResult:
    """Export the best model of ``run`` (or ``checkpoint``) to ``out`` (default: the run's
    model.onnx, written under the run's lock). Errors: HashretError, nothing written."""
    from hashcli.model.checkpoint import load_model
    from hashcli.model.export import export_onnx

    started = time.perf_counter()
    checkpoint_path, run_dir = runs.resolve_checkpoint(run, checkpoint, workdir)
    if out is None and run_dir is None:
        raise HashretError(f"the checkpoint {checkpoint_path} is not in a run folder: give --out")
    target = Path(out).expanduser() if out is not None else run_dir / runs.ONNX_MODEL
    model = load_model(checkpoint_path, "cpu")
    run = runs.RunDir(run_dir) if run_dir is not None else None
    if run is not None and run.contains(target):
        with run.lock():
            export_onnx(model, target)
    else:
        export_onnx(model, target)
    return ExportResult(target, model.fingerprint(), model.bits, time.perf_counter() - started)


@dataclass
class EngineChoice:
    """Which engine encodes: ``"onnx"`` with the exported model loaded in ``encoder``, or
    ``"torch"``; ``note``: why auto fell back to torch (said once on stderr), else None."""

    engine: str
    encoder: OnnxEncoder | None = None
    note: str | None = None


def choose_engine(engine: str, checkpoint: Path, run_dir: Path | None, device: str) -> EngineChoice:
    """The engine for ``engine`` = auto | onnx | torch (see ``hashret query --help``).

    auto: ONNX Runtime when the run has a model.onnx whose fingerprint is model.pt's and the
    device is the CPU (or ONNX Runtime has its CUDA provider), torch otherwise, with a note
    saying why when a model.onnx exists but cannot serve. onnx: the same checks, each failure
    an error. Reading model.pt's fingerprint loads neither torch nor its weights; the
    exported model is loaded once, here, and used for the encoding.
    """
    from hashcli.model.onnx_engine import OnnxEncoder, checkpoint_fingerprint

    if engine not in ENGINES:
        raise HashretError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if engine == "torch":
        return EngineChoice("torch")
    path = run_dir / runs.ONNX_MODEL if run_dir is not None else None
    if path is None or not path.exists():
        if engine == "onnx":
            where = f"the run {run_dir}" if run_dir is not None else f"{checkpoint}'s folder"
            raise HashretError(
                f"{where} has no {runs.ONNX_MODEL}; make one with `hashret export`"
                + (f" --run {run_dir}" if run_dir is not None else "")
            )
        return EngineChoice("torch")
    wants_cuda = str(device).strip().lower().startswith("cuda")
    if wants_cuda and not _onnx_cuda_available():
        if engine == "onnx":
            raise HashretError(
                f"--device {device} with --engine onnx needs ONNX Runtime's CUDA provider "
                "(onnxruntime-gpu)"
            )
        return EngineChoice("torch")
    try:
        encoder = OnnxEncoder(path, device="cuda" if wants_cuda else "cpu")
    except FormatError as exc:
        if engine == "onnx":
            raise
        return EngineChoice("torch", note=f"{exc}; encoding with torch")
    exported, current = encoder.fingerprint(), checkpoint_fingerprint(checkpoint)
    if exported != current:
        problem = (
            f"{path} is stale: it was exported from the model {exported[:12]}, and "
            f"{checkpoint.name} is the model {str(current)[:12]}; run `hashret export"
            + (f" --run {run_dir}`" if run_dir is not None else "`")
        )
        if engine == "onnx":
            raise HashretError(problem)
        return EngineChoice("torch", note=f"{problem}; encoding with torch")
    return EngineChoice("onnx", encoder=encoder)


def _onnx_cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a declared dependency
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()
