"""``faceforge visualize embeddings``: embed the faces of a few identities of any dataset with
any model, for a 2-D map (:mod:`faceforge.evaluation.embedding_plots`).

Identities are chosen at random (seeded) among those with at least two images, and at most
``per_identity`` images of each are embedded; images are aligned crops, fitted to the model's
input by ``resize`` when they have another size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.core.embedder import Embedder
from faceforge.data.images import load_images
from faceforge.evaluation.embedding_plots import choose_images
from faceforge.prepare.formats import open_source
from faceforge.prepare.pairs_file import identity_names


@dataclass
class IdentitySample:
    """Embeddings of the chosen faces; ``labels`` index ``names``."""

    embeddings: np.ndarray
    labels: np.ndarray
    names: list[str]


def embed_identities(
    src: str | Path,
    embedder: Embedder,
    *,
    identities: int = 10,
    per_identity: int = 20,
    resize: str | None = None,
    seed: int = 0,
) -> IdentitySample:
    """Embed the images :func:`choose_images` picks from the dataset at ``src``."""
    source = open_source(src)
    names = identity_names(source)
    picks = choose_images(source.labels, identities, per_identity, seed)
    indices = np.concatenate(picks)
    data = [source.encoded(int(i)) for i in indices]
    where = [source.where(int(i)) for i in indices]
    faces = load_images(data, where, embedder.input_size, resize)
    return IdentitySample(
        embeddings=embedder.embed(faces),
        labels=np.repeat(np.arange(len(picks)), [len(p) for p in picks]),
        names=[names[int(source.labels[p[0]])] for p in picks],
    )
