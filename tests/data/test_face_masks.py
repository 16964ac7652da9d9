"""Synthetic face masks: placed from the template's landmarks, they cover the nose tip and the
mouth corners down to the chin and never the eyes, in every shape, colour and crop size."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.config import AugmentConfig
from faceforge.data.face_masks import MASK_SHAPES, FaceFrame, SyntheticMask
from faceforge.data.face_template import template_points
from faceforge.data.transforms import build_train_transform
from faceforge.errors import DataError

SIZES = [(112, 112), (112, 96), (224, 224)]


def near(points: np.ndarray, radius: float, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` of any of ``points``."""
    y, x = np.mgrid[0:height, 0:width]
    return np.any(
        [(x - px) ** 2 + (y - py) ** 2 <= radius**2 for px, py in np.atleast_2d(points)], axis=0
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", MASK_SHAPES.names())
def test_mask_covers_nose_and_mouth_and_never_the_eyes(shape: str, size: tuple[int, int]) -> None:
    height, width = size
    eyes, nose, mouth = np.split(template_points(size), [2, 3])
    scale = height / 112
    for seed in range(25):
        mask = SyntheticMask(1.0, (shape,)).sample(np.random.default_rng(seed), height, width)
        covered = mask.coverage(height, width)
        assert covered[near(np.vstack([nose, mouth]), 1.5 * scale, height, width)].min() == 1.0
        assert covered[near(eyes, 3 * scale, height, width)].max() == 0.0
        column = round(float(nose[0, 0]))  # nose tip down to the chin, below the crop's edge
        assert covered[int(np.ceil(nose[0, 1])) :, column].min() == 1.0


def test_mask_paints_its_colour_where_it_covers() -> None:
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), np.uint8)
    mask = SyntheticMask(1.0, ("cloth",)).sample(np.random.default_rng(3), 112, 112)
    out = mask.apply(face)
    covered = mask.coverage(112, 112)
    assert (out[covered == 0] == face[covered == 0]).all()
    assert (out[covered == 1] == mask.colour).all()
    blend = (covered > 0) & (covered < 1)  # the anti-aliased outline mixes both
    expected = (
        face[blend] * (1 - covered[blend, None]) + np.array(mask.colour) * covered[blend, None]
    )
    assert np.abs(out[blend] - expected).max() <= 0.5


def test_seams_are_drawn_darker() -> None:
    face = np.zeros((112, 112, 3), np.uint8)
    mask = SyntheticMask(1.0, ("kn95",)).sample(np.random.default_rng(0), 112, 112)
    x = round(float(template_points()[2, 0]))
    seam = mask.apply(face)[80:110, x].astype(int)  # the middle seam below the nose
    assert (seam < np.array(mask.colour)).all(axis=1).all()


def test_shapes_and_colours_vary_with_the_seed() -> None:
    masks = [SyntheticMask(1.0).sample(np.random.default_rng(s), 112, 112) for s in range(40)]
    assert len({m.colour for m in masks}) >= 10
    assert len({len(m.outline) for m in masks}) == 3  # surgical, cloth and kn95 outlines


def test_probability_and_determinism() -> None:
    face = np.full((112, 112, 3), 128, np.uint8)
    assert SyntheticMask(0.0)(face, np.random.default_rng(0)) is face
    one = SyntheticMask(1.0)(face, np.random.default_rng([4, 2]))
    assert np.array_equal(one, SyntheticMask(1.0)(face, np.random.default_rng([4, 2])))
    hits = sum(SyntheticMask(0.3)(face, np.random.default_rng(s)) is not face for s in range(1000))
    assert 240 <= hits <= 360  # binomial(1000, 0.3): mean 300, sd 14.5


def test_a_crop_without_a_template_is_refused() -> None:
    with pytest.raises(DataError, match="synthetic masks need an aligned crop: no arcface"):
        FaceFrame.of_crop(100, 100)


def test_recipe_fields_build_the_transform_first_in_the_pipeline() -> None:
    cfg = AugmentConfig(hflip=0.5, mask_prob=0.25, mask_shapes=("cloth",), mesh_prob=0.1)
    steps = build_train_transform(cfg).transforms
    assert [type(s).__name__ for s in steps] == ["SyntheticMask", "MeshOverlay", "HorizontalFlip"]
    assert (steps[0].p, steps[0].shapes) == (0.25, ("cloth",))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.mask_prob=1.5", "augment.mask_prob=1.5: must be a probability"),
        ("augment.mask_shapes=[surgical, scarf]", "a non-empty list of cloth, kn95, surgical"),
        ("augment.mask_shapes=[]", "a non-empty list of"),
        ("augment.mesh_period=[20, 10]", "0 < low <= high"),
        ("augment.mesh_thickness=[0, 2]", "0 < low <= high"),
        ("augment.mesh_opacity=[0.5, 1.5]", "low <= high <= 1"),
    ],
)
def test_recipe_checks_the_fields(override: str, message: str) -> None:
    from faceforge.errors import ConfigError
    from faceforge.train.recipe import load_recipe

    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_recipe(None, [override])
