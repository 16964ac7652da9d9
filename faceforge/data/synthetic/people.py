"""Who a synthetic face is (:class:`Identity`) and how one photo of them varies
(:class:`Nuisance`), each drawn from a seeded numpy generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Identity:
    """The parameters that make one synthetic person recognisable."""

    face_rx: float
    face_ry: float
    chin: float
    skin: np.ndarray
    hair: np.ndarray
    hair_style: int
    hair_line: float
    hair_volume: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    iris: np.ndarray
    brow_dy: float
    brow_tilt: float
    brow_thick: int
    brow_len: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thick: int
    lips: np.ndarray
    marks: np.ndarray
    glasses: int
    beard: int
    ear_size: float


def random_color(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=3)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity's parameters."""
    tone = rng.uniform(0.25, 1.0)
    skin = np.array([225, 185, 150]) * tone + rng.uniform(-20, 20, 3)
    hair = rng.choice([0.1, 0.35, 0.6, 0.9]) * np.array([200, 160, 110]) + rng.uniform(-25, 25, 3)
    n_marks = rng.integers(0, 4)
    marks = np.column_stack(
        [
            rng.uniform(-28, 28, n_marks),
            rng.uniform(-15, 35, n_marks),
            rng.uniform(1.2, 2.8, n_marks),
        ]
    )
    return Identity(
        face_rx=rng.uniform(30, 42),
        face_ry=rng.uniform(42, 54),
        chin=rng.uniform(0.75, 1.15),
        skin=np.clip(skin, 20, 255),
        hair=np.clip(hair, 5, 255),
        hair_style=int(rng.integers(0, 5)),
        hair_line=rng.uniform(-34, -18),
        hair_volume=rng.uniform(0, 10),
        eye_dx=rng.uniform(14, 22),
        eye_y=rng.uniform(-12, -2),
        eye_w=rng.uniform(5, 9),
        eye_h=rng.uniform(2.2, 4.5),
        iris=random_color(rng, 20, 200),
        brow_dy=rng.uniform(6, 12),
        brow_tilt=rng.uniform(-0.35, 0.35),
        brow_thick=int(rng.integers(1, 5)),
        brow_len=rng.uniform(8, 15),
        nose_len=rng.uniform(10, 22),
        nose_w=rng.uniform(4, 10),
        mouth_y=rng.uniform(24, 34),
        mouth_w=rng.uniform(8, 17),
        lip_thick=int(rng.integers(1, 5)),
        lips=np.clip(skin * rng.uniform(0.5, 0.9) + np.array([40, 0, 0]), 0, 255),
        marks=marks,
        glasses=int(rng.choice(3, p=[0.7, 0.15, 0.15])),
        beard=int(rng.choice(3, p=[0.65, 0.2, 0.15])),
        ear_size=rng.uniform(5, 10),
    )


@dataclass(frozen=True)
class Nuisance:
    """Per-sample variation that must not change who the face is."""

    yaw: float
    pitch: float
    roll: float
    scale: float
    shift: np.ndarray
    smile: float
    mouth_open: float
    blink: float
    brow_raise: float
    background: np.ndarray
    background_grad: np.ndarray
    light_dir: np.ndarray
    light_strength: float
    gain: float
    cast: np.ndarray
    blur: float
    noise: float
    occluder: int
    jpeg_quality: int


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    """Draw one sample's pose, expression, lighting and sensor conditions."""
    angle = rng.uniform(0, 2 * np.pi)
    return Nuisance(
        yaw=rng.uniform(-0.8, 0.8),
        pitch=rng.uniform(-0.8, 0.8),
        roll=rng.normal(0, 6),
        scale=rng.uniform(0.9, 1.1),
        shift=rng.normal(0, 3, 2),
        smile=rng.uniform(-0.3, 1),
        mouth_open=max(0.0, rng.uniform(-1, 1)),
        blink=rng.uniform(0, 1) if rng.random() < 0.15 else 0.0,
        brow_raise=rng.uniform(-2, 3),
        background=random_color(rng, 0, 255),
        background_grad=rng.uniform(-60, 60, 3),
        light_dir=np.array([np.cos(angle), np.sin(angle)]),
        light_strength=rng.uniform(0, 0.4),
        gain=rng.uniform(0.7, 1.25),
        cast=rng.uniform(0.85, 1.15, 3),
        blur=rng.uniform(0, 1.2) if rng.random() < 0.35 else 0.0,
        noise=rng.uniform(0, 5),
        occluder=int(rng.choice(4, p=[0.88, 0.04, 0.04, 0.04])),
        jpeg_quality=int(rng.integers(50, 96)),
    )
