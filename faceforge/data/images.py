"""Decode the images of a verification set in parallel and bring them to the model's size.

Benchmark images are normally pre-aligned at 112x112; anything else must be fitted by an
explicit ``resize`` mode (a :data:`RESIZE_MODES` name) so a wrong input size never goes
unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS, decode_image, read_image
from faceforge.errors import DataError
from faceforge.registry import Registry


def _scaled(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def stretch(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale each axis independently (distorts the aspect ratio)."""
    return _scaled(image, width, height)


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to fit inside, keeping the aspect ratio, and pad the borders with black."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = _scaled(image, new_w, new_h)
    return out


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover, keeping the aspect ratio, and cut out the centre."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    scaled = _scaled(image, new_w, new_h)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


#: resize mode -> function fitting an HxWx3 uint8 image to (height, width)
RESIZE_MODES: Registry[np.ndarray] = Registry.of(
    "resize mode", {"letterbox": letterbox, "stretch": stretch, "center-crop": center_crop}
)


def fit_image(
    image: np.ndarray, size: tuple[int, int], resize: str | None, name: str
) -> np.ndarray:
    """Return ``image`` (HxWx3 uint8) at ``size`` (height, width) by the :data:`RESIZE_MODES`
    function ``resize``.

    ``resize=None`` requires the image to have that size already (DataError naming ``name``
    otherwise); an unknown mode raises :class:`~faceforge.errors.UnknownChoiceError`.
    """
    fit = RESIZE_MODES.get(resize) if resize is not None else None
    height, width = size
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if fit is None:
        raise DataError(
            f"{name}: image is {w}x{h} but the model expects {width}x{height}; align the faces "
            f"first (faceforge align) or choose a resize mode ({', '.join(RESIZE_MODES.names())})"
        )
    return fit(image, height, width)


def load_images(
    sources: Sequence[bytes | np.ndarray | str | Path],
    names: Sequence[str],
    size: tuple[int, int] = (112, 112),
    resize: str | None = None,
    workers: int | None = None,
    max_pixels: int = MAX_DATASET_PIXELS,
) -> np.ndarray:
    """Decode encoded images (bytes) or image files (paths) into uint8 (N, H, W, 3) RGB.

    ``resize`` is a :data:`RESIZE_MODES` name or ``None`` (see :func:`fit_image`). Images
    declaring more than ``max_pixels`` are refused before decoding. Decoding runs in a thread
    pool (OpenCV releases the GIL while decoding). Errors name the offending entry through
    ``names``.
    """
    if resize is not None:
        RESIZE_MODES.get(resize)  # an unknown mode fails before anything is decoded
    out = np.empty((len(sources), size[0], size[1], 3), np.uint8)

    def load(i: int) -> None:
        source = sources[i]
        if isinstance(source, (str, Path)):
            image = read_image(source, max_pixels)
        else:
            image = decode_image(source, names[i], max_pixels)
        out[i] = fit_image(image, size, resize, names[i])

    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(sources) < 64:
        for i in range(len(sources)):
            load(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(load, range(len(sources))):
                pass
    return out
