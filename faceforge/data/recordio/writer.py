"""Write RecordIO datasets that faceforge and insightface (``mx.recordio``, DALI) both read.

Layouts: ``ms1m`` puts the header record 0 first (images at keys 1.., then one ``[start,
end)`` record per identity, which needs each identity's images written together); ``plain``
numbers images from key 0 with no header, as insightface's newer writer and ``shuffle_rec.py``
do, and as DALI's mxnet reader needs. Every image record is ``IRHeader(0, label, key, 0)``
followed by the encoded image. The ``.rec``, ``.idx`` and ``property`` are written under
temporary names and replace the targets only when :meth:`RecordIOWriter.close` succeeds,
together, under a lock on their folder that readers share.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from faceforge.data.recordio.format import IR_HEADER, frame, pack_payload
from faceforge.data.recordio.index import RecordFiles, write_property
from faceforge.errors import DataError
from faceforge.files import AtomicOutput, atomic_open, folder_lock

LAYOUTS = ("ms1m", "plain")
#: float32 holds whole numbers exactly up to here: the limit of labels and header keys
FLOAT_EXACT = 1 << 24


class RecordIOWriter(AtomicOutput):
    """Append images with :meth:`add`; :meth:`close` finishes (or use it as a context
    manager, which discards everything when the block raises).

    >>> with RecordIOWriter("out/train.rec") as w:  # doctest: +SKIP
    ...     w.add(0, jpeg_bytes)
    """

    def __init__(
        self, path: str | Path, layout: str = "ms1m", image_size: tuple[int, int] = (112, 112)
    ) -> None:
        if layout not in LAYOUTS:
            raise DataError(f"unknown RecordIO layout {layout!r}; valid: {', '.join(LAYOUTS)}")
        self.files = RecordFiles.at(path)
        self.layout = layout
        self.image_size = image_size
        self._stack = contextlib.ExitStack()
        self._rec = self._stack.enter_context(atomic_open(self.files.rec))
        self._idx = self._stack.enter_context(atomic_open(self.files.idx))
        self._key = 0
        #: label -> [first key, one past its last key] (ms1m layout)
        self._ranges: dict[int, list[int]] = {}
        self._last_label = -1
        self.max_label = -1
        if layout == "ms1m":
            self._write(self._header(0, 0))

    def add(self, label: int, image: bytes) -> None:
        """Append one encoded image of class ``label``."""
        if not 0 <= label < FLOAT_EXACT:
            raise DataError(f"class ids must be in [0, 2**24) (float32 labels), got {label}")
        if self.layout == "ms1m":
            self._extend_range(label)
        self._write(pack_payload(self._key, float(label), bytes(image)))
        self.max_label = max(self.max_label, label)

    @property
    def images(self) -> int:
        return self._key - (self.layout == "ms1m")

    def close(self) -> None:
        """Write the identity records and the header (ms1m), the ``property`` file, and put
        everything in place."""
        if self.layout == "ms1m":
            self._finish_ms1m()
        with folder_lock(self.files.rec.parent):  # readers and other writers see both or neither
            self._stack.close()
            write_property(self.files.prop, self.max_label + 1, self.image_size)

    def abort(self) -> None:
        """Discard everything written so far."""
        self._stack.__exit__(DataError, DataError("aborted"), None)

    def _write(self, payload: bytes) -> None:
        self._idx.write(f"{self._key}\t{self._rec.tell()}\n".encode())
        self._rec.write(frame(payload))
        self._key += 1

    def _header(self, first: int, second: int) -> bytes:
        labels = np.array([first, second], dtype="<f4")
        return IR_HEADER.pack(len(labels), 0.0, 0, 0) + labels.tobytes()

    def _extend_range(self, label: int) -> None:
        if label != self._last_label and label in self._ranges:
            raise DataError(
                f"the ms1m RecordIO layout needs each identity's images together, but class "
                f"{label} comes back at image {self.images}; sort by class or use layout='plain'"
            )
        self._ranges.setdefault(label, [self._key, self._key])[1] = self._key + 1
        self._last_label = label

    def _finish_ms1m(self) -> None:
        images_end = self._key
        if images_end + self.max_label + 1 >= FLOAT_EXACT:
            raise DataError(
                f"{images_end - 1} images are too many for the ms1m layout's float32 header "
                "keys; use layout='plain'"
            )
        for label in range(self.max_label + 1):
            start, end = self._ranges.get(label, (images_end, images_end))
            labels = np.array([start, end], dtype="<f4")
            self._write(IR_HEADER.pack(2, 0.0, self._key, 0) + labels.tobytes())
        header = frame(self._header(images_end, self._key))
        self._rec.seek(0)
        self._rec.write(header)
        self._rec.seek(0, 2)
