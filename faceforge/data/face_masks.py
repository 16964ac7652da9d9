"""Synthetic face masks drawn from the five landmarks, for masked-face training.

Masked-face data is made by drawing a mask from the nose bridge to the chin over ordinary
faces, placed from facial landmarks (as MaskTheFace does, Anwar and Raychowdhury 2020,
https://arxiv.org/abs/2008.11104). Training crops are aligned to the ArcFace template, so
the landmarks of every crop are the template's (:func:`~faceforge.data.face_template.
template_points`, 112x112 or 112x96) and no detector is needed.

A mask shape is a polygon in face coordinates: origin at the nose tip, ``u`` along the eye
line and ``v`` down the face, both in units of the eye distance. Its top edge stays between
the eyes and the nose tip, its bottom below the crop (the chin), so it covers the nose tip
and the mouth corners and never the eyes. Shapes (:data:`MASK_SHAPES`): ``surgical`` (pleated
rectangle narrowing to the chin), ``cloth`` (rounded), ``kn95`` (pointed at the nose bridge,
with a middle seam).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from faceforge.data.face_template import template_points
from faceforge.errors import DataError
from faceforge.registry import Registry

#: mask colours (RGB): light blue, white, black, grey, navy, pink, sage; brightness is jittered
PALETTE = (
    (140, 190, 225),
    (235, 235, 235),
    (35, 35, 38),
    (150, 150, 155),
    (40, 55, 95),
    (235, 175, 190),
    (160, 190, 160),
)
#: sub-pixel precision of the polygon corners handed to OpenCV (2**4 steps per pixel)
SHIFT = 4

Outline = tuple[np.ndarray, list[np.ndarray]]


@dataclass(frozen=True)
class FaceFrame:
    """Face coordinates of an aligned crop: nose tip, unit vectors along the eyes and down
    the face, the eye distance, and where the eyes and mouth sit across (in eye distances)."""

    nose: np.ndarray
    along: np.ndarray
    down: np.ndarray
    unit: float
    eyes_v: float
    mouth_v: float

    @classmethod
    def of_crop(cls, height: int, width: int) -> FaceFrame:
        try:
            points = template_points((height, width))
        except ValueError as exc:
            raise DataError(f"synthetic masks need an aligned crop: {exc}") from None
        eyes, nose, mouth = points[:2].mean(0), points[2], points[3:].mean(0)
        unit = float(np.linalg.norm(points[1] - points[0]))
        along = (points[1] - points[0]) / unit
        down = np.array([-along[1], along[0]])
        return cls(
            nose, along, down, unit, (eyes - nose) @ down / unit, (mouth - nose) @ down / unit
        )

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) face coordinates -> image pixels."""
        uv = np.asarray(uv, np.float64)
        return self.nose + self.unit * (uv[:, :1] * self.along + uv[:, 1:] * self.down)


