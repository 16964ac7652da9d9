"""Synthetic presentation attacks: live photos turned into prints and screen replays.

No presentation-attack dataset can be downloaded everywhere, so tests and small experiments
build one. A *print* gets a colour shift towards the paper's limited gamut, paper texture
and halftone-like grain, a little blur and JPEG; a *replay* (phone or monitor screen) gets a
moire pattern from the pixel grid beating with the camera sensor, a specular glare, a dark
screen border, blur and JPEG. Every transform is a pure function of the image and a seeded
``numpy.random.Generator``, so the same seed gives the same attack, and each is usable as a
training augmentation (:func:`random_attack`).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from faceforge.registry import Registry

Attack = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _clip(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def colour_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Print gamut: lower contrast, lifted blacks, a warm or cool cast."""
    contrast = rng.uniform(0.6, 0.8)
    cast = rng.uniform(-18, 18, size=3)
    return _clip(image.astype(np.float32) * contrast + 40 + cast)


def paper_texture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fibre-like low-frequency noise plus fine halftone grain."""
    height, width = image.shape[:2]
    fibres = cv2.resize(rng.normal(0, 1, (height // 8 + 1, width // 8 + 1)), (width, height))
    grain = rng.normal(0, 1, (height, width))
    noise = rng.uniform(6, 12) * fibres + rng.uniform(6, 12) * grain
    return _clip(image.astype(np.float32) + noise[..., None])


def moire(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Interference stripes of a screen's pixel grid beating with the camera's."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(3.0, 7.0)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    stripes = np.sin(phase)[..., None] * rng.uniform(14, 26, size=3)
    return _clip(image.astype(np.float32) + stripes)


def glare(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft specular highlight of a glossy screen."""
    height, width = image.shape[:2]
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(0.2, 0.5) * max(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    return _clip(image.astype(np.float32) + rng.uniform(50, 110) * spot[..., None])


def screen_border(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The device's dark bezel along one or more edges."""
    out = image.copy()
    height, width = image.shape[:2]
    thickness = max(2, int(rng.uniform(0.04, 0.1) * min(height, width)))
    colour = rng.uniform(0, 35)
    for edge in np.flatnonzero(rng.random(4) < 0.6) if rng.random() < 0.9 else [0]:
        sides = (np.s_[:thickness], np.s_[-thickness:])
        region = (sides[edge % 2], slice(None)) if edge < 2 else (slice(None), sides[edge % 2])
        out[region] = colour
    return out


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus of re-photographing a flat medium."""
    return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.4))


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encoding at a low JPEG quality (colour order is irrelevant to the round trip)."""
    quality = int(rng.integers(35, 75))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else image


def print_attack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A printed photo held to the camera."""
    for step in (colour_shift, paper_texture, blur, jpeg):
        image = step(image, rng)
    return image


def replay_attack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photo shown on a phone or monitor screen."""
    for step in (moire, glare, screen_border, blur, jpeg):
        image = step(image, rng)
    return image


#: the attack types a synthetic presentation-attack set holds (class names of spoof types)
ATTACKS: Registry[np.ndarray] = Registry.of(
    "attack", {"print": print_attack, "replay": replay_attack}
)


def random_attack(image: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One attack of a random type: ``(type name, attacked image)``, for augmentation."""
    name = ATTACKS.names()[int(rng.integers(len(ATTACKS.names())))]
    return name, ATTACKS.get(name)(image, rng)
