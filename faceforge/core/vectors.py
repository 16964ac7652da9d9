"""Embedding normalisation shared by evaluation, galleries and embedders."""

from __future__ import annotations

import numpy as np


def l2_normalize(embeddings: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Rows divided by their L2 norm as a contiguous ``dtype`` array; all-zero rows stay zero.

    float64 (the default) for metrics, where insightface's thresholds are compared to the
    last digit; float32 for FAISS indexes and embedders' outputs.
    """
    x = np.ascontiguousarray(embeddings, dtype=dtype)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms).astype(dtype)