def _extent(frame: FaceFrame, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Top edge (between the eyes and the nose tip), bottom (below the chin), half widths at
    the top and the bottom, all in eye distances."""
    top = frame.eyes_v * rng.uniform(0.45, 0.65)  # eyes_v < 0: a fraction of the way up
    bottom = frame.mouth_v * rng.uniform(2.2, 2.6)
    return top, bottom, rng.uniform(1.05, 1.25), rng.uniform(0.5, 0.65)


def surgical(frame: FaceFrame, rng: np.random.Generator) -> Outline:
    """A pleated rectangle over nose and mouth, narrowing to the chin, with three pleats."""
    top, bottom, wide, narrow = _extent(frame, rng)
    middle = frame.mouth_v * rng.uniform(0.9, 1.2)
    outline = [
        (-wide, top),
        (wide, top),
        (wide, middle),
        (narrow, bottom),
        (-narrow, bottom),
        (-wide, middle),
    ]
    pleats = [np.array([(-wide, v), (wide, v)]) for v in np.linspace(top, middle, 5)[1:-1]]
    return np.array(outline), pleats


def cloth(frame: FaceFrame, rng: np.random.Generator) -> Outline:
    """A rounded mask: the top edge rising over the nose, the bottom an ellipse round the chin."""
    top, bottom, wide, _ = _extent(frame, rng)
    rise = abs(frame.eyes_v) * rng.uniform(0.05, 0.12)
    u = np.linspace(-wide, wide, 17)
    upper = np.stack([u, top - rise * np.cos(u / wide * math.pi / 2)], 1)
    angles = np.linspace(0, math.pi, 17)
    middle = frame.mouth_v * 0.5
    lower = np.stack([wide * np.cos(angles), middle + (bottom - middle) * np.sin(angles)], 1)
    return np.concatenate([upper, lower]), []


def kn95(frame: FaceFrame, rng: np.random.Generator) -> Outline:
    """A folded respirator: pointed at the nose bridge, with a seam down the middle."""
    top, bottom, wide, narrow = _extent(frame, rng)
    apex = top - abs(frame.eyes_v) * rng.uniform(0.15, 0.25)
    middle = frame.mouth_v * rng.uniform(1.0, 1.3)
    outline = [
        (0, apex),
        (wide, top + 0.05),
        (wide * 0.95, middle),
        (narrow * 0.6, bottom),
        (-narrow * 0.6, bottom),
        (-wide * 0.95, middle),
        (-wide, top + 0.05),
    ]
    return np.array(outline), [np.array([(0, apex), (0, bottom)])]


#: mask shape name -> function of (face frame, rng) giving its outline and seam lines
MASK_SHAPES: Registry[Outline] = Registry.of(
    "mask shape", {"surgical": surgical, "cloth": cloth, "kn95": kn95}
)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(points * (1 << SHIFT)).astype(np.int32)


@dataclass(frozen=True)
class FaceMask:
    """One mask in image pixels: its outline, seams drawn darker, and RGB colour."""

    outline: np.ndarray
    seams: tuple[np.ndarray, ...]
    colour: tuple[int, int, int]

    def coverage(self, height: int, width: int) -> np.ndarray:
        """float32 (height, width) in [0, 1], anti-aliased at the outline."""
        canvas = np.zeros((height, width), np.uint8)
        cv2.fillPoly(canvas, [_fixed(self.outline)], 255, cv2.LINE_AA, SHIFT)
        return canvas.astype(np.float32) / 255

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (uint8 HxWx3) with the mask painted over it."""
        height, width = image.shape[:2]
        paint = np.empty_like(image)
        paint[:] = self.colour
        shade = tuple(int(0.7 * c) for c in self.colour)
        for seam in self.seams:
            start, end = _fixed(seam)
            cv2.line(
                paint, tuple(start), tuple(end), shade, max(1, height // 112), cv2.LINE_AA, SHIFT
            )
        alpha = self.coverage(height, width)[..., None]
        blended = image.astype(np.float32) * (1 - alpha) + paint.astype(np.float32) * alpha
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticMask:
    """With probability ``p`` paint a face mask of one of ``shapes`` (:data:`MASK_SHAPES`
    names) in a palette colour over the aligned crop."""

    p: float
    shapes: tuple[str, ...] = ("surgical", "cloth", "kn95")

    def sample(self, rng: np.random.Generator, height: int, width: int) -> FaceMask:
        """A random mask for a ``height`` x ``width`` aligned crop."""
        frame = FaceFrame.of_crop(height, width)
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        outline, seams = MASK_SHAPES.get(shape, field="augment.mask_shapes")(frame, rng)
        brightness = rng.uniform(0.85, 1.1)
        base = PALETTE[int(rng.integers(len(PALETTE)))]
        colour = tuple(int(min(255, c * brightness)) for c in base)
        return FaceMask(
            frame.to_image(outline),
            tuple(frame.to_image(seam) for seam in seams),
            colour,  # type: ignore[arg-type]
        )

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        return self.sample(rng, *image.shape[:2]).apply(image)
