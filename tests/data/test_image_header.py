"""The size an image declares, read from its header: equal to what OpenCV decodes for every
format and encoder setting, for hand-made headers the encoders do not write (OS/2 and
top-down BMP, big-endian TIFF, repeated TIFF tags, PNM comments, JPEG garbage and fill
bytes), and a one-line refusal for other formats and damaged headers."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from faceforge.data.image_header import (
    FORMATS,
    MAX_JPEG_SCANS,
    MAX_JPEG_SEGMENTS,
    declared_size,
    image_format,
)
from faceforge.data.image_io import MAX_DATASET_PIXELS, check_pixels
from faceforge.errors import DataError

ENCODINGS = {
    "jpeg": (".jpg", [], 3),
    "progressive jpeg": (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], 3),
    "png": (".png", [], 3),
    "png rgba": (".png", [], 4),
    "webp lossy (VP8)": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], 3),
    "webp lossless (VP8L)": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], 3),
    "webp with alpha (VP8X)": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], 4),
    "bmp": (".bmp", [], 3),
    "tiff": (".tif", [], 3),
    "ppm": (".ppm", [], 3),
    "ascii ppm": (".ppm", [cv2.IMWRITE_PXM_BINARY, 0], 3),
    "pgm": (".pgm", [], 1),
    "pbm": (".pbm", [], 1),
}


def opencv_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the image OpenCV decodes: the reference."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "OpenCV cannot decode the test image"
    return image.shape[1], image.shape[0]


@pytest.mark.parametrize("name", list(ENCODINGS))
@pytest.mark.parametrize("size", [(53, 37), (1, 1), (17, 300)])
def test_declared_size_is_what_opencv_decodes(name: str, size: tuple[int, int]) -> None:
    ext, params, channels = ENCODINGS[name]
    width, height = size
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, channels), np.uint8)
    data = cv2.imencode(ext, pixels[:, :, 0] if channels == 1 else pixels, params)[1].tobytes()
    assert declared_size(data, "x") == opencv_size(data) == size


def test_every_format_names_an_extension_opencv_writes() -> None:
    pixels = np.zeros((4, 6, 3), np.uint8)
    for kind in FORMATS:
        data = cv2.imencode(kind.extension, pixels)[1].tobytes()
        assert image_format(data, "x") is kind


# --- headers the encoders do not write ---------------------------------------------------


def test_os2_and_top_down_bmp() -> None:
    windows = bytearray(cv2.imencode(".bmp", np.zeros((5, 7, 3), np.uint8))[1].tobytes())
    struct.pack_into("<i", windows, 22, -5)  # negative height: rows stored top-down
    assert declared_size(bytes(windows), "x") == opencv_size(bytes(windows)) == (7, 5)
    pixels = bytes(4 * 3 * 2)  # 3x2, 24-bit rows padded to 12 bytes
    os2 = b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26)
    os2 += struct.pack("<IHHHH", 12, 3, 2, 1, 24) + pixels
    assert declared_size(os2, "x") == opencv_size(os2) == (3, 2)


def _tiff(order: str, entries: list[tuple[int, int, int]], pixels: bytes) -> bytes:
    """A one-strip gray TIFF: ``(tag, type, value)`` entries (3 SHORT, 4 LONG) in that order."""
    magic = b"II*\0" if order == "<" else b"MM\0*"
    strip = 8 + 2 + 12 * (len(entries) + 5) + 4
    entries = [*entries, (258, 3, 8), (262, 3, 1), (273, 4, strip), (277, 3, 1)]
    entries.append((279, 4, len(pixels)))
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack(order + ("H2x" if kind == 3 else "I"), value)
        ifd += struct.pack(order + "HHI", tag, kind, 1) + packed
    return magic + struct.pack(order + "I", 8) + ifd + b"\0\0\0\0" + pixels


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_hand_made_tiff_and_a_repeated_tag(order: str) -> None:
    plain = _tiff(order, [(256, 3, 5), (257, 4, 3)], bytes(15))
    assert declared_size(plain, "x") == opencv_size(plain) == (5, 3)
    repeated = _tiff(order, [(256, 3, 5), (256, 4, 40000), (257, 4, 3)], bytes(15))
    assert declared_size(repeated, "x") == opencv_size(repeated) == (5, 3)  # the first counts


def test_a_tiff_tile_larger_than_its_image_counts_against_the_budget() -> None:
    """libtiff allocates a whole tile: a 16x16 image declaring 16000x16000 tiles made
    decoding take about 1 GB from a 747 KB file."""
    bomb = _tiff("<", [(256, 3, 16), (257, 3, 16), (322, 4, 16000), (323, 4, 16000)], bytes(8))
    assert declared_size(bomb, "x") == (16000, 16000)
    with pytest.raises(DataError, match="16000x16000"):
        check_pixels(bomb, "x", MAX_DATASET_PIXELS)


def test_pnm_comments_and_separators() -> None:
    data = b"P5\n# written by hand\n 3 # a width\n\t2\n255\n" + bytes(6)
    assert declared_size(data, "x") == opencv_size(data) == (3, 2)
    with pytest.raises(DataError, match="PNM without a readable width and height"):
        declared_size(b"P6 12345", "x")  # one number only: not split into two
    with pytest.raises(DataError, match="PNM without"):
        declared_size(b"P6 1234567890123 1\n255\n", "x")


def test_jpeg_garbage_and_fill_bytes_before_a_marker_are_skipped_like_libjpeg() -> None:
    data = cv2.imencode(".jpg", np.zeros((9, 14, 3), np.uint8))[1].tobytes()
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    damaged = data[:app0_end] + b"\x00garbage\xff\x00" + b"\xff\xff" + data[app0_end:]
    assert declared_size(damaged, "x") == opencv_size(damaged) == (14, 9)


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a\x01\x00\x01\x00", "GIF images are not read"),
        (b"\0\0\0\x1cftypavif\0\0\0\0", r"ISO media \(AVIF / HEIF\) images are not read"),
        (b"\0\0\0\x0cjP  \r\n\x87\n", "JPEG 2000 images are not read"),
        (b"P7\nWIDTH 3\n", "PAM images are not read"),
        (b"II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0", r"not a readable image \(BigTIFF"),
        (b"\0" * 40, r"not a readable image \(not JPEG, PNG, WebP, BMP, TIFF, PNM; starts"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0", "its PNG header is cut short"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIDAT" + bytes(8), "PNG whose first chunk is not IHDR"),
        (b"RIFF\0\0\0\0WEBPVP8Z" + bytes(20), "WebP with an unknown first chunk"),
        (b"BM" + bytes(12) + struct.pack("<I", 20) + bytes(8), "BMP with a 20-byte info"),
        (b"\xff\xd8\xff\xda\0\x02", "JPEG without a frame header before its first scan"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "its JPEG header is cut short"),
    ],
)
def test_what_is_refused_and_how(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=rf"^photo.x: .*{message}") as error:
        declared_size(data, "photo.x")
    assert "\n" not in str(error.value)


def test_jpeg_walks_are_bounded() -> None:
    data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    comments = b"\xff\xfe\x00\x02" * MAX_JPEG_SEGMENTS  # empty COM segments before the frame
    with pytest.raises(DataError, match=f"first {MAX_JPEG_SEGMENTS} segments"):
        declared_size(data[:2] + comments + data[2:], "x")
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    progressive = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8), flags)[1].tobytes()
    scans = progressive.count(b"\xff\xda")
    more = progressive[:-2] + b"\xff\xda" * (MAX_JPEG_SCANS - scans + 1) + progressive[-2:]
    with pytest.raises(DataError, match=f"progressive JPEG with more than {MAX_JPEG_SCANS} scans"):
        declared_size(more, "x")
    declared_size(more[:-4] + more[-2:], "x")  # MAX_JPEG_SCANS scans are fine
    baseline = data[:-2] + b"\xff\xda" * MAX_JPEG_SCANS + data[-2:]
    assert declared_size(baseline, "x") == (8, 8)  # sequential scans are not counted
