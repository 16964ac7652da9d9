"""Decoding images into uint8 RGB arrays with errors that name the offending file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceforge.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def to_rgb_uint8(image: np.ndarray, name: str) -> np.ndarray:
    """Convert what OpenCV decoded (gray, BGR, BGRA; 8 or 16 bit) to HxWx3 uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"{name}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{name}: unsupported channel count {channels}")


def decode_image(data: bytes | np.ndarray, name: str) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to HxWx3 uint8 RGB.

    EXIF orientation is applied (OpenCV does this for ``IMREAD_COLOR``-style reads); alpha is
    dropped; 16-bit images are scaled to 8 bit. ``name`` is used in error messages.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise DataError(f"{name}: empty image data")
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        raise DataError(f"{name}: cannot decode image ({exc.err})") from None
    if image is None:
        raise DataError(f"{name}: not a readable image (corrupt or unsupported format)")
    return to_rgb_uint8(image, name)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; the error names the file when it cannot."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


def encode_image(image_rgb: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """Encode HxWx3 uint8 RGB to bytes (JPEG by default), the inverse of decode_image."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"cannot encode image as {ext}")
    return buf.tobytes()
