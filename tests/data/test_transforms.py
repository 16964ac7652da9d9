"""Augmentations: exact pixel effects, probabilities, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.config import AugmentConfig
from faceforge.data.transforms import (
    BrightnessContrast,
    Cutout,
    HalfFaceOcclusion,
    HorizontalFlip,
    ResizeRandomCrop,
    build_train_transform,
)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(1, 255, (112, 112, 3), dtype=np.uint8)


def test_flip_mirrors_columns(image: np.ndarray) -> None:
    out = HorizontalFlip(p=1.0)(image, np.random.default_rng(0))
    assert np.array_equal(out, image[:, ::-1])
    assert HorizontalFlip(p=0.0)(image, np.random.default_rng(0)) is image


def test_flip_probability(image: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    flips = sum(not np.array_equal(HorizontalFlip(0.3)(image, rng), image) for _ in range(2000))
    assert 0.26 < flips / 2000 < 0.34


def test_brightness_contrast_formula(image: np.ndarray) -> None:
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    out = BrightnessContrast(0.2, 0.3)(image, rng_a)
    gain, con = 1 + rng_b.uniform(-0.2, 0.2), 1 + rng_b.uniform(-0.3, 0.3)
    x = image.astype(np.float64) * gain
    expected = np.clip((x - x.mean()) * con + x.mean(), 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_resize_random_crop_keeps_size_and_zooms(image: np.ndarray) -> None:
    out = ResizeRandomCrop(0.2)(image, np.random.default_rng(0))
    assert out.shape == image.shape
    assert ResizeRandomCrop(0.0)(image, np.random.default_rng(0)).tolist() == image.tolist()


def test_cutout_zeroes_one_square(image: np.ndarray) -> None:
    out = Cutout(p=1.0, size=20)(image, np.random.default_rng(3))
    zero = (out == 0).all(axis=2)
    ys, xs = np.nonzero(zero)
    assert 0 < zero.sum() <= 400
    assert ys.max() - ys.min() < 20 and xs.max() - xs.min() < 20
    assert np.array_equal(out[~zero], image[~zero])


def test_half_face_blanks_upper_or_lower_half(image: np.ndarray) -> None:
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = HalfFaceOcclusion(p=1.0)(image, rng)
        if (out[:56] == 0).all():
            assert np.array_equal(out[56:], image[56:])
            seen.add("upper")
        else:
            assert (out[56:] == 0).all() and np.array_equal(out[:56], image[:56])
            seen.add("lower")
    assert seen == {"upper", "lower"}


def test_pipeline_is_deterministic_for_a_seed(image: np.ndarray) -> None:
    cfg = AugmentConfig(
        hflip=0.5,
        brightness=0.2,
        contrast=0.2,
        random_crop_scale=0.1,
        cutout_prob=0.5,
        half_face_prob=0.2,
    )
    transform = build_train_transform(cfg)
    assert len(transform.transforms) == 5
    a = transform(image, np.random.default_rng([1, 2, 3]))
    b = transform(image, np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a, b)


def test_disabled_augmentations_are_left_out() -> None:
    cfg = AugmentConfig(hflip=0.0)
    assert build_train_transform(cfg).transforms == ()


@pytest.mark.parametrize("size", [1, 2, 33])
def test_cutout_squares_of_any_size_are_that_size_away_from_the_border(size: int) -> None:
    image = np.full((112, 112, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(20):  # centres well inside give the whole square (odd sizes too)
        out = Cutout(p=1.0, size=size)(image, rng)
        zero = (out == 0).all(axis=2)
        ys, xs = np.nonzero(zero)
        if ys.min() > 0 and xs.min() > 0 and ys.max() < 111 and xs.max() < 111:
            assert zero.sum() == size * size
