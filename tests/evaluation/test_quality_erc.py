"""Face quality parts and the error-versus-reject curve on pairs with controlled blur and pose."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.data.quality import face_quality, head_pose
from faceforge.evaluation.erc import error_versus_reject, plot_erc

#: frontal 5-point template (112x112 ArcFace layout)
FRONTAL = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]])


def _rotated(points: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = points.mean(0)
    return (points - centre) @ matrix.T + centre


def _turned(points: np.ndarray, shift: float) -> np.ndarray:
    """Nose moved sideways by ``shift`` of the half eye distance (a yaw of asin(shift))."""
    out = points.copy()
    out[2, 0] += shift * (points[1, 0] - points[0, 0]) / 2
    return out


def test_pose_from_landmarks() -> None:
    yaw, pitch, roll = head_pose(FRONTAL)
    assert abs(yaw) < 3 and abs(pitch) < 6 and abs(roll) < 1
    assert head_pose(_rotated(FRONTAL, 20))[2] == pytest.approx(20 + roll, abs=1e-6)
    assert head_pose(_turned(FRONTAL, 0.5))[0] == pytest.approx(
        np.degrees(np.arcsin(0.5)) + yaw, abs=1.0
    )


def _face(rng: np.random.Generator) -> np.ndarray:
    """A textured 112x112 'face' (random blobs) with mid-grey exposure."""
    noise = cv2.resize(rng.normal(128, 50, (28, 28)), (112, 112), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 20, (112, 112))
    return np.clip(np.repeat((noise + fine)[..., None], 3, axis=2), 0, 255).astype(np.uint8)


def test_erc_falls_as_low_quality_pairs_are_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    degradation = rng.uniform(0, 1, 300)
    quality, similarity = [], []
    for level in degradation:
        face = cv2.GaussianBlur(_face(rng), (0, 0), 0.1 + 3.0 * level)
        landmarks = _turned(FRONTAL, 0.8 * level)
        quality.append(face_quality(face, (0, 0, 112, 112), landmarks).total)
        # a matcher whose genuine similarity drops with blur and pose
        similarity.append(0.75 - 0.6 * level + rng.normal(0, 0.1))
    same = np.ones(len(quality), bool)
    assert np.corrcoef(np.argsort(np.argsort(quality)), degradation)[0, 1] < -0.8
    curve = error_versus_reject(similarity, same, quality, threshold=0.35)
    assert curve[0] > 0.1 and curve[-1] < curve[0] / 2
    assert np.all(np.diff(curve) <= 0.02)
    shuffled = error_versus_reject(similarity, same, rng.permutation(quality), 0.35)
    assert shuffled[-1] > curve[-1]
    png = plot_erc({"faceforge quality": curve, "random": shuffled}, tmp_path / "erc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_parts_respond_to_their_cause() -> None:
    face = _face(np.random.default_rng(1))
    sharp = face_quality(face, (0, 0, 112, 112), FRONTAL)
    assert 0.0 <= sharp.total <= 1.0 and sharp.size == 1.0
    blurred = face_quality(cv2.GaussianBlur(face, (0, 0), 3), (0, 0, 112, 112), FRONTAL)
    assert blurred.sharpness < sharp.sharpness / 2
    dark = face_quality(face // 6, (0, 0, 112, 112), FRONTAL)
    assert dark.exposure < sharp.exposure / 2
    small = face_quality(face, (0, 0, 30, 30), FRONTAL)
    assert small.size < 0.1
    magface = face_quality(face, (0, 0, 112, 112), FRONTAL, feature_norm=20.0)
    assert magface.total < sharp.total and magface.feature_norm == 20.0
