"""A wavy line mesh over the whole face, as printed over ID photos to stop their reuse.

"MeshFace" photos (Zhang, He and Tan 2016, DeMeshNet, https://arxiv.org/abs/1611.05271)
carry a grid of thin wavy lines; a model trained only on clean faces loses much of its
accuracy on them. :class:`MeshOverlay` draws such meshes at random: two families of parallel
sine waves in opposite phase (the chain pattern of the scans), at a random angle, period
(wavelength along a line), line spacing, amplitude, phase, thickness, colour and opacity.

A line of the first family, in coordinates ``u`` along and ``v`` across the line direction,
is ``v = offset + k * spacing + amplitude * sin(2 pi u / period + phase)`` for every integer
``k``; the second family adds ``pi`` to the phase. A pixel's coverage is its distance across
to the nearest line, turned into an anti-aliased stroke of ``thickness`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: crops are this many pixels high when mesh sizes are given (they scale with the crop)
REFERENCE_HEIGHT = 112
#: line spacing and wave amplitude as fractions of the period
SPACING = (0.5, 0.9)
AMPLITUDE = (0.08, 0.25)


@dataclass(frozen=True)
class Mesh:
    """One mesh: sizes in pixels, ``angle`` and ``phase`` in radians, ``colour`` RGB."""

    angle: float
    period: float
    spacing: float
    amplitude: float
    phase: float
    offset: float
    thickness: float
    colour: tuple[int, int, int]
    opacity: float

    def coverage(self, height: int, width: int) -> np.ndarray:
        """float32 (height, width) in [0, 1]: how much of each pixel the lines cover."""
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        along, across = x * cos + y * sin, -x * sin + y * cos
        wave = 2 * math.pi * along / self.period
        covered = np.zeros((height, width))
        for phase in (self.phase, self.phase + math.pi):
            shifted = across - self.offset - self.amplitude * np.sin(wave + phase)
            distance = np.abs(shifted - self.spacing * np.round(shifted / self.spacing))
            covered = np.maximum(covered, np.clip(self.thickness / 2 + 0.5 - distance, 0, 1))
        return covered.astype(np.float32)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (uint8 HxWx3) with the mesh blended over it."""
        alpha = self.opacity * self.coverage(*image.shape[:2])[..., None]
        colour = np.asarray(self.colour, np.float32)
        blended = image.astype(np.float32) * (1 - alpha) + colour * alpha
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class MeshOverlay:
    """With probability ``p`` draw a random :class:`Mesh` over the image. ``period`` and
    ``thickness`` are ``(low, high)`` pixel ranges for a 112-pixel-high crop (scaled with the
    crop), ``opacity`` a range in (0, 1]."""

    p: float
    period: tuple[float, float] = (12.0, 36.0)
    thickness: tuple[float, float] = (1.0, 2.5)
    opacity: tuple[float, float] = (0.3, 0.8)

    def sample(self, rng: np.random.Generator, height: int = REFERENCE_HEIGHT) -> Mesh:
        """A random mesh for a crop ``height`` pixels high."""
        scale = height / REFERENCE_HEIGHT
        period = scale * rng.uniform(*self.period)
        return Mesh(
            angle=rng.uniform(-math.pi / 4, math.pi / 4),
            period=period,
            spacing=period * rng.uniform(*SPACING),
            amplitude=period * rng.uniform(*AMPLITUDE),
            phase=rng.uniform(0, 2 * math.pi),
            offset=rng.uniform(0, period),
            thickness=scale * rng.uniform(*self.thickness),
            colour=tuple(int(c) for c in rng.integers(0, 256, 3)),  # type: ignore[arg-type]
            opacity=rng.uniform(*self.opacity),
        )

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        return self.sample(rng, image.shape[0]).apply(image)
