"""Deploy, in the order a photo flows: ``detection`` (MTCNN, SCRFD by name) -> alignment
(:mod:`faceforge.data.alignment`) -> the embedder (:mod:`faceforge.core.embedder`) ->
``matching`` (thresholds, indexes, galleries); ``pipeline`` runs them all and gives
``answers``, ``export`` writes ONNX. The alignment and embedder names are re-exported here
for deploy code.

>>> from faceforge.inference import FacePipeline
>>> pipeline = FacePipeline.load("checkpoint.pt", detector="mtcnn")  # doctest: +SKIP
>>> pipeline.verify("a.jpg", "b.jpg").same  # doctest: +SKIP
True
"""

from __future__ import annotations

from faceforge.core.embedder import Embedder, load_embedder
from faceforge.data.alignment import estimate_norm, norm_crop, template_points
from faceforge.inference.answers import Identification, Verification
from faceforge.inference.detection import (
    DETECTORS,
    SELECTION_POLICIES,
    Detection,
    Detector,
    build_detector,
    select_face,
)
from faceforge.inference.detection.mtcnn import MTCNN
from faceforge.inference.detection.scrfd import SCRFD
from faceforge.inference.matching import INDEX_TYPES, Gallery, Match, Threshold
from faceforge.inference.pipeline import FacePipeline

__all__ = [
    "DETECTORS",
    "INDEX_TYPES",
    "MTCNN",
    "SCRFD",
    "SELECTION_POLICIES",
    "Detection",
    "Detector",
    "Embedder",
    "FacePipeline",
    "Gallery",
    "Identification",
    "Match",
    "Threshold",
    "Verification",
    "build_detector",
    "estimate_norm",
    "load_embedder",
    "norm_crop",
    "select_face",
    "template_points",
]
