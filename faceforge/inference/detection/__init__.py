"""Face detection: the :class:`Detection` every backend returns, MTCNN and SCRFD backends."""

from __future__ import annotations

from faceforge.inference.detection.base import Detection, Detector, select_face

__all__ = ["Detection", "Detector", "select_face"]
