"""Deterministic synthetic faces: a dataset and an LFW-like benchmark that need no download.

An identity is a vector of shape, colour and layout parameters (face outline, hair, brows,
eyes, nose, mouth, marks, glasses, beard) drawn from a generator seeded by
``(seed, identity)``. Each sample re-renders that identity under nuisance seeded by
``(seed, identity, index)``: head pose (yaw shifts the inner features, pitch and roll tilt the
head), scale and shift, expression (smile, open mouth, blinking, raised brows), background,
illumination gradient and colour cast, blur, sensor noise, occluders and JPEG compression.

The nuisance is strong enough that a randomly initialised network cannot verify identities
well, while the identity cues are stable enough that a trained one can, so training gains are
visible in minutes on a CPU.

>>> faces = SyntheticFaces(seed=0)
>>> faces.render(identity=3, index=0).shape
(112, 112, 3)
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from faceforge.evaluation.verification_set import VerificationSet

#: identities used for held-out verification pairs start here, far from training ids
HELD_OUT_OFFSET = 10_000_000
CANVAS = 112
#: photos per task when rendering in worker processes (smaller sets render in-process)
RENDER_CHUNK = 256


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


def _color(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
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
        iris=_color(rng, 20, 200),
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
        background=_color(rng, 0, 255),
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


def _pt(x: float, y: float) -> tuple[int, int]:
    """cv2 drawing with 4 fractional bits for anti-aliased sub-pixel geometry."""
    return round(x * 16), round(y * 16)


def _ellipse(img: np.ndarray, c, axes, angle, color, thickness=-1, start=0, end=360) -> None:
    cv2.ellipse(
        img,
        _pt(*c),
        (int(axes[0] * 16), int(axes[1] * 16)),
        angle,
        start,
        end,
        tuple(float(v) for v in color),
        thickness,
        cv2.LINE_AA,
        4,
    )


def _line(img: np.ndarray, a, b, color, thickness: int) -> None:
    cv2.line(img, _pt(*a), _pt(*b), tuple(float(v) for v in color), thickness, cv2.LINE_AA, 4)


def _poly(img: np.ndarray, points: np.ndarray, color, closed: bool = True, thickness=-1) -> None:
    pts = np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)
    color = tuple(float(v) for v in color)
    if thickness < 0:
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA, 4)
    else:
        cv2.polylines(img, [pts], closed, color, thickness, cv2.LINE_AA, 4)


@functools.cache
def _unit_grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [-0.5, 0.5), shape (CANVAS, CANVAS, 1) each (read-only)."""
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS - 0.5
    yy, xx = yy[..., None], xx[..., None]
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _background(n: Nuisance, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _unit_grid()
    grad = n.background_grad.astype(np.float32)
    img = n.background.astype(np.float32) + xx * grad + yy * grad[::-1]
    for _ in range(rng.integers(0, 4)):
        c = rng.uniform(0, CANVAS, 2)
        _ellipse(img, c, rng.uniform(5, 30, 2), rng.uniform(0, 180), _color(rng, 0, 255))
    return img


def _draw_face(img: np.ndarray, p: Identity, n: Nuisance) -> None:
    """Draw the head centred at the canvas centre in a frontal frame (pose is applied later,
    except yaw, which moves the inner features sideways the way a turning head does)."""
    cx, cy = CANVAS / 2, CANVAS / 2 + 6
    fx = cx + 7 * n.yaw  # inner features slide toward the turned side
    fy = cy + 4 * n.pitch
    squash = 1 - 0.25 * abs(n.yaw)
    skin = p.skin
    shade = skin * 0.72
    # hair behind the head (long styles)
    if p.hair_style in (2, 3):
        length = 62 if p.hair_style == 2 else 40
        _ellipse(img, (cx, cy + 4), (p.face_rx + 9 + p.hair_volume, length), 0, p.hair)
    # neck and ears
    _poly(
        img,
        np.array([[cx - 14, cy + 30], [cx + 14, cy + 30], [cx + 18, 120], [cx - 18, 120]]),
        shade,
    )
    for side in (-1, 1):
        if side * n.yaw < 0.6:
            _ellipse(
                img, (cx + side * (p.face_rx + 1), fy - 2), (p.ear_size * 0.6, p.ear_size), 0, shade
            )
    # face outline: upper half ellipse, lower half squeezed by the chin factor
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    ry = np.where(np.sin(t) > 0, p.face_ry * p.chin, p.face_ry)
    rx = p.face_rx * np.where(np.sin(t) > 0, 1 - 0.25 * np.sin(t) ** 4 * (p.chin < 0.95), 1)
    outline = np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])
    _poly(img, outline, skin)
    # beard (lower face) before features
    if p.beard:
        beard = outline[np.sin(t) > 0.25]
        top = fy + p.mouth_y - (8 if p.beard == 2 else -2)
        beard = np.vstack([beard, [[cx - p.face_rx * 0.8, top], [cx + p.face_rx * 0.8, top]]])
        hull = cv2.convexHull(beard.astype(np.float32)).reshape(-1, 2)
        _poly(img, hull, p.hair * 0.8 + skin * 0.2)
    # hair on top: cap above the hair line with a style-dependent fringe
    top_y = cy - p.face_ry - p.hair_volume
    hl = cy + p.hair_line
    if p.hair_style != 4:  # style 4: bald
        xs = np.linspace(cx - p.face_rx - 3, cx + p.face_rx + 3, 12)
        fringe = {
            0: 0 * xs,
            1: 6 * (xs - cx) / p.face_rx,
            2: -5 * np.cos((xs - cx) / p.face_rx * 2),
        }
        fr = fringe.get(p.hair_style, 4 * np.sin((xs - cx) / 6))
        cap = [[x, hl + f] for x, f in zip(xs, fr, strict=True)]
        cap += [
            [cx + p.face_rx + 4, cy - p.face_ry * 0.55],
            [cx, top_y],
            [cx - p.face_rx - 4, cy - p.face_ry * 0.55],
        ]
        _poly(img, np.array(cap)[::-1].copy(), p.hair)
        _ellipse(
            img,
            (cx, cy - p.face_ry * 0.55),
            (p.face_rx + 4, p.face_ry * 0.5 + p.hair_volume),
            0,
            p.hair,
            -1,
            180,
            360,
        )
    # eyebrows
    for side in (-1, 1):
        ex = fx + side * p.eye_dx * squash
        by = fy + p.eye_y - p.brow_dy - n.brow_raise
        half = p.brow_len / 2 * squash
        tilt = side * p.brow_tilt * half
        _line(img, (ex - half, by + tilt), (ex + half, by - tilt), p.hair * 0.6, p.brow_thick + 1)
    # eyes: sclera, iris, pupil; blinking flattens them
    for side in (-1, 1):
        ex, ey = fx + side * p.eye_dx * squash, fy + p.eye_y
        h = max(0.4, p.eye_h * (1 - n.blink))
        _ellipse(img, (ex, ey), (p.eye_w * squash, h), 0, (235, 235, 230))
        if n.blink < 0.7:
            r = min(h, p.eye_w) * 0.9
            _ellipse(img, (ex + n.yaw * 1.5, ey), (r, r), 0, p.iris)
            _ellipse(img, (ex + n.yaw * 1.5, ey), (r * 0.45, r * 0.45), 0, (10, 10, 10))
        _ellipse(img, (ex, ey), (p.eye_w * squash, h), 0, shade * 0.6, 1)
    # glasses
    if p.glasses:
        frame = (30, 30, 30) if p.glasses == 1 else (170, 140, 60)
        for side in (-1, 1):
            ex, ey = fx + side * p.eye_dx * squash, fy + p.eye_y
            _ellipse(img, (ex, ey), (p.eye_w + 4, p.eye_h + 4), 0, frame, 1 + p.glasses % 2)
        _line(
            img,
            (fx - p.eye_dx + p.eye_w + 3, fy + p.eye_y),
            (fx + p.eye_dx - p.eye_w - 3, fy + p.eye_y),
            frame,
            1,
        )
    # nose: bridge and base
    nb = fy + p.eye_y + p.nose_len + 6
    nx = fx + n.yaw * 3
    _poly(img, np.array([[fx, fy + p.eye_y + 3], [nx - 1, nb]]), shade, closed=False, thickness=1)
    _ellipse(img, (nx, nb), (p.nose_w * squash, 2.5), 0, shade * 0.85)
    # mouth: lips whose curvature follows the smile, opening shows a dark gap
    my = fy + p.mouth_y
    hw = p.mouth_w * squash
    xs = np.linspace(-hw, hw, 9)
    curve = n.smile * 4 * (1 - (xs / hw) ** 2)  # image y points down: corners rise
    upper = np.column_stack([fx + xs, my + curve - n.mouth_open * 3])
    lower = np.column_stack([fx + xs, my + curve + n.mouth_open * 5])
    if n.mouth_open > 0.15:
        _poly(img, np.vstack([upper, lower[::-1]]), (40, 20, 25))
    _poly(img, upper, p.lips, closed=False, thickness=p.lip_thick + 1)
    _poly(img, lower, p.lips, closed=False, thickness=p.lip_thick + 1)
    # marks (moles)
    for mx, my_, r in p.marks:
        _ellipse(img, (fx + mx * squash, fy + my_), (r, r), 0, shade * 0.45)


