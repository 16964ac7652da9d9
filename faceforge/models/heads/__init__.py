"""Classification heads for training: a (cosine) FC layer followed by a margin, and Partial FC
(class centres sharded across ranks, with its own distributed cross-entropy)."""

from __future__ import annotations

from faceforge.models.heads.base import Head
from faceforge.models.heads.build import build_head, build_margin, head_names
from faceforge.models.heads.classifier import CosineClassifier, MarginHead, SoftmaxHead
from faceforge.models.heads.margins import ArcFace, CombinedMargin, CosFace, NormFace
from faceforge.models.heads.partial_fc import PartialFC
from faceforge.models.heads.sphereface import SphereFaceHead

__all__ = [
    "ArcFace",
    "CombinedMargin",
    "CosFace",
    "CosineClassifier",
    "Head",
    "MarginHead",
    "NormFace",
    "PartialFC",
    "SoftmaxHead",
    "SphereFaceHead",
    "build_head",
    "build_margin",
    "head_names",
]
