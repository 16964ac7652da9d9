"""IJB-B / IJB-C image features as insightface computes them, for any model.

Each loose crop is aligned from its meta landmarks to the model's own template and input
size (:mod:`faceforge.data.alignment`), embedded with its mirror image, and the two raw
views are summed; :mod:`faceforge.evaluation.ijb` pools the features into templates. The
next batches of crops are read and aligned while the current one is embedded (by several
threads beside an accelerator).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.core.embedder import Embedder
from faceforge.data.alignment import norm_crop
from faceforge.data.image_io import MAX_PHOTO_PIXELS, read_image
from faceforge.data.prefetch import ahead
from faceforge.evaluation.ijb_layout import IjbMeta
from faceforge.evaluation.run import decoding_threads, embed_batches


def aligned_crops(
    folder: Path,
    names: Sequence[str],
    landmarks: np.ndarray,
    size: tuple[int, int],
    template: str,
    max_pixels: int = MAX_PHOTO_PIXELS,
) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB crops of ``folder/<name>`` aligned from their (N, 5, 2)
    landmarks; a missing or unreadable image, or one declaring more than ``max_pixels``, is
    a DataError naming it."""
    crops = [
        norm_crop(read_image(folder / name, max_pixels), points, size, template)
        for name, points in zip(names, landmarks, strict=True)
    ]
    return np.ascontiguousarray(np.stack(crops))


def ijb_features(
    embedder: Embedder,
    root: str | Path,
    meta: IjbMeta,
    *,
    progress: bool = False,
    max_pixels: int = MAX_PHOTO_PIXELS,
) -> np.ndarray:
    """Original + mirrored raw embeddings of every IJB image under ``root/loose_crop``
    (``embedder.batch_size`` at a time), each image decoded within ``max_pixels``."""
    folder, step = Path(root) / "loose_crop", embedder.batch_size
    template = embedder.preprocess.template
    jobs = (
        functools.partial(
            aligned_crops,
            folder,
            meta.images[start : start + step],
            meta.landmarks[start : start + step],
            embedder.input_size,
            template,
            max_pixels,
        )
        for start in range(0, len(meta.images), step)
    )
    batches = ahead(jobs, decoding_threads(embedder))
    plain, mirrored = embed_batches(
        embedder, batches, flip=True, total=len(meta.images), progress=progress, desc="IJB"
    )
    return plain + mirrored
