"""MXNet RecordIO framing and insightface's ``IRHeader``, as functions over bytes.

A record on disk is one or more parts, each ``uint32 magic 0xced7230a | uint32 lrec | data |
zero padding to a multiple of 4``; the upper 3 bits of ``lrec`` are the continuation flag
(0 whole record, 1 first, 2 middle, 3 last part) and the lower 29 bits the part's length.
dmlc-core's writer splits a record wherever the magic word sits at a 4-byte aligned position
of the data, dropping it there; readers put it back between the parts. Little-endian.

The payload of an insightface record is an IRHeader (uint32 flag, float32 label, uint64 id,
uint64 id2: 24 bytes), then ``flag`` float32 labels when flag > 0, then the encoded image.

A record is read in time linear in its size, and at most :data:`MAX_PARTS` parts and
:data:`~faceforge.data.image_io.MAX_RECORD_BYTES` bytes of it, whatever its length words say.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from faceforge.data.image_io import MAX_RECORD_BYTES
from faceforge.errors import FormatError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
PART_HEAD = struct.Struct("<II")
IR_HEADER = struct.Struct("<IfQQ")
LENGTH_MASK = (1 << 29) - 1
#: continuation flags: a whole record, or the first / a middle / the last part of one
WHOLE, FIRST, MIDDLE, LAST = range(4)
#: the most read at once for a record before its length words are seen
FIRST_READ = 1 << 22
#: the most parts a record may have: the writer splits a payload at each 4-byte aligned
#: magic word, which random (compressed image) data holds once in 16 GiB
MAX_PARTS = 1 << 16
MAX_CLASS = 1 << 31
#: ``read(size, offset)``: up to ``size`` bytes of the ``.rec`` at ``offset``
Read = Callable[[int, int], bytes]


class IRHeader(NamedTuple):
    """insightface's (and ``mx.recordio``'s) per-record header."""

    flag: int
    label: float
    id: int
    id2: int


def _part(flag: int, data: bytes) -> bytes:
    padding = b"\0" * (-len(data) % 4)
    return PART_HEAD.pack(MAGIC, (flag << 29) | len(data)) + data + padding


def frame(payload: bytes) -> bytes:
    """``payload`` as it is written to a ``.rec``: parts split at aligned magic words."""
    if len(payload) > LENGTH_MASK:
        raise FormatError(f"a RecordIO record holds < 2**29 bytes, got {len(payload)}")
    parts, start, pos = [], 0, payload.find(MAGIC_BYTES)
    while pos >= 0:
        if pos % 4 == 0:
            parts.append(_part(FIRST if not parts else MIDDLE, payload[start:pos]))
            start = pos + 4
        pos = payload.find(MAGIC_BYTES, pos + 1)
    parts.append(_part(LAST if parts else WHOLE, payload[start:]))
    return b"".join(parts)


def pack_payload(key: int, label: float | np.ndarray, image: bytes) -> bytes:
    """IRHeader + image, as ``mx.recordio.pack``: a scalar label goes in the header (flag
    0); an array of labels follows it (flag = their count)."""
    if np.ndim(label) == 0:
        return IR_HEADER.pack(0, float(label), key, 0) + image
    labels = np.asarray(label, dtype="<f4").ravel()
    return IR_HEADER.pack(labels.size, 0.0, key, 0) + labels.tobytes() + image


def unpack_payload(payload: bytes, where: str) -> tuple[IRHeader, np.ndarray, memoryview]:
    """The header, its float32 label array (empty when flag is 0) and the image bytes."""
    if len(payload) < IR_HEADER.size:
        raise FormatError(
            f"{where}: payload of {len(payload)} bytes is shorter than the 24-byte IRHeader"
        )
    header = IRHeader(*IR_HEADER.unpack_from(payload))
    end = IR_HEADER.size + 4 * header.flag
    if end > len(payload):
        raise FormatError(
            f"{where}: IRHeader announces {header.flag} labels, more than the "
            f"{len(payload)}-byte payload holds"
        )
    labels = np.frombuffer(payload, "<f4", header.flag, IR_HEADER.size)
    return header, labels, memoryview(payload)[end:]


def class_of(header: IRHeader, labels: np.ndarray, where: str) -> int:
    """The class id of an image record: the header's label, or its first label array entry
    (as insightface reads it); it must be a whole number in [0, 2**31)."""
    value = float(labels[0]) if header.flag else header.label
    if not (0 <= value < MAX_CLASS and value == int(value)):
        raise FormatError(
            f"{where}: label {value!r} is not a class id (a whole number in [0, 2**31))"
        )
    return int(value)


def read_record(read: Read, offset: int, span: int, file_size: int, where: str) -> bytes:
    """The payload of the record at ``offset`` of a ``.rec`` of ``file_size`` bytes (parts
    joined again), read through ``read``.

    ``span`` is how many bytes the record probably takes (up to the next record): that much
    (at most :data:`FIRST_READ`) is read at once, more only for a record that runs longer,
    at least doubling what is held each time, so the work is linear in the record's size.
    Nothing beyond the file is requested, whatever a length word says; FormatError when the
    record has more than :data:`MAX_PARTS` parts or :data:`MAX_RECORD_BYTES` bytes.
    """
    buf = read(max(0, min(span, FIRST_READ, file_size - offset)), offset)
    parts: list[tuple[int, int]] = []  # (start in buf, length) of each part's data
    pos = size = 0
    while True:
        buf = _extend(read, buf, offset, pos, PART_HEAD.size, file_size, where)
        magic, lrec = PART_HEAD.unpack_from(buf, pos)
        part = f" (part at byte {offset + pos})" if pos else ""
        if magic != MAGIC:
            raise FormatError(
                f"{where}: bad magic 0x{magic:08x}{part}, expected 0x{MAGIC:08x} (not a "
                "RecordIO file, or a wrong .idx offset)"
            )
        flag, length = lrec >> 29, lrec & LENGTH_MASK
        if flag not in ((WHOLE, FIRST) if not parts else (MIDDLE, LAST)):
            raise FormatError(f"{where}: continuation flag {flag} out of sequence{part}")
        _check_inside(offset, pos, PART_HEAD.size + length, file_size, where)
        size += length + (len(MAGIC_BYTES) if parts else 0)
        if len(parts) == MAX_PARTS:
            raise FormatError(
                f"{where}: record split into more than {MAX_PARTS} parts{part} (damaged "
                "continuation flags, or not an image dataset)"
            )
        if size > MAX_RECORD_BYTES:
            raise FormatError(
                f"{where}: record longer than {MAX_RECORD_BYTES} bytes{part} (a damaged length "
                "word, or not an image dataset)"
            )
        buf = _extend(read, buf, offset, pos, PART_HEAD.size + length, file_size, where)
        parts.append((pos + PART_HEAD.size, length))
        if flag in (WHOLE, LAST):
            view = memoryview(buf)
            return MAGIC_BYTES.join([view[start : start + n] for start, n in parts])
        pos += PART_HEAD.size + length + (-length % 4)


def _extend(
    read: Read, buf: bytes, offset: int, pos: int, size: int, file_size: int, where: str
) -> bytes:
    """``buf`` (the file from ``offset``) long enough to hold ``size`` bytes at ``pos``,
    grown to at least twice its length (up to the file's end) when it is not; FormatError
    when the file ends first."""
    need = pos + size
    if need <= len(buf):
        return buf
    _check_inside(offset, pos, size, file_size, where)
    grown = min(max(need, 2 * len(buf)), file_size - offset)
    buf += read(grown - len(buf), offset + len(buf))
    if need > len(buf):  # the file shrank since it was measured
        _check_inside(offset, pos, size, offset + len(buf), where)
    return buf


def _check_inside(offset: int, pos: int, size: int, file_size: int, where: str) -> None:
    """FormatError unless ``size`` bytes at ``offset + pos`` lie inside the file."""
    if offset + pos + size > file_size:
        raise FormatError(
            f"{where}: truncated or bad length: {size} bytes at byte {offset + pos} run past "
            f"the end of the file ({file_size} bytes)"
        )
