"""Training augmentations on uint8 HxWx3 RGB arrays (OpenCV/numpy, no torchvision).

Each transform takes the image and a ``numpy.random.Generator``; the dataset seeds that
generator from (seed, epoch, sample index), so augmentation is reproducible whatever the
number of loader workers, and a resumed run sees exactly the images it would have seen.
Normalisation to [-1, 1] happens on the batch in the trainer (on the GPU when there is one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from faceforge.config import AugmentConfig
from faceforge.data.face_masks import SyntheticMask
from faceforge.data.mesh_overlay import MeshOverlay

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror the face left-right with probability ``p``."""

    p: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(image[:, ::-1]) if rng.random() < self.p else image


@dataclass(frozen=True)
class BrightnessContrast:
    """Scale brightness by 1 +- ``brightness`` and contrast around the mean by 1 +- ``contrast``."""

    brightness: float = 0.0
    contrast: float = 0.0

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain = 1 + rng.uniform(-self.brightness, self.brightness)
        con = 1 + rng.uniform(-self.contrast, self.contrast)
        x = image.astype(np.float32) * np.float32(gain)
        x = (x - x.mean()) * np.float32(con) + x.mean()
        return np.clip(x, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ResizeRandomCrop:
    """Enlarge by a random factor in [1, 1 + ``scale``] and crop back to the original size
    at a random position: a small zoom and shift, as the seeds' resize + random crop."""

    scale: float

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        factor = 1 + rng.uniform(0, self.scale)
        nh, nw = round(h * factor), round(w * factor)
        big = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        y = int(rng.integers(0, nh - h + 1))
        x = int(rng.integers(0, nw - w + 1))
        return big[y : y + h, x : x + w]


@dataclass(frozen=True)
class Cutout:
    """Zero a ``size`` x ``size`` square at a random centre with probability ``p``
    (DeVries & Taylor 2017, https://arxiv.org/abs/1708.04552); the square may be clipped."""

    p: float
    size: int

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        h, w = image.shape[:2]
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        top, left = cy - self.size // 2, cx - self.size // 2  # size x size, odd sizes too
        out = image.copy()
        out[max(0, top) : top + self.size, max(0, left) : left + self.size] = 0
        return out


@dataclass(frozen=True)
class HalfFaceOcclusion:
    """With probability ``p`` blank the upper or the lower half of the face (robustness to
    masks, sunglasses and hats)."""

    p: float

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        out = image.copy()
        half = image.shape[0] // 2
        if rng.random() < 0.5:
            out[:half] = 0
        else:
            out[half:] = 0
        return out


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order."""

    transforms: Sequence[Transform]

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            image = transform(image, rng)
        return image


def build_train_transform(cfg: AugmentConfig) -> Compose:
    """The augmentation pipeline a config asks for (disabled steps are left out); synthetic
    masks (:mod:`~faceforge.data.face_masks`) and meshes (:mod:`~faceforge.data.mesh_overlay`)
    live in their own modules."""
    steps: list[Transform] = []
    # first, while the crop's landmarks are still exactly the template's
    if cfg.mask_prob > 0:
        steps.append(SyntheticMask(cfg.mask_prob, cfg.mask_shapes))
    if cfg.mesh_prob > 0:
        steps.append(
            MeshOverlay(cfg.mesh_prob, cfg.mesh_period, cfg.mesh_thickness, cfg.mesh_opacity)
        )
    if cfg.random_crop_scale > 0:
        steps.append(ResizeRandomCrop(cfg.random_crop_scale))
    if cfg.hflip > 0:
        steps.append(HorizontalFlip(cfg.hflip))
    if cfg.brightness > 0 or cfg.contrast > 0:
        steps.append(BrightnessContrast(cfg.brightness, cfg.contrast))
    if cfg.cutout_prob > 0:
        steps.append(Cutout(cfg.cutout_prob, cfg.cutout_size))
    if cfg.half_face_prob > 0:
        steps.append(HalfFaceOcclusion(cfg.half_face_prob))
    return Compose(tuple(steps))
