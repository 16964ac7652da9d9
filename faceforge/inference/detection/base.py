"""What every face detector returns, the protocol a detector backend implements, and how one
face is chosen when an image holds several."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from faceforge.registry import Registry

#: order of the five landmarks in :attr:`Detection.landmarks` (subject's left eye is on the
#: image's right; "left" here means image left, as in insightface and MTCNN)
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


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


def best_scoring(faces: Sequence[Detection], image_shape: tuple[int, ...]) -> Detection | None:
    """The face the detector is surest of."""
    return max(faces, key=lambda d: d.score, default=None)


def largest(faces: Sequence[Detection], image_shape: tuple[int, ...]) -> Detection | None:
    """The face with the biggest box (usually the subject of a portrait)."""
    return max(faces, key=lambda d: d.area, default=None)


def most_central(faces: Sequence[Detection], image_shape: tuple[int, ...]) -> Detection | None:
    """The face whose box centre is closest to the image centre."""
    cy, cx = image_shape[0] / 2, image_shape[1] / 2
    return min(faces, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2, default=None)


#: how to pick one face from several: name -> function of (faces, image shape), None if no face
SELECTION_POLICIES: Registry[Detection | None] = Registry.of(
    "face selection policy", {"best": best_scoring, "largest": largest, "central": most_central}
)


def select_face(
    detections: Sequence[Detection], image_shape: tuple[int, ...], policy: str = "best"
) -> Detection | None:
    """Pick one face by ``policy`` (a :data:`SELECTION_POLICIES` name; an unknown one raises
    :class:`~faceforge.errors.UnknownChoiceError`); ``None`` if there is none."""
    return SELECTION_POLICIES.get(policy, field="selection")(detections, image_shape)
