"""Finding image files and decoding them into uint8 RGB arrays, with errors that name the
offending file or folder.

Every decode first reads the pixel size the image declares (:mod:`.image_header`) and refuses
one over a budget, so a small crafted file cannot make the decoder allocate gigabytes. Photos
get :data:`MAX_PHOTO_PIXELS`, dataset images :data:`MAX_DATASET_PIXELS`; both are overridable
(``--max-pixels``, ``data.max_pixels``). Decoding takes a small multiple of 3 bytes per pixel
(16-bit and progressive images hold a second buffer), so memory is bounded by the budget.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from faceforge.data.image_header import declared_size
from faceforge.data.limits import MAX_DATASET_PIXELS as MAX_DATASET_PIXELS  # re-exported
from faceforge.data.limits import MAX_PHOTO_PIXELS
from faceforge.errors import DataError
from faceforge.files import set_aside_note

#: the most bytes one stored dataset image (a RecordIO record, an LMDB value) may take: 20x
#: an uncompressed image of MAX_DATASET_PIXELS, and far below the gigabytes a damaged length
#: field can claim
MAX_RECORD_BYTES = 64 << 20
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def list_images(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Image files (by extension, see :data:`IMAGE_EXTENSIONS`, any case) in ``folder``, and
    in its sub-folders too when ``recursive`` (symlinked ones included: a subset of a dataset
    is often a folder of links); sorted, so every caller sees the same order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder does not exist")
    candidates = walk_files(folder) if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file below ``folder``, following symlinked folders but entering each real folder
    once (a link to a parent folder cannot loop)."""
    seen: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(top)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((stat.st_dev, stat.st_ino))
        yield from (Path(top) / name for name in files)


def identity_folders(root: str | Path) -> list[tuple[str, list[Path]]]:
    """``(name, image files)`` of every sub-folder of a ``root/<identity>/<image>`` dataset,
    sorted by name; folders without images are listed too (with no files), so that label
    numbers follow the folder names."""
    root = Path(root)
    if root.is_file():
        raise DataError(
            f"{root}: a file, not an image folder of <identity>/<image> files; a dataset in one "
            "file is a RecordIO .rec, an .lmdb or a .txt/.lst list of 'path label' lines"
        )
    if not root.is_dir():
        raise DataError(
            f"image folder {str(root)!r} does not exist; expected {root}/<identity>/<image> "
            f"files{set_aside_note(root)}"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    return [(folder.name, list_images(folder)) for folder in folders]


def check_pixels(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` that encoded image ``data`` declares, after checking that it is a
    format faceforge decodes (:data:`~faceforge.data.image_header.FORMATS`) of at most
    ``max_pixels`` pixels; DataError naming ``name`` otherwise."""
    width, height = declared_size(data, name)
    if width * height > max_pixels:
        raise DataError(
            f"{name}: the image declares {width}x{height} = {width * height:,} pixels, more "
            f"than the {max_pixels:,} allowed; refused before decoding (raise --max-pixels or "
            "data.max_pixels if it is genuine)"
        )
    return width, height


def decode_image(
    data: bytes | np.ndarray, name: str, max_pixels: int = MAX_PHOTO_PIXELS
) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to HxWx3 uint8 RGB.

    The size in the header is checked against ``max_pixels`` first (see
    :func:`check_pixels`). EXIF orientation is applied; gray is expanded, alpha dropped and
    16-bit images scaled to 8 bit by OpenCV itself, which decodes straight to RGB (no second
    pass over the pixels: decoding is most of a training sample's cost). ``name`` is used in
    error messages.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise DataError(f"{name}: empty image data")
    check_pixels(data if isinstance(data, bytes) else buffer.tobytes(), name, max_pixels)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
    except cv2.error as exc:
        raise DataError(f"{name}: cannot decode image ({exc.err})") from None
    if image is None:
        raise DataError(f"{name}: not a readable image (corrupt or unsupported format)")
    return image


def read_image(path: str | Path, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (at most ``max_pixels``, see
    :func:`decode_image`); the error names the file when it cannot."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, str(path), max_pixels)


def encode_image(image_rgb: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """Encode HxWx3 uint8 RGB to bytes (JPEG by default), the inverse of decode_image."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"cannot encode image as {ext}")
    return buf.tobytes()
