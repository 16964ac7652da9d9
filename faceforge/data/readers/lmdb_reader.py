"""LMDB datasets in faceforge's layout (:mod:`faceforge.data.lmdb.layout`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceforge.data.image_io import decode_image
from faceforge.data.lmdb.layout import LABELS_KEY, META_KEY, Meta, image_key, shared_readonly
from faceforge.data.readers.class_ids import contiguous_labels
from faceforge.errors import DataError, FormatError


class LmdbReader:
    """Random access to the images of an LMDB dataset by index; every process (DataLoader
    workers included, forked or spawned) uses its own read-only environment, opened on first
    use. Non-contiguous class ids are remapped with a warning (``class_ids`` maps back)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        env = shared_readonly(self.path)
        with env.begin() as txn:
            meta = Meta.from_bytes(txn.get(META_KEY), self.path)
            stored = _labels(txn.get(LABELS_KEY), meta, self.path)
        entries = env.stat()["entries"]
        if entries != meta.images + 2:
            raise FormatError(
                f"{self.path}: {META_KEY.decode()} says {meta.images} images, but the "
                f"database holds {entries - 2} (truncated or incomplete copy)"
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
        """The encoded image bytes of image ``index``, as stored."""
        with shared_readonly(self.path).begin() as txn:
            return bytes(self._get(txn, index))

    def load(self, index: int) -> np.ndarray:
        with shared_readonly(self.path).begin(buffers=True) as txn:  # decode from the map
            return decode_image(np.frombuffer(self._get(txn, index), np.uint8), self.where(index))

    def _get(self, txn: Any, index: int) -> Any:
        if not 0 <= index < len(self.labels):
            raise IndexError(f"image {index} of {len(self.labels)}")
        value = txn.get(image_key(index))
        if value is None:
            raise DataError(f"{self.where(index)}: missing from the database")
        return value


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
