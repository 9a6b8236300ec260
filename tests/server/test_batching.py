"""The batcher's queue discipline, with a stand-in retriever whose first batch blocks."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from hashcli.server.batching import Batcher


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
