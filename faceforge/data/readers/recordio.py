"""MXNet RecordIO datasets as insightface ships them (MS1M-ArcFace, MS1MV2/V3, Glint360K,
CASIA-WebFace): ``train.rec`` + ``train.idx`` + ``property``, read without mxnet.

The format is in :mod:`faceforge.data.recordio.format`, the two layouts (with and without
the MS1M header record) in :mod:`faceforge.data.recordio.catalog`, the label cache that makes
later opens take seconds in :mod:`faceforge.data.recordio.cache`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS, decode_image
from faceforge.data.readers.class_ids import contiguous_labels
from faceforge.data.recordio.cache import open_catalog
from faceforge.data.recordio.catalog import describe_record
from faceforge.data.recordio.format import IRHeader, read_record, unpack_payload
from faceforge.data.recordio.index import RecordFiles, read_property
from faceforge.files import ProcessFile, folder_lock


class RecordIOReader:
    """Random access to the images of a RecordIO dataset by sample index.

    ``path`` is the folder holding ``train.rec``/``train.idx``/``property`` or a ``.rec``
    file. Safe with any number of DataLoader workers: every process reads the file with
    ``pread`` through its own descriptor (:class:`~faceforge.files.ProcessFile`). With
    ``skip_corrupt`` records whose headers cannot be read are left out (with a warning)
    instead of raising. Class ids that are not contiguous are remapped (with a warning);
    ``class_ids`` maps the new ids back to the stored ones. Images declaring more than
    ``max_pixels`` are refused before decoding.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        skip_corrupt: bool = False,
        label_cache: bool = True,
        max_pixels: int = MAX_DATASET_PIXELS,
    ) -> None:
        self.max_pixels = max_pixels
        self.files = RecordFiles.at(path)
        with folder_lock(self.files.rec.parent, shared=True):  # .rec and .idx of one writer
            catalog = open_catalog(self.files, skip_corrupt, label_cache)
            self._file = ProcessFile(self.files.rec)
        self.keys, self.offsets, self.spans = catalog.keys, catalog.offsets, catalog.spans
        self.has_header = catalog.header
        declared = read_property(self.files.prop)
        self.labels, self.class_ids = contiguous_labels(catalog.labels, declared, self.files.rec)
        #: records left out as corrupt (``skip_corrupt``)
        self.skipped = catalog.skipped
        self._size = self._file.size

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def __len__(self) -> int:
        return len(self.keys)

    def where(self, index: int) -> str:
        """How errors name sample ``index``: the file, its record key and byte offset."""
        return describe_record(self.files.rec, int(self.keys[index]), int(self.offsets[index]))

    def record(self, index: int) -> tuple[IRHeader, np.ndarray, memoryview]:
        """IRHeader, label array and encoded image of sample ``index``."""
        if not 0 <= index < len(self.keys):
            raise IndexError(f"sample {index} of {len(self.keys)}")
        place = self.where(index)
        payload = read_record(
            self._file.read, int(self.offsets[index]), int(self.spans[index]), self._size, place
        )
        return unpack_payload(payload, place)

    def encoded(self, index: int) -> bytes:
        """The encoded image bytes of sample ``index``, as stored."""
        return bytes(self.record(index)[2])

    def load(self, index: int) -> np.ndarray:
        image = np.frombuffer(self.record(index)[2], np.uint8)
        return decode_image(image, self.where(index), self.max_pixels)

    def close(self) -> None:
        """Close this process's file handle (the next read opens it again)."""
        self._file.close()
