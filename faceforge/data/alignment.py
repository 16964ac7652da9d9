"""Face alignment: a 5-point similarity transform to the ArcFace template, as pure functions.

It sits in ``data`` so that every layer above shares one implementation: the embedder's
contract names its template (``core``), evaluation aligns IJB crops from their meta
landmarks, deployment aligns detected faces, and ``prepare`` aligns whole datasets.

The template is the one insightface's ``norm_crop`` warps to (eyes, nose tip, mouth corners
of a 112x112 crop); the 112x96 variant used by SphereFace/CosFace is the same template
shifted 8 pixels left. The similarity (rotation, uniform scale, translation; no reflection)
is the least-squares fit of Umeyama, "Least-squares estimation of transformation parameters
between two point patterns", TPAMI 1991 — the method behind scikit-image's
``SimilarityTransform.estimate`` that insightface uses.

Faces that are already cropped (no landmarks) are brought to the model's input size by
:func:`faceforge.data.images.fit_image` (letterbox, stretch or centre crop).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceforge.errors import DataError

#: landmark positions (x, y) in a 112x112 ArcFace crop, in detection landmark order
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

TEMPLATES = {"arcface": ARCFACE_TEMPLATE}


def template_points(size: tuple[int, int] = (112, 112), template: str = "arcface") -> np.ndarray:
    """Template landmarks (5, 2) for an output of ``size`` = (height, width).

    Square sizes that are multiples of 112 scale the template; multiples of 128 scale it by
    size/128 and centre it with an 8*size/128 pixel x offset (insightface's convention);
    (112k, 96k) scales by k and shifts x by -8k (the 112x96 crop).
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown alignment template {template!r}; known: {sorted(TEMPLATES)}")
    points = TEMPLATES[template]
    height, width = size
    if height == width and height % 112 == 0:
        ratio, shift = height / 112, 0.0
    elif height == width and height % 128 == 0:
        ratio = height / 128
        shift = 8.0 * ratio
    elif height % 112 == 0 and width * 112 == height * 96:
        ratio = height / 112
        shift = -8.0 * ratio
    else:
        raise ValueError(
            f"no {template} template for a {height}x{width} crop; use 112k x 112k, "
            "128k x 128k or 112k x 96k"
        )
    return points * ratio + np.array([shift, 0.0])


def umeyama_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 similarity matrix mapping ``source`` points (N, 2) onto ``target`` in the
    least-squares sense (rotation + uniform scale + translation, never a reflection)."""
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise DataError("landmarks collapse to a single point; cannot align this face")
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float(singular @ sign) / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def estimate_norm(
    landmarks: np.ndarray, size: tuple[int, int] = (112, 112), template: str = "arcface"
) -> np.ndarray:
    """2x3 matrix taking image pixels to the aligned crop (insightface ``estimate_norm``)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got {landmarks.shape}")
    return umeyama_similarity(landmarks, template_points(size, template))


def norm_crop(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: tuple[int, int] = (112, 112),
    template: str = "arcface",
) -> np.ndarray:
    """Aligned (height, width, C) crop of ``image`` (bilinear, black outside the image)."""
    matrix = estimate_norm(landmarks, size, template)
    return cv2.warpAffine(image, matrix, (size[1], size[0]), borderValue=0.0)
