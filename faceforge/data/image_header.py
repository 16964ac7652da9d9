"""The format and pixel size an encoded image declares, read from its header without decoding.

A few hundred bytes can declare a 30000x30000 image whose decoding takes gigabytes (a
decompression bomb), so :func:`faceforge.data.image_io.decode_image` checks the declared size
against a budget first. Each parser reads what the decoder OpenCV hands the bytes to reads:

========= =========================================================== ======================
format    size from                                                   decoder
========= =========================================================== ======================
JPEG      the first frame header (SOF0..SOF15), markers walked as      libjpeg-turbo
          libjpeg does (garbage and fill bytes before a marker skipped)
PNG       IHDR, which must be the first chunk                          libpng
WebP      the VP8X canvas, else the VP8 / VP8L frame header            libwebp
BMP       the info header (12-byte OS/2 or >= 36-byte Windows)         OpenCV
TIFF      the first directory's ImageWidth / ImageLength, or TileWidth libtiff
          / TileLength where larger (a tile is allocated whole); the first
          entry of a repeated tag wins, as in libtiff; BigTIFF refused
PNM       the ASCII header of P1..P6 (``#`` comments allowed)          OpenCV
========= =========================================================== ======================

Everything else OpenCV could decode (GIF, AVIF, JPEG 2000, PAM, PFM, HDR, Sun raster, EXR)
is refused: an image whose size is not checked is not decoded. A progressive JPEG with more
than :data:`MAX_JPEG_SCANS` scans is refused too (each scan is a pass over the whole
image, a CPU bomb within any pixel budget).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from faceforge.errors import DataError

#: libjpeg's start-of-frame markers (0xC4 DHT, 0xC8 JPG and 0xCC DAC are not frames)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: markers without a length field: TEM and RST0..7
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
#: progressive frames: each scan refines the whole image
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOS, _EOI = 0xDA, 0xD9
#: segments walked before the frame header: EXIF, ICC and XMP (extended XMP too, in
#: 64 KB segments) take a few dozen in real photos
MAX_JPEG_SEGMENTS = 4096
#: scans in one progressive JPEG (photos have about 10; libjpeg-turbo suggests limiting them
#: to a few hundred when decoding untrusted files)
MAX_JPEG_SCANS = 500
#: how far into a PNM the header may reach (comments included)
_PNM_HEADER = 1 << 16
_PNM_MAGIC = re.compile(rb"P[1-6]\s")
#: OpenCV's ReadNumber: whitespace and ``#`` comments before a number, which ends at (and
#: swallows) the first non-digit; more than 12 digits is no image size
_PNM_GAP = rb"(?:\s|#[^\r\n]*[\r\n])*"
_PNM_NUMBER = rb"(\d{1,12})(?!\d)"
_PNM = re.compile(rb"P[1-6]" + _PNM_GAP + _PNM_NUMBER + rb"(?s:.)" + _PNM_GAP + _PNM_NUMBER)
_TIFF_INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i"}
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
_TIFF_TILE = _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323


class _Truncated(Exception):
    """The header ends before the size is read (reported by :func:`declared_size`)."""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise _Truncated
    return struct.unpack_from(fmt, data, offset)


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """``(marker, position after it)`` of the next JPEG marker from ``pos``, skipping what
    libjpeg's ``next_marker`` skips: non-0xFF bytes, fill 0xFF bytes and stuffed 0xFF00."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            raise _Truncated
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            raise _Truncated
        if data[pos] != 0:
            return data[pos], pos + 1


def _jpeg(data: bytes) -> tuple[int, int]:
    pos = 2  # after SOI
    for _ in range(MAX_JPEG_SEGMENTS):
        marker, pos = _next_marker(data, pos)
        if marker in _SOF:
            height, width = _unpack(">HH", data, pos + 3)  # after length and precision
            if marker in _PROGRESSIVE and data.count(b"\xff\xda", pos) > MAX_JPEG_SCANS:
                raise DataError(f"progressive JPEG with more than {MAX_JPEG_SCANS} scans")
            return width, height
        if marker in (_SOS, _EOI):
            raise DataError("JPEG without a frame header before its first scan")
        if marker not in _STANDALONE:
            (length,) = _unpack(">H", data, pos)
            if length < 2:
                raise DataError(f"JPEG segment 0x{marker:02x} with length {length}")
            pos += length
    raise DataError(f"JPEG without a frame header in its first {MAX_JPEG_SEGMENTS} segments")


def _png(data: bytes) -> tuple[int, int]:
    if _unpack("4s", data, 12)[0] != b"IHDR":
        raise DataError("PNG whose first chunk is not IHDR")
    width, height = _unpack(">II", data, 16)
    return width, height


