"""Training dataset: reader -> fit to the model input -> augment -> uint8 CHW tensor,
reproducibly. Images of another size are scaled to cover the input and centre-cropped, so a
112x112 ArcFace crop feeds a 112x96 model as the SphereFace-style crop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from faceforge.data.images import fit_image
from faceforge.data.readers import Reader
from faceforge.data.transforms import Compose
from faceforge.errors import DataError

#: how many images are drawn to stand in for an unreadable one before training stops
STAND_IN_TRIES = 16


class Sample(NamedTuple):
    """One training sample: ``image`` uint8 (3, S, S) and its ``label``."""

    image: torch.Tensor
    label: int
    #: unreadable images this sample stands in for (``skip_corrupt``)
    replaces: tuple[int, ...] = ()


class FaceDataset(Dataset):
    """Samples are :class:`Sample` ``(image uint8 (3, S, S), label)``. With
    ``skip_corrupt`` an unreadable image is replaced by another image of the dataset
    (:meth:`stand_in`) instead of raising, so every batch keeps its size.

    Augmentation randomness is seeded by ``(seed, epoch, index)``; call :meth:`set_epoch`.
    """

    def __init__(
        self,
        reader: Reader,
        transform: Compose,
        input_size: tuple[int, int] = (112, 112),
        seed: int = 0,
        skip_corrupt: bool = False,
    ) -> None:
        self.reader = reader
        self.transform = transform
        self.input_size = input_size
        self.seed = seed
        self.skip_corrupt = skip_corrupt
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.reader)

    def unaligned_warning(self, samples: int = 8) -> str | None:
        """A warning when images spread over the dataset are not face crops of the input
        size (or the square crop a narrower input is cut from): then they are most likely
        photos that were never aligned, which train a poor model without an error."""
        height, width = self.input_size
        crops = {(height, width), (height, height)}
        sizes = {}
        for index in np.unique(np.linspace(0, len(self) - 1, samples).astype(int)).tolist():
            try:  # an unreadable image is reported (or stood in for) by training itself
                sizes[index] = self.reader.load(index).shape[:2]
            except DataError:
                continue
        odd = {index: size for index, size in sizes.items() if size not in crops}
        if not odd:
            return None
        index, (h, w) = next(iter(odd.items()))
        size_options = f"--size {height}" + (f" --width {width}" if width != height else "")
        return (
            f"{len(odd)} of {len(sizes)} sampled training images are not {height}x{width} face "
            f"crops (image {index} is {h}x{w}); training scales each to cover {height}x{width} "
            "and cuts out the centre, so photos must be aligned first: faceforge align SRC DST "
            f"{size_options} (aligned crops of another size are fine)"
        )

    def __getitem__(self, index: int) -> Sample:
        try:
            return self._sample(index)
        except DataError as exc:
            if not self.skip_corrupt:
                raise DataError(f"{exc}; data.skip_corrupt=true skips unreadable images") from None
        return self.stand_in(index)

    def stand_in(self, index: int) -> Sample:
        """A readable image of the dataset, with its own label, in place of unreadable
        ``index``. Batches keep their size, which every process of a distributed step needs
        (the DDP and Partial FC collectives exchange equal shapes), and the step counter keeps
        counting batches of the sampler. The draw is seeded by ``(seed, epoch, index)``, so a
        resumed run draws the same images."""
        unreadable = [index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        for candidate in rng.integers(len(self), size=STAND_IN_TRIES).tolist():
            try:
                return self._sample(candidate)._replace(replaces=tuple(unreadable))
            except DataError:
                unreadable.append(candidate)
        raise DataError(
            f"image {index} is unreadable, and so were the {STAND_IN_TRIES} images drawn to "
            "stand in for it: most of the dataset cannot be read (faceforge inspect DATASET "
            "checks it)"
        )

    def _sample(self, index: int) -> Sample:
        image = self.reader.load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = fit_image(image, self.input_size, "center-crop", str(index))
        image = self.transform(image, rng)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return Sample(tensor, int(self.reader.labels[index]))


@dataclass
class Batch:
    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    #: dataset indices of unreadable images that other images stand in for
    skipped: tuple[int, ...] = ()

    def pin_memory(self, device: str | None = None) -> Batch:
        """The batch in page-locked memory: DataLoader's pin-memory thread calls this, so
        host-to-device copies can run asynchronously."""
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped)


def collate_faces(samples: Sequence[Sample]) -> Batch:
    """Stack samples, recording the unreadable images they stand in for."""
    images = torch.stack([sample.image for sample in samples])
    labels = torch.tensor([sample.label for sample in samples], dtype=torch.long)
    return Batch(images, labels, tuple(i for sample in samples for i in sample.replaces))


class EpochSampler(Sampler[int]):
    """A permutation per epoch seeded by ``(seed, epoch)``, sharded by rank, optionally
    starting after ``start`` samples of this rank's share (exact mid-epoch resume).

    Every rank gets ``ceil(n / world_size)`` indices (the permutation is padded by wrapping),
    so ranks step in lockstep.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    @property
    def per_rank(self) -> int:
        return -(-self.size // self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def indices(self) -> np.ndarray:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        total = self.per_rank * self.world_size
        perm = np.resize(perm, total)  # wraps around to pad
        return perm[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start