def _apply_pose(img: np.ndarray, n: Nuisance) -> np.ndarray:
    """Roll, scale and shift, plus a keystone warp: the far side of a turned (yaw) or tilted
    (pitch) head shrinks."""
    c, k = CANVAS / 2, 6.0
    src = np.float32([[0, 0], [CANVAS, 0], [CANVAS, CANVAS], [0, CANVAS]])
    right, left = k * max(n.yaw, 0), k * max(-n.yaw, 0)
    top, bottom = k * max(n.pitch, 0), k * max(-n.pitch, 0)
    dst = src + np.float32([[top, left], [-top, right], [-bottom, -right], [bottom, -left]])
    keystone = cv2.getPerspectiveTransform(src, dst)
    rot = cv2.getRotationMatrix2D((c, c), n.roll, n.scale)
    rot[:, 2] += n.shift
    full = np.vstack([rot, [0, 0, 1]]) @ keystone
    return cv2.warpPerspective(
        img,
        full,
        (CANVAS, CANVAS),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT101,
    )


def _photometric(img: np.ndarray, n: Nuisance, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _unit_grid()
    strength = np.float32(2 * n.light_strength)
    light = 1 + strength * (xx * np.float32(n.light_dir[0]) + yy * np.float32(n.light_dir[1]))
    img *= light * (n.gain * n.cast).astype(np.float32)
    if n.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), n.blur)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(n.noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def _occlude(img: np.ndarray, n: Nuisance, rng: np.random.Generator) -> None:
    if n.occluder == 1:  # sunglasses-like bar
        y = int(rng.uniform(42, 56))
        img[y : y + int(rng.uniform(8, 14)), 18:94] = rng.uniform(0, 60)
    elif n.occluder == 2:  # mask-like lower block
        y = int(rng.uniform(76, 90))
        img[y:, 20:92] = _color(rng, 60, 255)
    elif n.occluder == 3:  # hand / object blob
        _ellipse(
            img,
            rng.uniform(20, 92, 2),
            rng.uniform(8, 18, 2),
            rng.uniform(0, 180),
            _color(rng, 0, 255),
        )


class SyntheticFaces:
    """Renders identity ``i``'s ``k``-th photo deterministically for a given ``seed``."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def identity(self, identity: int) -> Identity:
        return sample_identity(np.random.default_rng([self.seed, identity, 0]))

    def render(self, identity: int, index: int) -> np.ndarray:
        """One 112x112 uint8 RGB photo of ``identity`` (same arguments -> same pixels)."""
        rng = np.random.default_rng([self.seed, identity, index + 1])
        person = self.identity(identity)
        nuisance = sample_nuisance(rng)
        face = _background(nuisance, rng)
        _draw_face(face, person, nuisance)
        face = _apply_pose(face, nuisance)
        _occlude(face, nuisance, rng)
        out = _photometric(face, nuisance, rng)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, nuisance.jpeg_quality])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out

    def render_many(self, jobs: Sequence[tuple[int, int]], workers: int = 1) -> np.ndarray:
        """Render ``(identity, index)`` photos into one (N, 112, 112, 3) array, in ``workers``
        processes when > 1 (rendering is pure CPU work in numpy/OpenCV)."""
        if workers <= 1 or len(jobs) < RENDER_CHUNK:
            return _render_chunk(self.seed, jobs)
        chunks = [jobs[i : i + RENDER_CHUNK] for i in range(0, len(jobs), RENDER_CHUNK)]
        # spawn, not fork: forking a process whose thread pools (OpenMP, OpenCV) are running
        # can deadlock the children
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded) as pool:
            parts = pool.map(_render_chunk, [self.seed] * len(chunks), chunks)
            return np.concatenate(list(parts))

    def verification_set(
        self, num_identities: int = 600, num_pairs: int = 6000, folds: int = 10, workers: int = 1
    ) -> VerificationSet:
        """LFW-like pairs of held-out identities: each fold holds half same, half different.

        Pairs are laid out fold by fold (contiguous, as LFW's pairs.txt), so the insightface
        10-fold protocol sees balanced folds. Every photo in the set is a distinct sample.
        """
        if num_pairs % (2 * folds):
            raise ValueError(f"num_pairs={num_pairs} must be a multiple of {2 * folds}")
        rng = np.random.default_rng([self.seed, 7919])
        per_fold = num_pairs // folds // 2
        next_index = np.zeros(num_identities, dtype=np.int64)
        jobs: list[tuple[int, int]] = []
        issame: list[bool] = []
        for _ in range(folds):
            for same in (True, False):
                for _ in range(per_fold):
                    a, b = rng.choice(num_identities, size=2, replace=False)
                    for person in (a, a if same else b):
                        next_index[person] += 1
                        jobs.append((HELD_OUT_OFFSET + int(person), int(next_index[person])))
                    issame.append(same)
        return VerificationSet(
            name="synthetic",
            images=self.render_many(jobs, workers),
            issame=np.array(issame, dtype=bool),
        )


def _single_threaded() -> None:
    cv2.setNumThreads(1)


def _render_chunk(seed: int, jobs: Sequence[tuple[int, int]]) -> np.ndarray:
    faces = SyntheticFaces(seed)
    return np.stack([faces.render(i, k) for i, k in jobs])
