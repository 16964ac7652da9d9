"""Shared base for readers whose samples are image files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS, read_image


class FileListReader:
    """Samples are ``paths[i]`` with label ``labels[i]``; images declaring more than
    ``max_pixels`` are refused before decoding."""

    def __init__(
        self, paths: list[Path], labels: np.ndarray, max_pixels: int = MAX_DATASET_PIXELS
    ) -> None:
        self.paths = paths
        self.labels = labels
        self.max_pixels = max_pixels

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        return read_image(self.paths[index], self.max_pixels)
