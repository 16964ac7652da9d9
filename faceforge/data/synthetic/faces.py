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

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from faceforge.data.synthetic.drawing import (
    apply_pose,
    draw_background,
    draw_face,
    occlude,
    photometric,
)
from faceforge.data.synthetic.people import Identity, sample_identity, sample_nuisance
from faceforge.data.verification_set import VerificationSet

#: identities used for held-out verification pairs start here, far from training ids
HELD_OUT_OFFSET = 10_000_000
#: photos per task when rendering in worker processes (smaller sets render in-process)
RENDER_CHUNK = 256


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
        face = draw_background(nuisance, rng)
        draw_face(face, person, nuisance)
        face = apply_pose(face, nuisance)
        occlude(face, nuisance, rng)
        out = photometric(face, nuisance, rng)
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


def render_workers() -> int:
    """Processes used to pre-render synthetic images: every core (rendering is CPU-bound)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
