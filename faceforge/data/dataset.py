"""Training dataset: reader -> fit to the model input -> augment -> uint8 CHW tensor,
reproducibly. Images of another size are scaled to cover the input and centre-cropped, so a
112x112 ArcFace crop feeds a 112x96 model as the SphereFace-style crop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from faceforge.data.images import fit_image
from faceforge.data.readers import Reader
from faceforge.data.transforms import Compose
from faceforge.errors import DataError


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a sample whose image could not be decoded (``skip_corrupt``)."""

    index: int


class FaceDataset(Dataset):
    """Samples are ``(image uint8 (3, S, S), label)``; with ``skip_corrupt`` an unreadable
    image yields :class:`Unreadable` (dropped and reported by :func:`collate_faces`) instead
    of raising.

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
            try:  # an unreadable image is reported (or skipped) by training itself
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        try:
            image = self.reader.load(index)
        except DataError as exc:
            if self.skip_corrupt:
                return Unreadable(index)
            raise DataError(f"{exc}; data.skip_corrupt=true skips unreadable images") from None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = fit_image(image, self.input_size, "center-crop", str(index))
        image = self.transform(image, rng)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return tensor, int(self.reader.labels[index])


@dataclass
class Batch:
    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    #: dataset indices of unreadable samples dropped from this batch
    skipped: tuple[int, ...] = ()

    def pin_memory(self, device: str | None = None) -> Batch:
        """The batch in page-locked memory: DataLoader's pin-memory thread calls this, so
        host-to-device copies can run asynchronously."""
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped)


def collate_faces(samples: Sequence[tuple[torch.Tensor, int] | Unreadable]) -> Batch:
    """Stack samples, dropping the :class:`Unreadable` ones and recording their indices."""
    kept = [s for s in samples if not isinstance(s, Unreadable)]
    skipped = tuple(s.index for s in samples if isinstance(s, Unreadable))
    if not kept:
        return Batch(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), skipped)
    images = torch.stack([s[0] for s in kept])
    labels = torch.tensor([s[1] for s in kept], dtype=torch.long)
    return Batch(images, labels, skipped)


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
