"""The HTTP service of ``hashret serve`` (FastAPI): a run's model, index and code store loaded
once (:class:`hashcli.workflows.retrieval.Retriever`), searches batched (:mod:`.batching`).

Endpoints (JSON; errors are ``{"error": "..."}`` with a 4xx status):

* ``GET /api/health``: ``{"status": "ok", "run", "bits", "n_database", "engine", "device"}``;
* ``POST /api/search?top=K[&radius=R]``, multipart field ``image``: exactly the object one
  ``hashret query --json`` line gives for that image, ``query`` being the upload's file name.

With a token every ``/api`` call needs ``Authorization: Bearer TOKEN`` (401 otherwise). An
upload over the size limit is refused with 413 before it is decoded; an undecodable image or a
decompression bomb gets 400; the service goes on serving after each.
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hashcli.data.images import decode_image
from hashcli.errors import DataError, HashretError
from hashcli.server.batching import Batcher

#: Uploads larger than this are refused (413) before decoding.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Results per search when neither top nor radius is given (as ``hashret query``).
DEFAULT_TOP = 20


def create_app(
    retriever: Any,
    *,
    run_name: str | None = None,
    token: str | None = None,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The FastAPI app over an opened Retriever (see the module docstring)."""
    batcher = Batcher(retriever, max_batch=max_batch, max_wait_ms=max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="hashret", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
            raise HTTPException(401, "missing or wrong token (Authorization: Bearer TOKEN)")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg')}"
            for error in exc.errors()
        )
        return JSONResponse({"error": problems or "bad request"}, status_code=422)

    guarded = [Depends(authorised)]

    @app.get("/api/health", dependencies=guarded)
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "run": run_name,
            "bits": retriever.bits,
            "n_database": retriever.index.ntotal,
            "engine": retriever.engine,
            "device": retriever.device,
        }

    @app.post("/api/search", dependencies=guarded)
    async def search(
        request: Request,
        image: Annotated[UploadFile, File()],
        top: Annotated[int | None, Query(ge=1)] = None,
        radius: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict[str, Any]:
        name = image.filename or "upload"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes + 4096:
            raise HTTPException(413, f"upload over {max_upload_bytes:,} bytes")
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload over {max_upload_bytes:,} bytes")
        if not data:
            raise HTTPException(400, f"{name} is empty")
        try:
            decoded = decode_image(data, name)
        except DataError as exc:
            raise HTTPException(400, str(exc)) from None
        k = top if top is not None else (None if radius is not None else DEFAULT_TOP)
        try:
            result = await batcher.search(decoded, name, k, radius)
        except HashretError as exc:
            raise HTTPException(400, str(exc)) from None
        return result.to_dict()

    return app
