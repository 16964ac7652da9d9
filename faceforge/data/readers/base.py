"""The interface every storage reader implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Reader(Protocol):
    """Random access to (image, label) samples; images decode to uint8 HxWx3 RGB."""

    #: integer label of every sample, shape (len,)
    labels: np.ndarray

    @property
    def num_classes(self) -> int: ...

    def __len__(self) -> int: ...

    def load(self, index: int) -> np.ndarray:
        """Decode sample ``index``; raises :class:`faceforge.errors.DataError` naming it."""
        ...
