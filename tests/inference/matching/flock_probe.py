"""A stand-in for the gallery lock module's ``fcntl`` that says when ``flock`` has to wait, so
that concurrency tests synchronise on the lock itself instead of sleeping."""

from __future__ import annotations

import fcntl
from collections.abc import Callable


class ReportingFlock:
    """``flock`` that calls ``on_wait`` (and sets ``waited``) when another holder has the
    lock, then waits for it as the real one does."""

    LOCK_EX = fcntl.LOCK_EX

    def __init__(self, on_wait: Callable[[], object]) -> None:
        self.on_wait = on_wait
        self.waited = False

    def flock(self, fd: int, operation: int) -> None:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            self.waited = True
            self.on_wait()
            fcntl.flock(fd, operation)
