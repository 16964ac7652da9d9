"""FaceDataset's start check: photos that were never aligned are named before training."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.data.dataset import FaceDataset
from faceforge.data.transforms import Compose
from faceforge.errors import DataError


class InMemory:
    """A reader over images held in memory; ``None`` stands for an unreadable file."""

    def __init__(self, images: list[np.ndarray | None]) -> None:
        self.images = images
        self.labels = np.arange(len(images)) % 2

    @property
    def num_classes(self) -> int:
        return 2

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> np.ndarray:
        if self.images[index] is None:
            raise DataError(f"image {index}: cannot decode")
        return self.images[index]


def images(*sizes: tuple[int, int] | None, count: int = 20) -> list[np.ndarray | None]:
    """``count`` images, the i-th of ``sizes[i]`` where given, else 112x112."""
    shapes = [*sizes, *[(112, 112)] * (count - len(sizes))]
    return [None if s is None else np.zeros((*s, 3), np.uint8) for s in shapes]


def warning(data: list[np.ndarray | None], input_size=(112, 112)) -> str | None:
    return FaceDataset(InMemory(data), Compose(()), input_size).unaligned_warning()


@pytest.mark.parametrize("input_size", [(112, 112), (112, 96)])
def test_aligned_crops_pass(input_size) -> None:
    assert warning(images(), input_size) is None  # 112x112 crops also feed 112x96 models
    assert warning(images(*[(112, 96)] * 20), (112, 96)) is None


def test_photos_are_named_with_the_align_command() -> None:
    assert warning(images(*[(171, 256)] * 20)) == (
        "8 of 8 sampled training images are not 112x112 face crops (image 0 is 171x256); "
        "training scales each to cover 112x112 and cuts out the centre, so photos must be "
        "aligned first: faceforge align SRC DST --size 112 (aligned crops of another size "
        "are fine)"
    )
    assert "--size 112 --width 96 " in warning(images((250, 250)), (112, 96))


def test_the_sample_spans_the_dataset_and_skips_unreadable_images() -> None:
    data = images(count=20)  # sampled: indices 0, 2, 5, 8, 10, 13, 16, 19
    data[5] = data[13] = data[7] = np.zeros((250, 250, 3), np.uint8)  # 7 is not sampled
    data[8] = None
    assert warning(data).startswith(
        "2 of 7 sampled training images are not 112x112 face crops (image 5 is 250x250)"
    )