def _webp(data: bytes) -> tuple[int, int]:
    (chunk,) = _unpack("4s", data, 12)
    if chunk == b"VP8X":  # the canvas, which every frame must fit in
        low_w, high_w, low_h, high_h = _unpack("<HBHB", data, 24)
        return (low_w | high_w << 16) + 1, (low_h | high_h << 16) + 1
    if chunk == b"VP8L":
        (bits,) = _unpack("<I", data, 21)  # after the 0x2f signature byte
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = _unpack("<HH", data, 26)  # after the frame tag and start code
        return width & 0x3FFF, height & 0x3FFF
    raise DataError(f"WebP with an unknown first chunk {chunk!r}")


def _bmp(data: bytes) -> tuple[int, int]:
    (header,) = _unpack("<I", data, 14)
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height = _unpack("<HH", data, 18)
    elif header >= 36:
        width, height = _unpack("<ii", data, 18)  # negative height: stored top-down
    else:
        raise DataError(f"BMP with a {header}-byte info header")
    return abs(width), abs(height)


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (version, first) = _unpack(order + "HI", data, 2)
    if version != 42:
        raise DataError("BigTIFF (only classic TIFF is read)")
    (count,) = _unpack(order + "H", data, first)
    found: dict[int, int] = {}
    for entry in range(first + 2, first + 2 + 12 * count, 12):
        tag, kind, values = _unpack(order + "HHI", data, entry)
        if tag not in (_TIFF_WIDTH, _TIFF_LENGTH, *_TIFF_TILE) or tag in found:
            continue  # libtiff ignores every repeat of a tag
        if kind not in _TIFF_INTEGER_TYPES or values != 1:
            raise DataError(f"TIFF with a malformed image size tag {tag}")
        (found[tag],) = _unpack(order + _TIFF_INTEGER_TYPES[kind], data, entry + 8)
    if _TIFF_WIDTH not in found or _TIFF_LENGTH not in found:
        raise DataError("TIFF without an image width and length")
    # decoding allocates a whole tile: a 16x16 image in 16000x16000 tiles costs 1 GB
    width = max(abs(found[_TIFF_WIDTH]), abs(found.get(_TIFF_TILE_WIDTH, 0)))
    return width, max(abs(found[_TIFF_LENGTH]), abs(found.get(_TIFF_TILE_LENGTH, 0)))


def _pnm(data: bytes) -> tuple[int, int]:
    match = _PNM.match(data, 0, _PNM_HEADER)
    if match is None:
        raise DataError("PNM without a readable width and height")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class ImageFormat:
    """An encoded image format faceforge decodes: its name, usual file extension, how its
    bytes start and how its header gives ``(width, height)``."""

    name: str
    extension: str
    matches: Callable[[bytes], bool]
    size: Callable[[bytes], tuple[int, int]]


def _starts(*leads: bytes) -> Callable[[bytes], bool]:
    return lambda data: data.startswith(leads)


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


#: the formats whose size is checked before decoding, so the formats faceforge decodes
FORMATS = (
    ImageFormat("JPEG", ".jpg", _starts(b"\xff\xd8\xff"), _jpeg),
    ImageFormat("PNG", ".png", _starts(b"\x89PNG\r\n\x1a\n"), _png),
    ImageFormat("WebP", ".webp", _is_webp, _webp),
    ImageFormat("BMP", ".bmp", _starts(b"BM"), _bmp),
    ImageFormat("TIFF", ".tif", _starts(b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), _tiff),
    ImageFormat("PNM", ".ppm", lambda data: _PNM_MAGIC.match(data) is not None, _pnm),
)
#: leading bytes of image formats OpenCV decodes but faceforge refuses (their size is not read)
_REFUSED = (
    (b"GIF8", "GIF"),
    (b"\0\0\0\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"P7", "PAM"),
    (b"PF", "PFM"),
    (b"Pf", "PFM"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"v/1\x01", "OpenEXR"),
)
_NAMES = ", ".join(f.name for f in FORMATS)


def image_format(data: bytes, name: str) -> ImageFormat:
    """The :data:`FORMATS` entry ``data`` starts like; DataError naming ``name`` for any
    other data, saying so when it is an image format faceforge does not decode."""
    for candidate in FORMATS:
        if candidate.matches(data):
            return candidate
    refused = next((kind for lead, kind in _REFUSED if data.startswith(lead)), None)
    if refused is None and data[4:8] == b"ftyp":
        refused = "ISO media (AVIF / HEIF)"
    if refused:
        raise DataError(
            f"{name}: {refused} images are not read (faceforge checks the size of {_NAMES} "
            "images before decoding them); convert it to one of those"
        )
    start = bytes(data[:8])
    raise DataError(f"{name}: not a readable image (not {_NAMES}; starts with {start!r})")


def declared_size(data: bytes, name: str) -> tuple[int, int]:
    """``(width, height)`` that the header of encoded image ``data`` declares, read without
    decoding; DataError naming ``name`` when the format is not one of :data:`FORMATS` or
    the header is malformed or cut short."""
    kind = image_format(data, name)
    try:
        return kind.size(data)
    except _Truncated:
        raise DataError(
            f"{name}: not a readable image (its {kind.name} header is cut short)"
        ) from None
    except DataError as exc:
        raise DataError(f"{name}: not a readable image ({exc})") from None
