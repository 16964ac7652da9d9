"""The ID-photo mesh: pixels change along the predicted wave lines, with the given period,
and nowhere else; random meshes stay within their configured ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceforge.data.mesh_overlay import Mesh, MeshOverlay

GREY = np.full((112, 112, 3), 128, np.uint8)


def horizontal_mesh(**changes) -> Mesh:
    values = dict(angle=0.0, period=16.0, spacing=11.0, amplitude=2.5, phase=0.7, offset=3.0,
                  thickness=2.0, colour=(20, 40, 200), opacity=1.0)  # fmt: skip
    return Mesh(**{**values, **changes})


def wave_rows(mesh: Mesh, x: np.ndarray, phase: float) -> np.ndarray:
    """y of every line of one family at columns ``x``: offset + k spacing + A sin(..)."""
    base = mesh.offset + mesh.amplitude * np.sin(2 * math.pi * x / mesh.period + phase)
    k = np.arange(-2, 112 // int(mesh.spacing) + 3)
    return base[None, :] + mesh.spacing * k[:, None]


def test_pixels_change_on_the_wave_lines_and_only_near_them() -> None:
    mesh = horizontal_mesh()
    out = mesh.apply(GREY)
    changed = (out != GREY).any(axis=2)
    x = np.arange(112)
    distance = np.full((112, 112), np.inf)
    y = np.arange(112)[:, None]
    for phase in (mesh.phase, mesh.phase + math.pi):
        for rows in wave_rows(mesh, x, phase):
            on_line = np.rint(rows).astype(int)
            inside = (on_line >= 0) & (on_line < 112)
            assert changed[on_line[inside], x[inside]].all()  # the predicted line is drawn
            assert (out[on_line[inside], x[inside]] == mesh.colour).all()
            distance = np.minimum(distance, np.abs(y - rows[None, :]))
    assert not changed[distance > mesh.thickness / 2 + 0.5].any()  # nothing off the lines


@pytest.mark.parametrize("period", [12, 20, 31])
def test_the_pattern_repeats_with_the_period(period: int) -> None:
    changed = (horizontal_mesh(period=float(period)).apply(GREY) != GREY).any(axis=2)
    assert np.array_equal(changed[:, period:], changed[:, :-period])
    assert not all(np.array_equal(changed[:, s:], changed[:, :-s]) for s in range(1, period))


def test_a_turned_mesh_repeats_along_its_direction() -> None:
    mesh = horizontal_mesh(angle=math.atan2(3, 4), period=15.0)  # cos 0.8, sin 0.6
    covered = mesh.coverage(112, 112)
    # one period along the line is (12, 9) pixels: the coverage repeats exactly there
    np.testing.assert_allclose(covered[9:, 12:], covered[:-9, :-12], atol=1e-5)


def test_opacity_blends_the_colour() -> None:
    mesh = horizontal_mesh(opacity=0.5)
    coverage = mesh.coverage(112, 112)
    full = coverage == 1
    expected = np.rint(0.5 * 128 + 0.5 * np.array(mesh.colour))
    assert (mesh.apply(GREY)[full] == expected).all()


def test_random_meshes_stay_in_their_ranges() -> None:
    overlay = MeshOverlay(1.0, period=(10, 20), thickness=(1, 2), opacity=(0.4, 0.6))
    for seed in range(50):
        mesh = overlay.sample(np.random.default_rng(seed), height=224)  # sizes scale by 2
        assert 20 <= mesh.period <= 40 and 2 <= mesh.thickness <= 4
        assert 0.4 <= mesh.opacity <= 0.6 and abs(mesh.angle) <= math.pi / 4
        assert 0.5 * mesh.period <= mesh.spacing <= 0.9 * mesh.period


def test_probability_and_determinism() -> None:
    assert MeshOverlay(0.0)(GREY, np.random.default_rng(0)) is GREY
    a = MeshOverlay(1.0)(GREY, np.random.default_rng([3, 1]))
    assert np.array_equal(a, MeshOverlay(1.0)(GREY, np.random.default_rng([3, 1])))
    assert not np.array_equal(a, MeshOverlay(1.0)(GREY, np.random.default_rng([3, 2])))
