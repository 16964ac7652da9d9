"""Shared base for readers whose samples are image files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_io import read_image


class FileListReader:
    """Samples are ``paths[i]`` with label ``labels[i]``."""

    def __init__(self, paths: list[Path], labels: np.ndarray) -> None:
        self.paths = paths
        self.labels = labels

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])
