"""Prepare the next batches while the caller works on the current one.

Decoding (OpenCV) and inference (PyTorch, ONNX Runtime) both release the GIL, so background
threads preparing the batches after batch k while batch k is embedded hide the decoding
time. One thread keeps up with a CPU's embedding; an accelerator embeds faster than one core
decodes JPEGs (an H200 embeds ~14,500 112x112 faces/s with IResNet-50, one core decodes
a few thousand), so callers pass :func:`decode_threads` there.

>>> list(ahead(lambda i=i: i * i for i in range(4)))
[0, 1, 4, 9]
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def ahead(jobs: Iterable[Callable[[], T]], workers: int = 1) -> Iterator[T]:
    """The results of ``jobs`` in order, computed by ``workers`` background threads at most
    ``workers`` jobs ahead of the result the caller holds (so ``workers + 1`` results exist
    at once). An error raised by a job is raised where its result is taken; a caller that
    stops early waits only for the jobs already running (the others are cancelled)."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="faceforge-prefetch")
    pending: deque[Future[T]] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def decode_threads(limit: int = 8) -> int:
    """Decoding threads for a network on an accelerator: one per core this process may use,
    at most ``limit``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(limit, cores or 1))
