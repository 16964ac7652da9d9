"""LMDB datasets in faceforge's layout (:mod:`faceforge.data.lmdb.layout`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS, MAX_RECORD_BYTES, decode_image
from faceforge.data.lmdb.layout import (
    LABELS_KEY,
    MAX_META,
    META_KEY,
    Meta,
    image_key,
    open_database,
)
from faceforge.data.readers.class_ids import contiguous_labels
from faceforge.errors import DataError, FormatError


class LmdbReader:
    """Random access to the images of an LMDB dataset by index, safe to share with
    DataLoader workers (forked or spawned: each process reads through its own descriptor).
    A damaged database is a FormatError naming the file and key, never a crash; images
    declaring more than ``max_pixels`` are refused before decoding. Non-contiguous class ids
    are remapped with a warning (``class_ids`` maps back)."""

    def __init__(self, path: str | Path, max_pixels: int = MAX_DATASET_PIXELS) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._db = open_database(self.path)
        meta = Meta.from_bytes(self._db.get(META_KEY, MAX_META), self.path)
        stored = _labels(self._db.get(LABELS_KEY, 8 * meta.images), meta, self.path)
        if self._db.entries != meta.images + 2:
            raise FormatError(
                f"{self.path}: {META_KEY.decode()} says {meta.images} images, but the "
                f"database holds {self._db.entries - 2} (truncated or incomplete copy)"
            )
        self.labels, self.class_ids = contiguous_labels(stored, meta.classes, self.path)

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, index: int) -> str:
        return f"{self.path}: image {index} (key {image_key(index).decode()})"

    def encoded(self, index: int) -> bytes:
        """The encoded image bytes of image ``index``, as stored (at most
        :data:`~faceforge.data.image_io.MAX_RECORD_BYTES`)."""
        if not 0 <= index < len(self.labels):
            raise IndexError(f"image {index} of {len(self.labels)}")
        value = self._db.get(image_key(index), MAX_RECORD_BYTES, self.where(index))
        if value is None:
            raise DataError(f"{self.where(index)}: missing from the database")
        return value

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.encoded(index), self.where(index), self.max_pixels)


def _labels(data: bytes | None, meta: Meta, path: Path) -> np.ndarray:
    if data is None or len(data) != 8 * meta.images:
        found = "no" if data is None else f"{len(data)} bytes of"
        raise FormatError(
            f"{path}: {found} {LABELS_KEY.decode()} for {meta.images} images "
            f"(expected {8 * meta.images} bytes)"
        )
    labels = np.frombuffer(data, "<i8").astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise FormatError(f"{path}: negative class id {labels.min()} in {LABELS_KEY.decode()}")
    return labels
