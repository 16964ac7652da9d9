"""Dynamic batching: aligned faces of concurrent requests go through the embedder together.

One worker thread owns the :class:`~faceforge.core.embedder.Embedder` (which is not
thread-safe); it takes the first waiting job, then gathers more for at most ``max_wait_ms``
or until ``max_batch`` faces, embeds them in one call and resolves each job's future.
``max_batch=1`` turns batching off (one request at a time).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from faceforge.core.embedder import Embedder


class Batcher:
    """Embeds (k, H, W, 3) uint8 crops for many callers, ``max_batch`` faces at a time."""

    def __init__(self, embedder: Embedder, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._jobs: queue.Queue[tuple[np.ndarray, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="embed-batcher", daemon=True)
        self._thread.start()

    async def embed(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-length (k, D) embeddings of ``crops`` and their (k,) feature norms, computed
        with other callers' faces."""
        future: Future = Future()
        self._jobs.put((crops, future))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            batch = [job]
            size, deadline = len(job[0]), time.monotonic() + self.max_wait
            while size < self.max_batch:
                try:
                    nxt = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._jobs.put(None)
                    break
                batch.append(nxt)
                size += len(nxt[0])
            self._run(batch)

    def _run(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        # a caller that stopped waiting (its request cancelled) cancelled its future: its
        # faces are dropped, and the others' futures can no longer be cancelled
        batch = [
            (crops, future) for crops, future in batch if future.set_running_or_notify_cancel()
        ]
        if not batch:
            return
        try:
            vectors, norms = self.embedder.embed_with_norms(
                np.concatenate([crops for crops, _ in batch])
            )
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for crops, future in batch:
            future.set_result(
                (vectors[start : start + len(crops)], norms[start : start + len(crops)])
            )
            start += len(crops)
