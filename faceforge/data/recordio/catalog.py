"""Where every image record of a ``.rec`` is and which class it holds.

Two layouts exist. MS1M-style files (insightface's ``im2rec``) start with a header record 0
whose flag is > 0 and whose two labels are one past the last image key and one past the last
identity record: images are keys ``1..label[0]-1``, followed by one record per identity whose
two labels are that identity's ``[start, end)`` image keys. Files from insightface's newer
writer (and from ``shuffle_rec.py``) have no header: every key, from 0, is an image. Class
ids come from each image's own header; they are read once by streaming through the file in
offset order and then kept in the label cache (:mod:`faceforge.data.recordio.cache`).
"""

from __future__ import annotations

import functools
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from faceforge.data.recordio.format import (
    IR_HEADER,
    LENGTH_MASK,
    MAGIC,
    MAX_CLASS,
    WHOLE,
    class_of,
    read_record,
    unpack_payload,
)
from faceforge.data.recordio.index import RecordFiles, read_idx, spans
from faceforge.errors import FormatError

#: what the label scan reads of each record: part header, IRHeader, first label
_HEAD = struct.Struct("<IIIfQQf")
#: read buffer of the label scan (it walks the file forward)
_SCAN_BUFFER = 1 << 22
#: what the label scan gives a record it leaves out: corrupt, or holding no image
_CORRUPT, _NO_IMAGE = -1, -2


@dataclass(frozen=True)
class Catalog:
    """Image records in key order: their keys, byte offsets, spans (bytes to the next
    record) and class ids; ``header`` tells the MS1M layout; ``skipped`` counts records
    left out as corrupt."""

    keys: np.ndarray
    offsets: np.ndarray
    spans: np.ndarray
    labels: np.ndarray
    header: bool
    skipped: int = 0


def describe_record(rec: Path, key: int, offset: int) -> str:
    """How errors name a record: file, record key (its index in the ``.idx``), byte."""
    return f"{rec}: record {key} at byte {offset}"


def header_end(fd: int, rec: Path, offset: int, span: int, size: int) -> int | None:
    """One past the last image key when record 0 (at ``offset``) is an MS1M header: labels
    and no image (insightface tests only flag > 0, which mistakes an image with a label array
    for a header)."""
    place = describe_record(rec, 0, offset)
    payload = read_record(functools.partial(os.pread, fd), offset, span, size, place)
    header, labels, image = unpack_payload(payload, place)
    if header.flag == 0 or len(image):
        return None
    end = class_of(header, labels, place)
    if end < 1:
        raise FormatError(f"{place}: header record says images end before key 1")
    return end


def build_catalog(files: RecordFiles, skip_corrupt: bool = False) -> Catalog:
    """Read the ``.idx`` and every image record's header (not its image)."""
    size = files.rec.stat().st_size
    keys, offsets = read_idx(files.idx, size)
    sizes = spans(offsets, size)
    order = np.argsort(keys)
    keys, offsets, sizes = keys[order], offsets[order], sizes[order]
    with open(files.rec, "rb", buffering=_SCAN_BUFFER) as f:
        end, lost = None, False
        if keys[0] == 0:
            end, lost = _first_record(
                f.fileno(), files.rec, offsets[0], sizes[0], size, skip_corrupt
            )
        if end is not None:
            found = _image_positions(files.idx, keys, end)
            keys, offsets, sizes = keys[found], offsets[found], sizes[found]
        elif lost:
            keys, offsets, sizes = keys[1:], offsets[1:], sizes[1:]
        labels = _scan(f, files.rec, keys, offsets, sizes, size, skip_corrupt, images_only=lost)
    kept = labels >= 0
    skipped = int((labels == _CORRUPT).sum()) + lost
    if skipped:
        warnings.warn(f"{files.rec}: left out {skipped} corrupt record(s)", stacklevel=2)
    header = end is not None or lost  # a lost first record may have been a header: not DALI's
    return Catalog(keys[kept], offsets[kept], sizes[kept], labels[kept], header, skipped)


def _first_record(
    fd: int, rec: Path, offset: int, span: int, size: int, skip: bool
) -> tuple[int | None, bool]:
    """:func:`header_end` of record 0, and whether that record is unreadable and left out
    (``skip``). Without it an MS1M file's images cannot be told from its identity records by
    key, so they are told by content: every record without an image is left out too."""
    try:
        return header_end(fd, rec, int(offset), int(span), size), False
    except FormatError as exc:
        if not skip:
            raise
        warnings.warn(
            f"{exc}; records without an image (the identity records, if it was an MS1M "
            "header) are left out with it",
            stacklevel=4,
        )
        return None, True


def _image_positions(idx: Path, keys: np.ndarray, end: int) -> np.ndarray:
    """Where keys ``1..end-1`` (the images of an MS1M-style file) are in the sorted ``keys``."""
    if end - 1 > len(keys):
        raise FormatError(
            f"{idx}: the header record says there are {end - 1} images, but the index lists "
            f"only {len(keys)} records"
        )
    wanted = np.arange(1, end)
    found = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    missing = wanted[keys[found] != wanted]
    if len(missing):
        raise FormatError(
            f"{idx}: the header record says images are keys 1..{end - 1}, but key "
            f"{missing[0]} is not in the index"
        )
    return found


def _scan(
    f: BinaryIO,
    rec: Path,
    keys: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    size: int,
    skip: bool,
    images_only: bool = False,
) -> np.ndarray:
    """Class id of every record (``_CORRUPT`` for a corrupt one when ``skip``, ``_NO_IMAGE``
    for one without an image when ``images_only``), in offset order so that the buffered
    file only ever moves forward."""
    labels = np.full(len(keys), _CORRUPT, dtype=np.int64)
    for i in np.argsort(offsets, kind="stable").tolist():
        try:
            labels[i] = _label_at(
                f, rec, int(keys[i]), int(offsets[i]), int(sizes[i]), size, images_only
            )
        except FormatError as exc:
            if not skip:
                raise
            warnings.warn(str(exc), stacklevel=3)
    return labels


def _label_at(
    f: BinaryIO, rec: Path, key: int, offset: int, span: int, size: int, images_only: bool
) -> int:
    """The class id of the record at ``offset``, from its first 36 bytes when the record is
    whole and sound (the fast path of a 5M-record scan); otherwise the full read names what
    is wrong. ``_NO_IMAGE`` for a record without an image when ``images_only``."""
    f.seek(offset)
    head = f.read(_HEAD.size)
    if len(head) == _HEAD.size:
        magic, lrec, flag, label, _, _, first = _HEAD.unpack(head)
        length = lrec & LENGTH_MASK
        whole = magic == MAGIC and lrec >> 29 == WHOLE and offset + 8 + length <= size
        if whole and images_only and length == IR_HEADER.size + 4 * flag:
            return _NO_IMAGE
        value = first if flag else label
        in_range = 0 <= value < MAX_CLASS  # False for NaN, so int() below cannot fail
        if whole and IR_HEADER.size + 4 * flag <= length and in_range and value == int(value):
            return int(value)
    place = describe_record(rec, key, offset)
    payload = read_record(functools.partial(os.pread, f.fileno()), offset, span, size, place)
    header, labels, image = unpack_payload(payload, place)
    if images_only and not len(image):
        return _NO_IMAGE
    return class_of(header, labels, place)
