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

from faceforge.data.face_template import ARCFACE_TEMPLATE, TEMPLATES, template_points
from faceforge.errors import DataError

__all__ = [
    "ARCFACE_TEMPLATE",
    "TEMPLATES",
    "estimate_norm",
    "norm_crop",
    "template_points",
    "umeyama_similarity",
]


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
