"""Embeddings and face quality of the same faces, for error-versus-reject curves.

A quality score is judged by how well it predicts the matcher's errors, so it must score
exactly the face that was embedded: each image is decoded and detected once (``CHUNK`` images
in one detector batch), and the face the pipeline's ``selection`` picks is both embedded and
scored (with a MagFace model, its feature norm from that very embedding joins the score,
:mod:`faceforge.data.quality`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceforge.errors import DataError
from faceforge.inference.pipeline import FacePipeline, ImageLike, Progress


@dataclass(frozen=True)
class ScoredFaces:
    """Per image: unit embedding (NaN row when unusable), quality total, error message."""

    embeddings: np.ndarray
    quality: np.ndarray
    errors: list[str | None]


def embed_with_quality(
    pipeline: FacePipeline, images: Sequence[ImageLike], progress: Progress | None = None
) -> ScoredFaces:
    """Embed every image's selected face and score its quality in one pass. An image where
    the pipeline's ``fallback`` fitted the whole picture (no face found) scores 0, the
    lowest quality; an unusable image gets its error and is left out of both."""
    size = pipeline.embedder.embedding_size
    embeddings = np.full((len(images), size), np.nan, np.float32)
    quality = np.zeros(len(images), np.float64)
    errors: list[str | None] = []
    for start, selected in pipeline.selected_chunks(images):
        crops, reports, rows = [], [], []
        for offset, item in enumerate(selected):
            if isinstance(item, DataError):
                errors.append(str(item))
                continue
            errors.append(None)
            crops.append(item[0])
            reports.append(item[1])
            rows.append(start + offset)
        if crops:
            embedded, norms = pipeline.embedder.embed_with_norms(np.stack(crops))
            embeddings[rows] = embedded
            for row, report, norm in zip(rows, reports, norms, strict=True):
                if report is not None:
                    scored = report.with_feature_norm(norm) if pipeline.checks.magface else report
                    quality[row] = scored.quality.total
        if progress is not None:
            progress(len(selected))
    return ScoredFaces(embeddings, quality, errors)
