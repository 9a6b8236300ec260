"""The batcher's queue discipline and its workers, with stand-in retrievers whose forward passes
block or meet, and the batching plan chosen for a device."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from hashcli.server import batching
from hashcli.server.batching import Batcher, BatchingPlan, choose_batching


class SlowRetriever:
    """Inputs are floats (an int would be a database row) and their codes the same numbers;
    the first forward pass waits for ``gate``."""

    bits = 8

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.passes: list[int] = []  # batch size of each forward pass

    def refresh(self) -> None:
        pass

    def encode_prepared(self, inputs):
        self.passes.append(len(inputs))
        if len(self.passes) == 1:
            self.gate.wait(10)
        return np.array([[value] for value in inputs], dtype=np.uint8)

    def search(self, codes, *, k, radius=None, top=None):
        return [(np.zeros(0), np.zeros(0, np.int64))] * len(codes)

    def describe(self, codes, found, names):
        return [f"{name}:{code[0]}" for name, code in zip(names, codes, strict=True)]


def test_searches_queued_during_a_batch_form_the_next_one_without_a_wait():
    async def scenario():
        retriever = SlowRetriever()
        batcher = Batcher(retriever, max_batch=32, max_wait_ms=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.search(1.0, "a", 5, None))
        for _ in range(500):  # until the first batch is in the model
            if retriever.passes or first.done():
                break
            await asyncio.sleep(0.01)
        rest = [
            asyncio.ensure_future(batcher.search(float(i), f"q{i}", 5, None)) for i in range(2, 7)
        ]
        await asyncio.sleep(0.05)  # all five queued behind it
        retriever.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return retriever.passes, results, dict(batcher.batch_sizes)

    passes, results, sizes = asyncio.run(scenario())
    assert passes == [1, 5]  # not five batches of one: --max-wait-ms 0 means "no waiting"
    assert sizes == {1: 1, 5: 1}
    assert results == ["a:1"] + [f"q{i}:{i}" for i in range(2, 7)]


class OverlapRetriever(SlowRetriever):
    """Counts how many forward passes, and how many index lookups, run at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_model = self.in_index = self.most_in_model = self.most_in_index = 0
        self.both_in_model = threading.Barrier(2, timeout=10)  # two passes must meet

    def _enter(self, field: str) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + 1)
            most = "most_" + field
            setattr(self, most, max(getattr(self, most), getattr(self, field)))

    def _leave(self, field: str) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) - 1)

    def encode_prepared(self, inputs):
        self._enter("in_model")
        try:
            if len(self.passes) < 2:
                self.passes.append(len(inputs))
                self.both_in_model.wait()  # BrokenBarrierError unless two passes overlap
            return np.array([[value] for value in inputs], dtype=np.uint8)
        finally:
            self._leave("in_model")

    def search(self, codes, *, k, radius=None, top=None):
        self._enter("in_index")
        time.sleep(0.005)  # long enough for an overlap to be seen
        self._leave("in_index")
        return super().search(codes, k=k, radius=radius, top=top)


def test_two_workers_overlap_their_forward_passes_and_never_their_index_lookups():
    async def scenario():
        retriever = OverlapRetriever()
        batcher = Batcher(retriever, max_batch=1, max_wait_ms=0, workers=2)
        batcher.start()
        names = [f"q{i}" for i in range(8)]
        results = await asyncio.gather(
            *(batcher.search(float(i), name, 5, None) for i, name in enumerate(names))
        )
        await batcher.stop()
        return retriever, results

    retriever, results = asyncio.run(scenario())
    assert results == [f"q{i}:{i}" for i in range(8)]  # each search its own answer
    assert retriever.most_in_model == 2  # the first two passes met at the barrier
    assert retriever.most_in_index == 1  # the index, store and FAISS: one thread at a time


def test_one_worker_runs_one_pass_at_a_time():
    async def scenario():
        retriever = OverlapRetriever()
        retriever.both_in_model = threading.Barrier(2, timeout=0.2)
        batcher = Batcher(retriever, max_batch=1, max_wait_ms=0, workers=1)
        batcher.start()
        outcome = await asyncio.gather(
            *(batcher.search(float(i), f"q{i}", 5, None) for i in range(3)),
            return_exceptions=True,
        )
        await batcher.stop()
        return retriever, outcome

    retriever, outcome = asyncio.run(scenario())
    assert retriever.most_in_model == 1
    assert isinstance(outcome[0], threading.BrokenBarrierError)  # nobody came to meet it
    assert outcome[2] == "q2:2"  # and the batcher went on


@pytest.mark.parametrize(
    ("device", "cores", "given", "expected"),
    [
        ("cpu", 2, (None, None), BatchingPlan(workers=2, max_wait_ms=0.0, threads=1)),
        ("cpu", 16, (None, None), BatchingPlan(workers=2, max_wait_ms=0.0, threads=8)),
        ("cpu", 1, (None, None), BatchingPlan(workers=1, max_wait_ms=0.0, threads=None)),
        ("cpu", 16, (4, 3.0), BatchingPlan(workers=4, max_wait_ms=3.0, threads=4)),
        ("cpu", 2, (1, None), BatchingPlan(workers=1, max_wait_ms=0.0, threads=None)),
        ("cuda", 16, (None, None), BatchingPlan(workers=1, max_wait_ms=5.0, threads=None)),
        ("cuda", 16, (2, 0.0), BatchingPlan(workers=2, max_wait_ms=0.0, threads=None)),
    ],
)
def test_batching_plan(monkeypatch, device, cores, given, expected):
    monkeypatch.setattr(batching, "usable_cores", lambda: cores)
    assert choose_batching(device, *given) == expected


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers"):
        Batcher(SlowRetriever(), workers=0)
