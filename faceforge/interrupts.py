"""Ctrl-C and SIGTERM during long work stop it at the next safe boundary (a training step,
an enrolled person), so what is saved on the way out is whole and resumable; a second Ctrl-C
stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType

from faceforge.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Within ``with StopRequests() as stop:``, SIGINT/SIGTERM set ``stop.signum`` instead of
    killing the process (main thread only; elsewhere signals keep their handlers)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._waiting: str | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._waiting is not None:
            raise Interrupted(f"interrupted while {self._waiting}; nothing was changed", signum)
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum

    @contextlib.contextmanager
    def at_once(self, waiting: str) -> Iterator[None]:
        """Within the block, a wait with nothing to save yet (``waiting``: "waiting for the
        gallery lock"), a signal stops at once with :class:`~faceforge.errors.Interrupted`:
        Python resumes a blocking call after a handler that returns, so a handler that only
        noted the signal would leave the process waiting on."""
        self._waiting = waiting
        try:
            yield
        finally:
            self._waiting = None

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
