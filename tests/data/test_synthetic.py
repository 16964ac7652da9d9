"""Synthetic faces: deterministic, identity-consistent, held-out pairs laid out like LFW."""

from __future__ import annotations

import numpy as np

from faceforge.data.synthetic import HELD_OUT_OFFSET, SyntheticFaces


def test_render_is_deterministic_and_seeded() -> None:
    a, b = SyntheticFaces(seed=1), SyntheticFaces(seed=1)
    img = a.render(5, 2)
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8
    assert np.array_equal(img, b.render(5, 2))
    assert not np.array_equal(img, SyntheticFaces(seed=2).render(5, 2))
    assert not np.array_equal(img, a.render(5, 3))


def test_identity_parameters_do_not_depend_on_the_sample() -> None:
    faces = SyntheticFaces(0)
    first, again = faces.identity(7), faces.identity(7)
    assert first.face_rx == again.face_rx and np.array_equal(first.skin, again.skin)
    assert faces.identity(8).face_rx != first.face_rx


def test_images_vary_in_content_and_use_the_range() -> None:
    faces = SyntheticFaces(0)
    imgs = np.stack([faces.render(i, k) for i in range(4) for k in range(4)]).astype(np.float32)
    assert imgs.std() > 30
    # two photos of one person differ (nuisance), in more than JPEG noise
    assert np.abs(imgs[0] - imgs[1]).mean() > 10


def test_same_identity_is_closer_than_different_in_pixel_space_on_average() -> None:
    """A weak sanity check on the identity signal: centred, downscaled faces of the same
    person correlate more than those of different people."""
    faces = SyntheticFaces(0)

    def vec(i: int, k: int) -> np.ndarray:
        small = faces.render(i, k)[28:100, 28:84].astype(np.float32).mean(2)
        small = small - small.mean()
        return small.ravel() / np.linalg.norm(small)

    same = [vec(i, 0) @ vec(i, 1) for i in range(30)]
    diff = [vec(i, 0) @ vec(i + 30, 1) for i in range(30)]
    assert np.mean(same) > np.mean(diff)


def test_verification_set_layout() -> None:
    vset = SyntheticFaces(3).verification_set(num_identities=20, num_pairs=40, folds=10)
    assert vset.images.shape == (80, 112, 112, 3)
    # each fold: 2 same then 2 different
    assert vset.issame.tolist() == [True, True, False, False] * 10
    assert HELD_OUT_OFFSET > 1_000_000


def test_parallel_rendering_matches_serial() -> None:
    faces = SyntheticFaces(4)
    jobs = [(i % 7, i) for i in range(300)]
    parallel = faces.render_many(jobs, workers=2)
    assert parallel.shape == (300, 112, 112, 3)
    assert np.array_equal(parallel[::37], np.stack([faces.render(i, k) for i, k in jobs[::37]]))
