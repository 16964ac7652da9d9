"""A 1:1 verification set: image pairs with same/different labels, decoded in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.errors import DataError


@dataclass
class VerificationSet:
    """Pairs of face images as insightface's ``.bin`` files hold them.

    ``images`` is uint8 (2N, H, W, 3) RGB; pair ``i`` is ``images[2i]`` and ``images[2i+1]``
    and ``issame[i]`` says whether both show the same person.
    """

    name: str
    images: np.ndarray
    issame: np.ndarray

    def __post_init__(self) -> None:
        images, issame = self.images, np.asarray(self.issame)
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            kind = getattr(images, "dtype", type(images).__name__)
            raise DataError(f"verification set {self.name!r}: images must be uint8, got {kind}")
        if images.ndim != 4 or images.shape[3] != 3:
            raise DataError(
                f"verification set {self.name!r}: images must have shape (2N, H, W, 3), "
                f"got {images.shape}"
            )
        if images.shape[0] == 0 or images.shape[0] % 2:
            raise DataError(
                f"verification set {self.name!r}: needs an even, non-zero number of images "
                f"(two per pair), got {images.shape[0]}"
            )
        if issame.dtype != np.bool_:
            if issame.dtype.kind not in "iu" or not np.isin(issame, (0, 1)).all():
                raise DataError(
                    f"verification set {self.name!r}: issame must be booleans, got {issame.dtype}"
                )
            issame = issame.astype(bool)
        if issame.shape != (images.shape[0] // 2,):
            raise DataError(
                f"verification set {self.name!r}: {images.shape[0]} images make "
                f"{images.shape[0] // 2} pairs but issame has shape {issame.shape}"
            )
        self.issame = issame

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    def __len__(self) -> int:
        return self.num_pairs
