"""Alignment: the similarity fit is checked against an independent linear least-squares
solution (the closed form scikit-image's estimate reduces to for 2-D similarities)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceforge.data.alignment import (
    ARCFACE_TEMPLATE,
    estimate_norm,
    norm_crop,
    template_points,
    umeyama_similarity,
)
from faceforge.data.face_template import FACENET_TEMPLATE
from faceforge.data.image_io import read_image
from faceforge.errors import DataError


def lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Solve x' = a x - b y + tx, y' = b x + a y + ty for (a, b, tx, ty) by least squares."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, -y, 1, 0])
        rhs.append(u)
        rows.append([y, x, 0, 1])
        rhs.append(v)
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def random_landmarks(rng: np.random.Generator, noise: float) -> np.ndarray:
    angle = rng.uniform(-0.6, 0.6)
    scale = rng.uniform(0.5, 3.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = scale * ARCFACE_TEMPLATE @ rot.T + rng.uniform(0, 300, size=2)
    return points + rng.normal(scale=noise, size=points.shape)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [(112, 112), (112, 96), (224, 224), (128, 128)])
def test_estimate_norm_matches_closed_form(seed: int, size: tuple[int, int]) -> None:
    landmarks = random_landmarks(np.random.default_rng(seed), noise=3.0)
    expected = lstsq_similarity(landmarks, template_points(size))
    np.testing.assert_allclose(estimate_norm(landmarks, size), expected, atol=1e-4)


def test_exact_similarity_is_recovered() -> None:
    src = random_landmarks(np.random.default_rng(7), noise=0.0)
    truth = np.array([[0.8, -0.3, 12.0], [0.3, 0.8, -4.0]])
    np.testing.assert_allclose(umeyama_similarity(src, apply(truth, src)), truth, atol=1e-9)


def test_no_reflection_for_mirrored_points() -> None:
    landmarks = ARCFACE_TEMPLATE * np.array([-1.0, 1.0]) + 200  # left-right mirrored face
    matrix = estimate_norm(landmarks)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix, lstsq_similarity(landmarks, ARCFACE_TEMPLATE), atol=1e-6)


def test_templates() -> None:
    np.testing.assert_allclose(template_points((112, 112)), ARCFACE_TEMPLATE)
    shift = np.array([8.0, 0.0])
    np.testing.assert_allclose(template_points((112, 96)), ARCFACE_TEMPLATE - shift)
    np.testing.assert_allclose(template_points((224, 192)), (ARCFACE_TEMPLATE - shift) * 2)
    np.testing.assert_allclose(template_points((128, 128)), ARCFACE_TEMPLATE + shift)
    np.testing.assert_allclose(template_points((256, 256)), (ARCFACE_TEMPLATE + shift) * 2)
    with pytest.raises(ValueError, match="no arcface template"):
        template_points((100, 100))
    with pytest.raises(ValueError, match="unknown alignment template"):
        template_points((112, 112), "dlib")


def test_norm_crop_puts_landmarks_on_the_template() -> None:
    rng = np.random.default_rng(3)
    landmarks = random_landmarks(rng, noise=0.0)
    image = np.zeros((500, 500, 3), np.uint8)
    for x, y in np.round(landmarks).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255  # 3x3 white dots at the landmarks
    crop = norm_crop(image, np.round(landmarks))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)].max() > 100, (x, y)
    assert crop[5, 5].max() == 0  # black background stays black


def test_bad_landmarks_raise() -> None:
    with pytest.raises(DataError, match="single point"):
        estimate_norm(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        estimate_norm(np.ones((4, 2)))


def test_facenet_template_scales_with_square_multiples_of_160() -> None:
    points = template_points((160, 160), "facenet")
    np.testing.assert_array_equal(points, FACENET_TEMPLATE)
    np.testing.assert_allclose(template_points((320, 320), "facenet"), 2 * FACENET_TEMPLATE)
    assert points[0, 0] < points[1, 0] and points[2, 1] < points[3, 1]  # eyes, nose, mouth
    for size in ((112, 112), (160, 128)):
        with pytest.raises(ValueError, match="no facenet template .* use 160k x 160k"):
            template_points(size, "facenet")


def crop_correlation(
    image: np.ndarray, landmarks: np.ndarray, template: np.ndarray, reference: np.ndarray
) -> float:
    """Pixel correlation of ``reference`` with ``image`` aligned to ``template`` points."""
    matrix = umeyama_similarity(landmarks, template)
    crop = cv2.warpAffine(image, matrix, reference.shape[1::-1], borderValue=0.0)
    return float(np.corrcoef(crop.ravel(), reference.ravel())[0, 1])


def test_facenet_template_crops_look_like_facenet_pytorchs_own(shared_data, mtcnn) -> None:
    """facenet-pytorch's shipped test crops (MTCNN box, margin 0, 160x160) against the same
    photos aligned to the FaceNet template (moved from margin 14 to margin 0: the box fills
    146 of 160 pixels there) and to the ArcFace template scaled to 160: the FaceNet template
    is the closer one on every photo (pixel correlation; the box crops stretch faces, so
    neither reaches 1)."""
    root = shared_data / "photos" / "facenet_pytorch_test_images"
    margin_zero = (FACENET_TEMPLATE - 7) * 160 / 146
    arcface_160 = ARCFACE_TEMPLATE * 160 / 112
    photos = sorted((root / "test_images").glob("*/1.jpg"))
    assert photos
    for photo in photos:
        reference = read_image(next((root / "test_images_aligned" / photo.parent.name).iterdir()))
        image = read_image(photo)
        landmarks = mtcnn.detect(image)[0].landmarks
        ours = crop_correlation(image, landmarks, margin_zero, reference)
        assert ours > crop_correlation(image, landmarks, arcface_160, reference) + 0.05, photo
