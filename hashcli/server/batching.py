"""Dynamic batching: concurrent searches that arrive within ``max_wait_ms`` of the first one
are encoded in one forward pass (up to ``max_batch`` images) and searched with one FAISS call per
(top, radius), as inference servers batch requests.

A request's image is decoded and prepared (resized, cropped, normalised) in a worker thread
before it is queued, so a bad upload never reaches a batch and only the forward pass and the
search wait for each other. Batches run in ``workers`` threads, so the event loop keeps
accepting requests meanwhile; a batch forms whenever a worker is free, from every search
queued by then. An error in a batch is given to each of its requests, and the next batch runs
as usual.

On the CPU two workers each run their forward pass on half the cores, with no wait
(:func:`choose_batching`): ONNX Runtime spends 9.6 ms of CPU an image on one thread against
12.4 ms on two (resnet18 at 112 px, batches of 4), and on 2 cores a worker waiting for a batch
to fill leaves a core idle (8 clients: 116 searches/s against 102 for one worker on both
cores, and 108 with a 2 ms wait; ``benchmarks/bench_serve.py``). On a GPU a batch of 8 costs
little more than one image, so one worker waits 5 ms for others to join.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashcli.runtime import usable_cores

#: How long a search waits for others to join its batch on a GPU (--max-wait-ms).
GPU_MAX_WAIT_MS = 5.0


@dataclass
class BatchingPlan:
    """How ``hashret serve`` batches: ``workers`` forward passes at once, each on ``threads``
    CPU cores (None: the engine's own default), a search waiting ``max_wait_ms`` for others."""

    workers: int
    max_wait_ms: float
    threads: int | None


def choose_batching(
    device: str, workers: int | None = None, max_wait_ms: float | None = None
) -> BatchingPlan:
    """The plan for a model on ``device`` ("cpu" or "cuda"), ``workers`` and ``max_wait_ms``
    filling in what is not given (see the module docstring): on the CPU two workers (one on
    a single core) sharing the cores, no wait; on a GPU one worker, 5 ms."""
    cpu = not str(device).startswith("cuda")
    cores = usable_cores()
    if workers is None:
        workers = min(2, cores) if cpu else 1
    if max_wait_ms is None:
        max_wait_ms = 0.0 if cpu else GPU_MAX_WAIT_MS
    threads = max(1, cores // workers) if cpu and workers > 1 else None
    return BatchingPlan(workers=workers, max_wait_ms=max_wait_ms, threads=threads)


@dataclass
class _Request:
    image: Any  # a prepared model input (Retriever.prepare), or the int row of a database item
    name: str
    top: int | None
    radius: int | None
    future: asyncio.Future


class Batcher:
    """Queue of searches served in batches by one background task (:meth:`start`)."""

    def __init__(
        self, retriever: Any, *, max_batch: int = 32, max_wait_ms: float = 5.0, workers: int = 1
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.retriever = retriever
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.workers = workers
        self.batch_sizes: Counter[int] = Counter()  # how many batches of each size ran
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task | None = None
        self._free: asyncio.Semaphore | None = None  # batch workers not running a batch
        self._running: set[asyncio.Task] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hashret-batch")
        # The index, the code store and FAISS's thread setting are used by one thread at a
        # time; only the forward passes of different batches overlap.
        self._lock = threading.Lock()

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._free = asyncio.Semaphore(self.workers)
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._pool.shutdown(wait=True)

    async def search(self, image: Any, name: str, top: int | None, radius: int | None) -> Any:
        """The :class:`hashcli.workflows.retrieval.QueryResult` of one image, given as its
        prepared model input (:meth:`hashcli.workflows.retrieval.Retriever.prepare`), or of a
        database row (an int)."""
        assert self._queue is not None, "Batcher.start() first"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(image, name, top, radius, future))
        return await future

    async def _serve(self) -> None:
        """Form a batch whenever a worker is free: the first search to come, every search
        queued meanwhile (even past the wait) and those arriving within ``max_wait``."""
        assert self._queue is not None and self._free is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._free.acquire()
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():  # waiting already: joins even after the deadline
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            self.batch_sizes[len(batch)] += 1
            task = loop.create_task(self._answer(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[_Request]) -> None:
        """Run one batch in a worker thread and give each request its result."""
        assert self._free is not None
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self._run, batch)
        except Exception as exc:  # every request of the batch gets the error, then go on
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        finally:
            self._free.release()
        for request, result in zip(batch, results, strict=True):
            if not request.future.done():  # a client may have gone away
                request.future.set_result(result)

    async def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` in a batch worker under the index lock, so that it never meets a
        batch's search or another call (the index and code store are used by one thread at a
        time; forward passes may run beside it)."""
        loop = asyncio.get_running_loop()

        def locked() -> Any:
            with self._lock:
                return function(*args, **kwargs)

        return await loop.run_in_executor(self._pool, locked)

    def _run(self, batch: list[_Request]) -> list[Any]:
        """One forward pass for the whole batch, one search per (top, radius)."""
        retriever = self.retriever
        images = [i for i, r in enumerate(batch) if not isinstance(r.image, int)]
        rows = [i for i, r in enumerate(batch) if isinstance(r.image, int)]
        codes = np.zeros((len(batch), -(-retriever.bits // 8)), dtype=np.uint8)
        if images:  # one forward pass for every image of the batch, beside other batches'
            codes[images] = retriever.encode_prepared([batch[i].image for i in images])
        with self._lock:
            retriever.refresh()  # rows added since by `hashret index add` are searchable
            if rows:
                codes[rows] = retriever.row_codes([batch[i].image for i in rows])
            results: list[Any] = [None] * len(batch)
            groups: dict[tuple[int | None, int | None], list[int]] = {}
            for i, request in enumerate(batch):
                groups.setdefault((request.top, request.radius), []).append(i)
            for (top, radius), members in groups.items():
                k = top if radius is None else None
                group_codes = codes[members]
                found = retriever.search(group_codes, k=k, radius=radius, top=top)
                names = [batch[i].name for i in members]
                described = retriever.describe(group_codes, found, names)
                for i, result in zip(members, described, strict=True):
                    results[i] = result
        return results
