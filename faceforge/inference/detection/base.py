"""What every face detector returns, the protocol a detector backend implements, and how one
face is chosen when an image holds several."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

#: order of the five landmarks in :attr:`Detection.landmarks` (subject's left eye is on the
#: image's right; "left" here means image left, as in insightface and MTCNN)
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

#: how to pick one face from several: highest score, biggest box, or closest to the centre
SELECTION_POLICIES = ("best", "largest", "central")


@dataclass(frozen=True)
class Detection:
    """One detected face in image pixel coordinates ((0, 0) is the top-left pixel)."""

    #: (x1, y1, x2, y2), x2 - x1 is the width
    box: tuple[float, float, float, float]
    score: float
    #: (5, 2) float32 (x, y) points in :data:`LANDMARK_NAMES` order
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2

    def scaled(self, factor: float) -> Detection:
        """The same face with every coordinate multiplied by ``factor``."""
        return Detection(
            box=tuple(float(v) * factor for v in self.box),  # type: ignore[arg-type]
            score=self.score,
            landmarks=(self.landmarks * factor).astype(np.float32),
        )


@runtime_checkable
class Detector(Protocol):
    """A face detector backend: uint8 (H, W, 3) RGB images in, detections out.

    A new backend is one class with these two methods (see ``mtcnn.py`` and ``scrfd.py``).
    Detections are sorted by descending score.
    """

    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]: ...


def select_face(
    detections: Sequence[Detection], image_shape: tuple[int, ...], policy: str = "best"
) -> Detection | None:
    """Pick one face by ``policy`` (see :data:`SELECTION_POLICIES`); ``None`` if there is none."""
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"selection policy must be one of {SELECTION_POLICIES}, got {policy!r}")
    if not detections:
        return None
    if policy == "best":
        return max(detections, key=lambda d: d.score)
    if policy == "largest":
        return max(detections, key=lambda d: d.area)
    cy, cx = image_shape[0] / 2, image_shape[1] / 2
    return min(detections, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)
