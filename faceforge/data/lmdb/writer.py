"""Write an LMDB dataset (layout in :mod:`faceforge.data.lmdb.layout`) crash-safely: into a
temporary file beside the target (a :class:`~faceforge.files.Temporary`, so a killed writer's
is deleted by the next one), renamed over it only when :meth:`LmdbWriter.close` succeeds."""

from __future__ import annotations

from pathlib import Path

import lmdb
import numpy as np

from faceforge.data.lmdb.layout import LABELS_KEY, META_KEY, Meta, image_key
from faceforge.errors import DataError
from faceforge.files import AtomicOutput, Temporary

#: images per write transaction
BATCH = 1000


class LmdbWriter(AtomicOutput):
    """Append images with :meth:`add`, then :meth:`close` (or use it as a context manager,
    which discards everything when the block raises). The map grows as needed."""

    def __init__(self, path: str | Path, map_size: int = 1 << 30) -> None:
        self.path = Path(path)
        self._temporary = Temporary(self.path)
        try:
            self._env = lmdb.open(
                str(self._temporary.path), subdir=False, map_size=map_size, lock=False, sync=False
            )
        except BaseException:
            self._temporary.discard()
            raise
        self._pending: list[tuple[bytes, bytes]] = []
        self._labels: list[int] = []

    @property
    def images(self) -> int:
        return len(self._labels)

    def add(self, label: int, image: bytes) -> None:
        """Append one encoded image of class ``label``."""
        if label < 0:
            raise DataError(f"class ids must be >= 0, got {label}")
        self._pending.append((image_key(len(self._labels)), bytes(image)))
        self._labels.append(label)
        if len(self._pending) >= BATCH:
            self._flush()

    def close(self) -> None:
        """Write the labels and counts, sync and put the database in place."""
        labels = np.asarray(self._labels, dtype="<i8")
        meta = Meta(len(labels), int(labels.max()) + 1 if len(labels) else 0)
        self._pending += [(LABELS_KEY, labels.tobytes()), (META_KEY, meta.to_bytes())]
        self._flush()
        self._env.sync(True)
        self._env.close()
        self._temporary.commit()

    def abort(self) -> None:
        """Discard everything written so far."""
        self._env.close()
        self._temporary.discard()

    def _flush(self) -> None:
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self._env.set_mapsize(2 * self._env.info()["map_size"])
        self._pending.clear()
