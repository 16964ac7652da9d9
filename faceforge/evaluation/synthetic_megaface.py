"""A MegaFace-style identification run on synthetic faces, embedded by a model.

Probes are photos of held-out synthetic identities (never used for training); distractors
are one photo each of other synthetic identities, rendered and embedded block by block so a
large distractor set never sits in memory as images.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from faceforge.core.embedder import Embedder
from faceforge.data.synthetic import HELD_OUT_OFFSET, SyntheticFaces
from faceforge.evaluation.identification import MegaFaceResult, megaface

#: first identity number of synthetic distractors (apart from training and held-out ids)
DISTRACTOR_OFFSET = 20_000_000
#: probe photos use sample indices from here on, apart from the verification pairs' photos
PROBE_INDEX_OFFSET = 1_000


def synthetic_probes(
    faces: SyntheticFaces, num_identities: int, images_per_identity: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (num_identities * images_per_identity, 112, 112, 3) photos and identity labels."""
    ids = np.repeat(np.arange(num_identities), images_per_identity)
    index = np.tile(np.arange(images_per_identity), num_identities) + PROBE_INDEX_OFFSET
    images = np.stack(
        [faces.render(HELD_OUT_OFFSET + int(i), int(k)) for i, k in zip(ids, index, strict=True)]
    )
    return images, ids


def synthetic_distractor_embeddings(
    embedder: Embedder,
    faces: SyntheticFaces,
    count: int,
    *,
    block: int = 256,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Raw embeddings of ``count`` single-photo distractor identities, one block at a
    time (flip TTA as the embedder's ``flip``)."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc="distractors", unit="img")
    try:
        for lo in range(0, count, block):
            ids = range(DISTRACTOR_OFFSET + lo, DISTRACTOR_OFFSET + min(count, lo + block))
            images = np.stack([faces.render(i, 0) for i in ids])
            yield embedder.embed_raw(images)
            if bar is not None:
                bar.update(len(images))
    finally:
        if bar is not None:
            bar.close()


def run_synthetic_megaface(
    embedder: Embedder,
    *,
    seed: int = 0,
    num_identities: int = 80,
    images_per_identity: int = 5,
    num_distractors: int = 10_000,
    progress: bool = False,
) -> MegaFaceResult:
    """Rank-k and TAR@FAR=1e-6 of ``embedder``'s model with synthetic probes among
    synthetic distractors (rendered 112x112; flip TTA as the embedder's ``flip``)."""
    faces = SyntheticFaces(seed)
    probe_images, probe_ids = synthetic_probes(faces, num_identities, images_per_identity)
    probes = embedder.embed_raw(probe_images)
    distractors = synthetic_distractor_embeddings(
        embedder, faces, num_distractors, progress=progress
    )
    return megaface(probes, probe_ids, distractors, num_distractors=num_distractors)
