"""Matching embeddings: decision thresholds (1:1), FAISS indexes and galleries (1:N)."""

from __future__ import annotations

from faceforge.inference.matching.gallery import Gallery, Match, edit_gallery, load_or_create
from faceforge.inference.matching.index import INDEX_TYPES, IndexSettings
from faceforge.inference.matching.threshold import Threshold

__all__ = [
    "INDEX_TYPES",
    "Gallery",
    "IndexSettings",
    "Match",
    "Threshold",
    "edit_gallery",
    "load_or_create",
]
