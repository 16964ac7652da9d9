"""Rendering one synthetic photo with OpenCV: background, face, pose, occluders, light."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from faceforge.data.synthetic.people import Identity, Nuisance, random_color

CANVAS = 112


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


def draw_background(n: Nuisance, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _unit_grid()
    grad = n.background_grad.astype(np.float32)
    img = n.background.astype(np.float32) + xx * grad + yy * grad[::-1]
    for _ in range(rng.integers(0, 4)):
        c = rng.uniform(0, CANVAS, 2)
        _ellipse(img, c, rng.uniform(5, 30, 2), rng.uniform(0, 180), random_color(rng, 0, 255))
    return img


@dataclass(frozen=True)
class _Frame:
    """Where a face's parts go: the head centre, the inner features' centre (moved by yaw
    and pitch), the horizontal squash of a turned head, and the skin colours."""

    cx: float
    cy: float
    fx: float
    fy: float
    squash: float
    skin: np.ndarray
    shade: np.ndarray

    @classmethod
    def of(cls, p: Identity, n: Nuisance) -> _Frame:
        cx, cy = CANVAS / 2, CANVAS / 2 + 6
        return cls(
            cx=cx,
            cy=cy,
            fx=cx + 7 * n.yaw,  # inner features slide toward the turned side
            fy=cy + 4 * n.pitch,
            squash=1 - 0.25 * abs(n.yaw),
            skin=p.skin,
            shade=p.skin * 0.72,
        )


def draw_face(img: np.ndarray, p: Identity, n: Nuisance) -> None:
    """Draw the head centred at the canvas centre in a frontal frame (pose is applied later,
    except yaw, which moves the inner features sideways the way a turning head does)."""
    f = _Frame.of(p, n)
    _draw_long_hair(img, p, f)
    _draw_neck_and_ears(img, p, n, f)
    outline = _draw_outline(img, p, f)
    if p.beard:
        _draw_beard(img, p, f, outline)
    if p.hair_style != 4:  # style 4: bald
        _draw_hair_cap(img, p, f)
    _draw_brows(img, p, n, f)
    _draw_eyes(img, p, n, f)
    if p.glasses:
        _draw_glasses(img, p, f)
    _draw_nose(img, p, n, f)
    _draw_mouth(img, p, n, f)
    for mx, my, r in p.marks:  # moles
        _ellipse(img, (f.fx + mx * f.squash, f.fy + my), (r, r), 0, f.shade * 0.45)


def _draw_long_hair(img: np.ndarray, p: Identity, f: _Frame) -> None:
    """Hair that falls behind the head (long styles only)."""
    if p.hair_style in (2, 3):
        length = 62 if p.hair_style == 2 else 40
        _ellipse(img, (f.cx, f.cy + 4), (p.face_rx + 9 + p.hair_volume, length), 0, p.hair)


def _draw_neck_and_ears(img: np.ndarray, p: Identity, n: Nuisance, f: _Frame) -> None:
    """The neck, and each ear the head has not turned away."""
    cx, cy = f.cx, f.cy
    neck = np.array([[cx - 14, cy + 30], [cx + 14, cy + 30], [cx + 18, 120], [cx - 18, 120]])
    _poly(img, neck, f.shade)
    for side in (-1, 1):
        if side * n.yaw < 0.6:
            centre = (cx + side * (p.face_rx + 1), f.fy - 2)
            _ellipse(img, centre, (p.ear_size * 0.6, p.ear_size), 0, f.shade)


def _draw_outline(img: np.ndarray, p: Identity, f: _Frame) -> np.ndarray:
    """The face: an upper half ellipse and a lower half squeezed by the chin factor; returns
    the outline's points, angle order (the beard follows its lower part)."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    ry = np.where(np.sin(t) > 0, p.face_ry * p.chin, p.face_ry)
    rx = p.face_rx * np.where(np.sin(t) > 0, 1 - 0.25 * np.sin(t) ** 4 * (p.chin < 0.95), 1)
    outline = np.column_stack([f.cx + rx * np.cos(t), f.cy + ry * np.sin(t)])
    _poly(img, outline, f.skin)
    return outline


def _draw_beard(img: np.ndarray, p: Identity, f: _Frame, outline: np.ndarray) -> None:
    """The lower face below a line near the mouth (drawn before the features)."""
    t = np.linspace(0, 2 * np.pi, len(outline), endpoint=False)
    top = f.fy + p.mouth_y - (8 if p.beard == 2 else -2)
    beard = np.vstack(
        [outline[np.sin(t) > 0.25], [[f.cx - p.face_rx * 0.8, top], [f.cx + p.face_rx * 0.8, top]]]
    )
    hull = cv2.convexHull(beard.astype(np.float32)).reshape(-1, 2)
    _poly(img, hull, p.hair * 0.8 + f.skin * 0.2)


