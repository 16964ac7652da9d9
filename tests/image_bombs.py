"""Decompression bombs for the tests: small, valid encoded images whose headers declare
30000x30000 pixels (2.7 GB once decoded to RGB), written from the formats' specifications.

Both decode completely with OpenCV (the JPEG's missing scan data is filled in by libjpeg),
so a decoder that trusts the header really allocates and writes those gigabytes.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

WIDTH = HEIGHT = 30000
#: how a refusal names the size
DECLARED = f"{WIDTH}x{HEIGHT}"


def jpeg_bomb(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """An 8x8 baseline JPEG (631 bytes) whose frame header (SOF0) says ``width x height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)  # after length and precision
    return bytes(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zeros_stream(row: bytes, rows: int, block: int = 1000) -> bytes:
    """The zlib stream of ``rows`` copies of ``row``, built from one compressed block of
    ``block`` rows repeated (each ends in a full flush, so the copies are byte-identical)."""
    data = row * block
    compressor = zlib.compressobj(9)
    first = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)  # has the header
    again = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(rows // block):
        checksum = zlib.adler32(data, checksum)
    final = b"\x03\x00"  # an empty final block with fixed codes
    return first + again * (rows // block - 1) + final + struct.pack(">I", checksum)


def png_bomb(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A 1-bit grayscale PNG (110 KB) of ``width x height`` black pixels; ``height`` must be
    a multiple of 1000."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", _zeros_stream(row, height))
        + _chunk(b"IEND", b"")
    )


def forbid_decoding(monkeypatch: pytest.MonkeyPatch, *bombs: bytes) -> None:
    """Make ``cv2.imdecode`` fail the test when it is handed one of ``bombs`` (decoding one
    would take gigabytes and seconds); other images decode as usual."""
    decode = cv2.imdecode

    def guarded(buffer: np.ndarray, flags: int) -> np.ndarray | None:
        if np.asarray(buffer).tobytes() in bombs:
            pytest.fail("a decompression bomb reached the decoder")
        return decode(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", guarded)
