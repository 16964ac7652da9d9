"""The embedding batcher: faces of concurrent callers embedded together, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import numpy as np

from faceforge.serve.batcher import Batcher


class _Gated:
    """An embedder that holds its first call until ``gate`` is set; records batch sizes."""

    def __init__(self) -> None:
        self.gate, self.started, self.sizes = threading.Event(), threading.Event(), []

    def embed_with_norms(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.started.set()
        self.gate.wait()
        self.sizes.append(len(crops))
        return np.full((len(crops), 4), len(self.sizes), np.float32), np.ones(len(crops))


def test_a_cancelled_caller_is_dropped_and_the_worker_serves_the_others() -> None:
    """A request cancelled while its faces wait (a client gone, a timeout) cancels its
    future; the worker used to die setting a result on it, hanging every later request."""
    embedder = _Gated()
    batcher = Batcher(embedder, max_batch=32, max_wait_ms=0)
    crops = np.zeros((1, 2, 2, 3), np.uint8)

    async def scenario() -> None:
        first = asyncio.create_task(batcher.embed(crops))
        await asyncio.to_thread(embedder.started.wait)  # the worker holds the first batch
        victim = asyncio.create_task(batcher.embed(crops))
        other = asyncio.create_task(batcher.embed(crops))
        await asyncio.sleep(0)  # both queued
        victim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await victim  # its future is cancelled now
        embedder.gate.set()
        assert (await first)[0].shape == (1, 4)
        vectors, _ = await asyncio.wait_for(other, 30)
        later, _ = await asyncio.wait_for(batcher.embed(crops), 30)
        assert vectors[0, 0] == 2 and later[0, 0] == 3  # the second and third batches

    asyncio.run(scenario())
    assert embedder.sizes == [1, 1, 1]  # the victim's face was never embedded
    batcher.close()