def _draw_hair_cap(img: np.ndarray, p: Identity, f: _Frame) -> None:
    """Hair on top: a cap above the hair line with a style-dependent fringe."""
    cx, cy = f.cx, f.cy
    hair_line = cy + p.hair_line
    xs = np.linspace(cx - p.face_rx - 3, cx + p.face_rx + 3, 12)
    fringes = {
        0: 0 * xs,
        1: 6 * (xs - cx) / p.face_rx,
        2: -5 * np.cos((xs - cx) / p.face_rx * 2),
    }
    fringe = fringes.get(p.hair_style, 4 * np.sin((xs - cx) / 6))
    cap = [[x, hair_line + y] for x, y in zip(xs, fringe, strict=True)]
    cap += [
        [cx + p.face_rx + 4, cy - p.face_ry * 0.55],
        [cx, cy - p.face_ry - p.hair_volume],
        [cx - p.face_rx - 4, cy - p.face_ry * 0.55],
    ]
    _poly(img, np.array(cap)[::-1].copy(), p.hair)
    crown = (p.face_rx + 4, p.face_ry * 0.5 + p.hair_volume)
    _ellipse(img, (cx, cy - p.face_ry * 0.55), crown, 0, p.hair, -1, 180, 360)


def _draw_brows(img: np.ndarray, p: Identity, n: Nuisance, f: _Frame) -> None:
    for side in (-1, 1):
        ex = f.fx + side * p.eye_dx * f.squash
        by = f.fy + p.eye_y - p.brow_dy - n.brow_raise
        half = p.brow_len / 2 * f.squash
        tilt = side * p.brow_tilt * half
        _line(img, (ex - half, by + tilt), (ex + half, by - tilt), p.hair * 0.6, p.brow_thick + 1)


def _draw_eyes(img: np.ndarray, p: Identity, n: Nuisance, f: _Frame) -> None:
    """Sclera, iris and pupil; blinking flattens them."""
    for side in (-1, 1):
        ex, ey = f.fx + side * p.eye_dx * f.squash, f.fy + p.eye_y
        h = max(0.4, p.eye_h * (1 - n.blink))
        _ellipse(img, (ex, ey), (p.eye_w * f.squash, h), 0, (235, 235, 230))
        if n.blink < 0.7:
            r = min(h, p.eye_w) * 0.9
            _ellipse(img, (ex + n.yaw * 1.5, ey), (r, r), 0, p.iris)
            _ellipse(img, (ex + n.yaw * 1.5, ey), (r * 0.45, r * 0.45), 0, (10, 10, 10))
        _ellipse(img, (ex, ey), (p.eye_w * f.squash, h), 0, f.shade * 0.6, 1)


def _draw_glasses(img: np.ndarray, p: Identity, f: _Frame) -> None:
    frame = (30, 30, 30) if p.glasses == 1 else (170, 140, 60)
    ey = f.fy + p.eye_y
    for side in (-1, 1):
        ex = f.fx + side * p.eye_dx * f.squash
        _ellipse(img, (ex, ey), (p.eye_w + 4, p.eye_h + 4), 0, frame, 1 + p.glasses % 2)
    bridge = (f.fx - p.eye_dx + p.eye_w + 3, ey), (f.fx + p.eye_dx - p.eye_w - 3, ey)
    _line(img, *bridge, frame, 1)


def _draw_nose(img: np.ndarray, p: Identity, n: Nuisance, f: _Frame) -> None:
    """Bridge and base."""
    base_y = f.fy + p.eye_y + p.nose_len + 6
    base_x = f.fx + n.yaw * 3
    bridge = np.array([[f.fx, f.fy + p.eye_y + 3], [base_x - 1, base_y]])
    _poly(img, bridge, f.shade, closed=False, thickness=1)
    _ellipse(img, (base_x, base_y), (p.nose_w * f.squash, 2.5), 0, f.shade * 0.85)


def _draw_mouth(img: np.ndarray, p: Identity, n: Nuisance, f: _Frame) -> None:
    """Lips whose curvature follows the smile; an open mouth shows a dark gap."""
    my = f.fy + p.mouth_y
    hw = p.mouth_w * f.squash
    xs = np.linspace(-hw, hw, 9)
    curve = n.smile * 4 * (1 - (xs / hw) ** 2)  # image y points down: corners rise
    upper = np.column_stack([f.fx + xs, my + curve - n.mouth_open * 3])
    lower = np.column_stack([f.fx + xs, my + curve + n.mouth_open * 5])
    if n.mouth_open > 0.15:
        _poly(img, np.vstack([upper, lower[::-1]]), (40, 20, 25))
    _poly(img, upper, p.lips, closed=False, thickness=p.lip_thick + 1)
    _poly(img, lower, p.lips, closed=False, thickness=p.lip_thick + 1)


def apply_pose(img: np.ndarray, n: Nuisance) -> np.ndarray:
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


def photometric(img: np.ndarray, n: Nuisance, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _unit_grid()
    strength = np.float32(2 * n.light_strength)
    light = 1 + strength * (xx * np.float32(n.light_dir[0]) + yy * np.float32(n.light_dir[1]))
    img *= light * (n.gain * n.cast).astype(np.float32)
    if n.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), n.blur)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(n.noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def occlude(img: np.ndarray, n: Nuisance, rng: np.random.Generator) -> None:
    if n.occluder == 1:  # sunglasses-like bar
        y = int(rng.uniform(42, 56))
        img[y : y + int(rng.uniform(8, 14)), 18:94] = rng.uniform(0, 60)
    elif n.occluder == 2:  # mask-like lower block
        y = int(rng.uniform(76, 90))
        img[y:, 20:92] = random_color(rng, 60, 255)
    elif n.occluder == 3:  # hand / object blob
        _ellipse(
            img,
            rng.uniform(20, 92, 2),
            rng.uniform(8, 18, 2),
            rng.uniform(0, 180),
            random_color(rng, 0, 255),
        )
