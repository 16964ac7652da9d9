"""Deploy: detect, align, embed, verify two photos, search a gallery, export to ONNX.

>>> from faceforge.inference import FacePipeline
>>> pipeline = FacePipeline.load("checkpoint.pt")  # doctest: +SKIP
>>> pipeline.verify("a.jpg", "b.jpg").same  # doctest: +SKIP
True
"""

from __future__ import annotations

from faceforge.inference.align import estimate_norm, norm_crop, template_points
from faceforge.inference.detection import Detection, Detector, select_face
from faceforge.inference.embedder import Embedder, OnnxEmbedder, TorchEmbedder, load_embedder
from faceforge.inference.gallery import Gallery, Match
from faceforge.inference.mtcnn import MTCNN
from faceforge.inference.pipeline import FacePipeline, Identification, Verification
from faceforge.inference.scrfd import SCRFD
from faceforge.inference.threshold import Threshold

__all__ = [
    "MTCNN",
    "SCRFD",
    "Detection",
    "Detector",
    "Embedder",
    "FacePipeline",
    "Gallery",
    "Identification",
    "Match",
    "OnnxEmbedder",
    "Threshold",
    "TorchEmbedder",
    "Verification",
    "estimate_norm",
    "load_embedder",
    "norm_crop",
    "select_face",
    "template_points",
]
