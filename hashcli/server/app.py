"""The HTTP service of ``hashret serve`` (FastAPI): a run's model, index and code store loaded
once (:class:`hashcli.workflows.retrieval.Retriever`), searches batched (:mod:`.batching`).

Endpoints (JSON; errors are ``{"error": "..."}`` with a 4xx status):

* ``GET /api/health``: ``{"status": "ok", "run", "bits", "n_database", "engine", "device"}``;
* ``POST /api/search?top=K[&radius=R]``, multipart field ``image``: exactly the object one
  ``hashret query --json`` line gives for that image, ``query`` being the upload's file name
  (its own ``label`` and ``class`` are null: an upload has no path to recognise it by);
* ``POST /api/search?row=N[&top=K]`` without an image: search with database row N's code (the
  page's "more like this");
* ``POST /api/items``, multipart ``image`` and optional form fields ``class`` (a class name of
  the database) or ``label`` (an integer): the image joins the database as ``hashret index
  add`` adds codes (under the index's writer lock, atomically; the file kept in the run's
  ``uploads/``); 201 ``{"row": N}``, searchable at once and after a restart;
* ``GET /api/stats``: ``{"batch_sizes": {size: batches}, "workers", "max_wait_ms"}``;
* ``GET /api/items/{row}/thumbnail``: a small JPEG of database row ``row`` (only database rows:
  no path from a request reaches the file system).

With a token every ``/api`` call needs ``Authorization: Bearer TOKEN`` (401 otherwise). An
upload over the size limit is refused with 413 before it is decoded; an undecodable image or a
decompression bomb gets 400; the service goes on serving after each.
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hashcli.data.images import decode_image
from hashcli.errors import DataError, HashretError
from hashcli.server.batching import Batcher, choose_batching

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
    max_wait_ms: float | None = None,
    workers: int | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The FastAPI app over an opened Retriever (see the module docstring); ``workers`` and
    ``max_wait_ms`` None: chosen for the retriever's device (:func:`.batching.choose_batching`),
    which may give each forward pass a share of the cores."""
    plan = choose_batching(retriever.device, workers, max_wait_ms)
    if plan.threads is not None:
        retriever.use_threads(plan.threads)
    batcher = Batcher(
        retriever, max_batch=max_batch, max_wait_ms=plan.max_wait_ms, workers=plan.workers
    )

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
        await batcher.call(retriever.refresh)  # rows added by anyone since
        return {
            "status": "ok",
            "run": run_name,
            "bits": retriever.bits,
            "n_database": retriever.index.ntotal,
            "engine": retriever.engine,
            "device": retriever.device,
        }

    @app.get("/api/stats", dependencies=guarded)
    async def stats() -> dict[str, Any]:
        """How many batches of each size ran (what dynamic batching achieved)."""
        return {
            "batch_sizes": {str(k): v for k, v in sorted(batcher.batch_sizes.items())},
            "workers": batcher.workers,
            "max_wait_ms": 1000 * batcher.max_wait,
        }

    @app.post("/api/search", dependencies=guarded)
    async def search(
        request: Request,
        image: Annotated[UploadFile | None, File()] = None,
        top: Annotated[int | None, Query(ge=1)] = None,
        radius: Annotated[int | None, Query(ge=0)] = None,
        row: Annotated[int | None, Query(ge=0)] = None,
    ) -> JSONResponse:
        if (image is None) == (row is None):
            raise HTTPException(422, "send an image, or a database row to search with")
        if image is not None:
            name = image.filename or "upload"
            data = await _read_upload(request, image, name)
            decoded: Any = await _decode(data, name, prepare=True)
        else:
            await batcher.call(retriever.refresh)
            if row >= retriever.index.ntotal:
                raise HTTPException(404, f"no database row {row}")
            name, decoded = f"row {row}", int(row)
        k = top if top is not None else (None if radius is not None else DEFAULT_TOP)
        try:
            result = await batcher.search(decoded, name, k, radius)
        except HashretError as exc:
            raise HTTPException(400, str(exc)) from None
        # plain data already: straight to JSON, without FastAPI's jsonable_encoder walk
        return JSONResponse(result.to_dict())

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.post("/api/items", dependencies=guarded, status_code=201)
    async def add_item(
        request: Request,
        image: Annotated[UploadFile, File()],
        class_name: Annotated[str | None, Form(alias="class")] = None,
        label: Annotated[int | None, Form(ge=0)] = None,
    ) -> dict[str, int]:
        name = image.filename or "upload"
        data = await _read_upload(request, image, name)
        decoded = await _decode(data, name)
        if class_name is not None:
            names = retriever.store.class_names or []
            if class_name not in names:
                raise HTTPException(400, f"unknown class {class_name!r}")
            if label is not None and label != names.index(class_name):
                raise HTTPException(400, f"class {class_name!r} is label {names.index(class_name)}")
            label = names.index(class_name)
        suffix = "." + (image_extension(data) or "jpg")
        try:
            row = await batcher.call(retriever.add_item, data, decoded, suffix=suffix, label=label)
        except HashretError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"row": row}

    @app.get("/api/items/{row}/thumbnail", dependencies=guarded)
    async def thumbnail(row: int) -> Response:
        return Response(await batcher.call(_thumbnail, retriever, row), media_type="image/jpeg")

    async def _decode(data: bytes, name: str, prepare: bool = False) -> Any:
        """The upload decoded in a worker thread (Pillow releases the GIL while decoding and
        resizing), so that it runs beside the batch and other requests; with ``prepare`` the
        model input (:meth:`Retriever.prepare`) instead of the image. 400 for a bad image."""

        def work() -> Any:
            image = decode_image(data, name)
            return retriever.prepare(image) if prepare else image

        try:
            return await run_in_threadpool(work)
        except DataError as exc:
            raise HTTPException(400, str(exc)) from None

    async def _read_upload(request: Request, image: UploadFile, name: str) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes + 4096:
            raise HTTPException(413, f"upload over {max_upload_bytes:,} bytes")
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload over {max_upload_bytes:,} bytes")
        if not data:
            raise HTTPException(400, f"{name} is empty")
        return data

    return app


def _page() -> str:
    from importlib.resources import files

    return files("hashcli.server").joinpath("page.html").read_text(encoding="utf-8")


#: Longest side of a thumbnail, pixels.
THUMBNAIL_SIZE = 160


def _thumbnail(retriever: Any, row: int) -> bytes:
    """JPEG bytes of database row ``row``'s image (404 when there is no such row or file)."""
    import io

    from hashcli.data.images import load_image

    retriever.refresh()
    try:
        path = retriever.row_path(row)
    except IndexError:
        raise HTTPException(404, f"no database row {row}") from None
    if path is None:
        raise HTTPException(404, f"database row {row} records no image")
    try:
        image = load_image(path)
    except DataError:
        raise HTTPException(404, f"the image of database row {row} cannot be read") from None
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def image_extension(data: bytes) -> str | None:
    """The file extension of an image's bytes, from Pillow's format name (jpeg -> jpg)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
    except Exception:
        return None
    return {"jpeg": "jpg"}.get(fmt, fmt) or None
