"""Matching embeddings: decision thresholds (1:1) and FAISS galleries (1:N)."""

from __future__ import annotations

from faceforge.inference.matching.gallery import Gallery, Match
from faceforge.inference.matching.threshold import Threshold

__all__ = ["Gallery", "Match", "Threshold"]
