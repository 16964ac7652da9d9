"""Face detection: the :class:`Detection` every backend returns, MTCNN and SCRFD backends,
the detector registry (:func:`build_detector` from a ``name[:ARGUMENT]`` spec) and the
policies that pick one face among several."""

from __future__ import annotations

from faceforge.inference.detection.base import (
    SELECTION_POLICIES,
    Detection,
    Detector,
    select_face,
)
from faceforge.inference.detection.registry import DETECTORS, build_detector, parse_detector_spec

__all__ = [
    "DETECTORS",
    "SELECTION_POLICIES",
    "Detection",
    "Detector",
    "build_detector",
    "parse_detector_spec",
    "select_face",
]
