"""The lock that makes a gallery folder safe to edit from several processes at once.

Enrolling loads a gallery, adds people and saves it; two ``faceforge enroll`` runs doing that
at once would each save over the other's additions. Every writer therefore holds an exclusive
``fcntl.flock`` on ``gallery.lock`` in the folder, from load to save. Readers take no lock
(they never wait for a long enrollment): saves are atomic, and a reader that finds the data
file replaced by a save reads ``gallery.json`` again. The lock belongs to the open file: it is
released when its holder exits or dies, so a crash never leaves a gallery locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "gallery.lock"


@contextlib.contextmanager
def gallery_lock(directory: str | Path) -> Iterator[None]:
    """Hold the writers' lock of the gallery in ``directory`` for the ``with`` block, waiting
    for it; creates the folder (OSError when it cannot be written). Not reentrant: a process
    holding the lock must not ask for it again."""
    path = Path(directory) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock
