"""Embedding normalisation shared by evaluation, galleries and embedders."""

from __future__ import annotations

import numpy as np

from faceforge.errors import DataError


def finite_embeddings(embeddings: np.ndarray, what: str) -> np.ndarray:
    """``embeddings`` as an array, refused when any value is NaN or infinite: such a row
    compares as neither higher nor lower than anything, so a search would count it as a
    match and a verification as anything its threshold says."""
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise DataError(f"{what}: expected (N, D) embeddings, got shape {x.shape}")
    bad = int(np.count_nonzero(~np.isfinite(x).all(axis=1)))
    if bad:
        raise DataError(
            f"{what}: {bad} of {len(x)} embeddings contain NaN or infinite values (a model "
            "that diverged, or an fp16 export that overflows): check the model on a few faces"
        )
    return x


def l2_normalize(embeddings: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Rows divided by their L2 norm as a contiguous ``dtype`` array; all-zero rows stay zero.

    float64 (the default) for metrics, where insightface's thresholds are compared to the
    last digit; float32 for FAISS indexes and embedders' outputs.
    """
    x = np.ascontiguousarray(embeddings, dtype=dtype)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms).astype(dtype)
