"""Synthetic faces as a training set: identity ``i`` has images ``0..per_identity-1``."""

from __future__ import annotations

import numpy as np

from faceforge.data.synthetic import SyntheticFaces


class SyntheticReader:
    """Renders image ``k`` of identity ``i`` on access (2-3 ms each), or, with ``cache``,
    renders the whole set once up front and keeps it in memory (37 KB per image): cheaper
    whenever training sees every image more than once."""

    def __init__(
        self,
        faces: SyntheticFaces,
        num_identities: int,
        per_identity: int,
        cache: bool = False,
        workers: int = 1,
    ) -> None:
        self.faces = faces
        self.per_identity = per_identity
        self.labels = np.repeat(np.arange(num_identities, dtype=np.int64), per_identity)
        self._images: np.ndarray | None = None
        if cache:
            jobs = [divmod(i, per_identity) for i in range(len(self.labels))]
            self._images = faces.render_many(jobs, workers)

    @property
    def num_classes(self) -> int:
        return len(self.labels) // self.per_identity

    def __len__(self) -> int:
        return len(self.labels)

    def _render(self, index: int) -> np.ndarray:
        identity, k = divmod(index, self.per_identity)
        return self.faces.render(identity, k)

    def load(self, index: int) -> np.ndarray:
        return self._images[index] if self._images is not None else self._render(index)
