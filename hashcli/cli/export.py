"""``hashret export``: a run's best model as ONNX, for the query engine (and anyone's runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hashcli.cli._options import JsonOpt, QuietOpt, RunOpt, WorkdirOpt
from hashcli.cli._output import Output


def export_command(
    run: RunOpt = None,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the .onnx file (default: the run's model.onnx).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Export this checkpoint instead of a run's model.pt.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a run's best model (backbone and hash head) to ONNX.

    The file holds the model's fingerprint and its preprocessing (image size, resize, crop,
    mean, std) as metadata, takes float32 images (N, 3, S, S) and gives the outputs whose signs
    are the code. `hashret query` uses the run's model.onnx on ONNX Runtime when it matches
    model.pt; training writes it at the end of a run, so this is for older runs or another
    place. With --json: {"path", "fingerprint", "bits", "seconds"} on stdout.

    Examples:

        hashret export

        hashret export --run cub-48 --out cub-48.onnx
    """
    if run is not None and checkpoint is not None:
        raise typer.BadParameter(
            "give --run or --checkpoint, not both", param_hint="'--run' / '--checkpoint'"
        )
    from hashcli.workflows.export import export_model

    result = export_model(run, checkpoint=checkpoint, out=out_path, workdir=workdir)
    out = Output(quiet=quiet)
    if json_output:
        out.json(
            {
                "path": str(result.path),
                "fingerprint": result.fingerprint,
                "bits": result.bits,
                "seconds": round(result.seconds, 3),
            }
        )
    else:
        out.say(
            f"Wrote {result.path} (model {result.fingerprint[:12]}, {result.bits} bits, "
            f"{result.seconds:.1f} s)"
        )
