"""``hashret serve``: a run's search service over HTTP (the app: :mod:`hashcli.server.app`)."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from hashcli.cli._options import DeviceOpt, EngineOpt, QuietOpt, RunOpt, WorkdirOpt
from hashcli.cli._output import Output

TOKEN_ENV = "HASHRET_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_command(
    run: RunOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=0)] = 8000,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Most searches encoded in one pass.", min=1)
    ] = 32,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(
            "--max-wait-ms",
            help="How long a search waits for others to join its batch "
            "(default: 0 on the CPU, 5 on a GPU).",
            min=0,
            show_default=False,
        ),
    ] = None,
    batch_workers: Annotated[
        int | None,
        typer.Option(
            "--batch-workers",
            help="Batches encoded at once, each on a share of the cores "
            "(default: 2 on the CPU, 1 on a GPU).",
            min=1,
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Require 'Authorization: Bearer TOKEN' on every /api call (or $HASHRET_TOKEN).",
            envvar=TOKEN_ENV,
            show_envvar=False,
            show_default=False,
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Serve a run's searches over HTTP until Ctrl-C (or SIGTERM).

    The model, index and database metadata load once. GET /api/health answers
    {"status", "run", "bits", "n_database", "engine", "device"}; POST /api/search?top=K
    [&radius=R] with a multipart field `image` answers exactly what one `hashret query --json`
    line gives for that image. Concurrent searches are encoded and searched in batches. Binds
    127.0.0.1 unless told otherwise; binding another address without a token is allowed, with
    a warning.

    Examples:

        hashret serve

        hashret serve --run cub-48 --port 8080 --token s3cret

        curl -F image=@photo.jpg 'http://127.0.0.1:8000/api/search?top=5'
    """
    import uvicorn

    from hashcli.server.app import create_app
    from hashcli.workflows.retrieval import open_retriever

    out = Output(quiet=quiet)
    if host not in LOOPBACK and not token:
        out.warning(
            f"serving on {host} without a token: anyone who can reach it can search the "
            f"database (set --token or ${TOKEN_ENV})"
        )
    retriever, name = open_retriever(run, workdir=workdir, device=device, engine=engine)
    for note in retriever.notes:
        out.warning(note)
    app = create_app(
        retriever,
        run_name=name,
        token=token or os.environ.get(TOKEN_ENV) or None,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        workers=batch_workers,
    )
    out.say(
        f"Serving the run {name} ({retriever.index.ntotal:,} codes of {retriever.bits} bits, "
        f"{retriever.engine} on {retriever.device}) at http://{host}:{port}/"
    )
    # uvicorn finishes the requests in flight on SIGTERM / Ctrl-C, then raises the signal again
    # with the handler it found: a quiet one here, so that the command returns and exits 0.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.say("Stopped")


def _stopped(signum: int, frame: object) -> None:
    """The handler uvicorn hands a stop signal back to after its graceful shutdown."""
