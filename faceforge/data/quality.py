"""Face image quality without a reference: size, pose, sharpness, exposure (and MagFace norm).

Each part is a score in [0, 1] (1 = no problem) reported beside the total, their geometric
mean, so one bad part (a profile face, a 20-pixel face) pulls the total down. Pose comes from
the 5 landmarks (eyes, nose, mouth corners): roll is the eye line's angle, yaw the nose's
horizontal offset from the eyes-mouth midline, pitch the nose's height between eyes and mouth
relative to a frontal face. MagFace's feature norm grows with quality (Meng et al., CVPR 2021,
https://arxiv.org/abs/2103.06627); it is mapped from its training range [10, 110].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: face height (pixels) from which size no longer limits recognition
FULL_SIZE = 112.0
#: smallest usable face (pixels): size score 0
MIN_SIZE = 24.0
#: pose angle (degrees) at which the pose score reaches 0
MAX_ANGLE = 60.0
#: Laplacian variance of a 112-pixel grey face at which sharpness scores 0.5
SHARPNESS_HALF = 60.0
#: frontal nose height between eye line (0) and mouth line (1), from the ArcFace template
FRONTAL_NOSE = 0.5
#: MagFace feature norms of its training range
MAGFACE_NORMS = (10.0, 110.0)


@dataclass(frozen=True)
class FaceQuality:
    """Total quality and its parts, all in [0, 1]; angles in degrees."""

    total: float
    size: float
    pose: float
    sharpness: float
    exposure: float
    yaw: float
    pitch: float
    roll: float
    feature_norm: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {key: None if v is None else round(float(v), 4) for key, v in vars(self).items()}

    def with_feature_norm(self, norm: float) -> FaceQuality:
        """This quality with a MagFace feature norm as a fifth part of the total."""
        parts = [self.size, self.pose, self.sharpness, self.exposure]
        return _total(parts, self.yaw, self.pitch, self.roll, norm)


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 5 landmarks (left eye, right eye, nose, mouth
    left, mouth right as seen in the image); frontal is (0, 0, 0)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, nose, mouth = points[:2].mean(0), points[2], points[3:].mean(0)
    eye_vector = points[1] - points[0]
    roll = np.degrees(np.arctan2(eye_vector[1], eye_vector[0]))
    rotation = np.array([[np.cos(-np.radians(roll)), -np.sin(-np.radians(roll))],
                         [np.sin(-np.radians(roll)), np.cos(-np.radians(roll))]])  # fmt: skip
    eyes, nose, mouth, eye_vector = (rotation @ v for v in (eyes, nose, mouth, eye_vector))
    half_width = max(np.linalg.norm(eye_vector) / 2, 1e-6)
    midline = (eyes[0] + mouth[0]) / 2
    yaw = np.degrees(np.arcsin(np.clip((nose[0] - midline) / half_width, -1, 1)))
    height = max(mouth[1] - eyes[1], 1e-6)
    pitch = np.degrees(np.arcsin(np.clip(((nose[1] - eyes[1]) / height - FRONTAL_NOSE) * 2, -1, 1)))
    return float(yaw), float(pitch), float(roll)


def sharpness_score(face: np.ndarray) -> float:
    """Variance of the Laplacian of the grey face at 112 pixels, squashed to [0, 1)."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (112, 112), interpolation=cv2.INTER_AREA).astype(np.float64)
    variance = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return variance / (variance + SHARPNESS_HALF)


def exposure_score(face: np.ndarray) -> float:
    """1 at mid-grey mean brightness, falling towards black or white and with clipped pixels."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float64)
    balance = 1.0 - abs(grey.mean() - 128.0) / 128.0
    clipped = float(np.mean((grey <= 5) | (grey >= 250)))
    return float(np.clip(balance * (1.0 - clipped), 0.0, 1.0))


def face_quality(
    image: np.ndarray, box: Sequence[float], landmarks: np.ndarray,
    feature_norm: float | None = None,
) -> FaceQuality:  # fmt: skip
    """Quality of the face at ``box`` (x1, y1, x2, y2) with its 5 ``landmarks`` in an RGB image;
    ``feature_norm``: the raw embedding norm when the model is MagFace."""
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    height, width = image.shape[:2]
    face = image[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)]
    if face.size == 0:
        face = np.zeros((2, 2, 3), np.uint8)
    side = min(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]))
    size = float(np.clip((side - MIN_SIZE) / (FULL_SIZE - MIN_SIZE), 0.0, 1.0))
    yaw, pitch, roll = head_pose(landmarks)
    pose = float(np.prod([max(0.0, 1.0 - abs(a) / MAX_ANGLE) for a in (yaw, pitch, roll)]))
    parts = [size, pose, sharpness_score(face), exposure_score(face)]
    return _total(parts, yaw, pitch, roll, feature_norm)


def _total(
    parts: list[float], yaw: float, pitch: float, roll: float, feature_norm: float | None
) -> FaceQuality:
    """The quality of four parts and, when given, the mapped MagFace norm: geometric mean."""
    if feature_norm is not None:
        low, high = MAGFACE_NORMS
        parts = [*parts, float(np.clip((feature_norm - low) / (high - low), 0.0, 1.0))]
    total = float(np.prod(parts) ** (1.0 / len(parts)))
    return FaceQuality(total, *parts[:4], yaw, pitch, roll, feature_norm)
