"""Prepare the next batch while the caller works on the current one.

Decoding (OpenCV) and inference (PyTorch, ONNX Runtime) both release the GIL, so one
background thread preparing batch k+1 while batch k is embedded hides most of the decoding
time; at most two batches are held at once.

>>> list(ahead(lambda i=i: i * i for i in range(4)))
[0, 1, 4, 9]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def ahead(jobs: Iterable[Callable[[], T]]) -> Iterator[T]:
    """The results of ``jobs`` in order, each computed in a background thread while the
    caller uses the previous one. An error raised by a job is raised where its result is
    taken; a caller that stops early waits only for the job already started."""
    with ThreadPoolExecutor(1, thread_name_prefix="faceforge-prefetch") as pool:
        pending: Future[T] | None = None
        for job in jobs:
            started = pool.submit(job)
            if pending is not None:
                yield pending.result()
            pending = started
        if pending is not None:
            yield pending.result()
