"""Decode the images of a verification set in parallel and bring them to the model's size.

Benchmark images are normally pre-aligned at 112x112; anything else must be fitted by an
explicit ``resize`` mode so a wrong input size never goes unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from faceforge.data.image_io import decode_image, read_image
from faceforge.errors import DataError

#: how an image of another size is fitted: keep aspect and pad, distort, or keep aspect and crop
RESIZE_MODES: tuple[str, ...] = ("letterbox", "stretch", "center-crop")


def _scaled(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def fit_image(
    image: np.ndarray, size: tuple[int, int], resize: str | None, name: str
) -> np.ndarray:
    """Return ``image`` (HxWx3 uint8) at ``size`` (height, width).

    ``resize=None`` requires the image to have that size already (DataError otherwise);
    ``"letterbox"`` scales to fit and pads with black, ``"stretch"`` scales each axis
    independently, ``"center-crop"`` scales to cover and crops the centre.
    """
    height, width = size
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if resize is None:
        raise DataError(
            f"{name}: image is {w}x{h} but the model expects {width}x{height}; align the faces "
            f"first or choose a resize mode ({', '.join(RESIZE_MODES)})"
        )
    if resize == "stretch":
        return _scaled(image, width, height)
    if resize == "letterbox":
        scale = min(width / w, height / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        out = np.zeros((height, width, 3), np.uint8)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        out[top : top + new_h, left : left + new_w] = _scaled(image, new_w, new_h)
        return out
    if resize == "center-crop":
        scale = max(width / w, height / h)
        new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
        scaled = _scaled(image, new_w, new_h)
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])
    raise DataError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")


def load_images(
    sources: Sequence[bytes | np.ndarray | str | Path],
    names: Sequence[str],
    size: tuple[int, int] = (112, 112),
    resize: str | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Decode encoded images (bytes) or image files (paths) into uint8 (N, H, W, 3) RGB.

    Decoding runs in a thread pool (OpenCV releases the GIL while decoding). Errors name the
    offending entry through ``names``.
    """
    if resize is not None and resize not in RESIZE_MODES:
        raise DataError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    out = np.empty((len(sources), size[0], size[1], 3), np.uint8)

    def load(i: int) -> None:
        source = sources[i]
        if isinstance(source, (str, Path)):
            image = read_image(source)
        else:
            image = decode_image(source, names[i])
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
