"""Classification heads for training: a (cosine) FC layer followed by a margin, and Partial FC
(class centres sharded across ranks, with its own distributed cross-entropy)."""

from __future__ import annotations

from faceforge.models.heads.adaface import AdaFace
from faceforge.models.heads.base import Head
from faceforge.models.heads.build import build_head, build_margin, head_names
from faceforge.models.heads.classifier import CosineClassifier, MarginHead, NoHead, SoftmaxHead
from faceforge.models.heads.curricularface import CurricularFace
from faceforge.models.heads.elasticface import ElasticArcFace, ElasticCosFace
from faceforge.models.heads.magface import MagFace, quality
from faceforge.models.heads.margins import ArcFace, CombinedMargin, CosFace, Margin, NormFace
from faceforge.models.heads.partial_fc import PartialFC
from faceforge.models.heads.sphereface import SphereFaceHead
from faceforge.models.heads.subcenter import SubCenterHead

__all__ = [
    "AdaFace",
    "ArcFace",
    "CombinedMargin",
    "CosFace",
    "CosineClassifier",
    "CurricularFace",
    "ElasticArcFace",
    "ElasticCosFace",
    "Head",
    "MagFace",
    "Margin",
    "MarginHead",
    "NoHead",
    "NormFace",
    "PartialFC",
    "SoftmaxHead",
    "SphereFaceHead",
    "SubCenterHead",
    "build_head",
    "build_margin",
    "head_names",
    "quality",
]
