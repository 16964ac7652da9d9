"""Epoch samplers by name: a plain shuffle, or P x K identity-balanced batches for triplet
mining (Hermans et al. 2017, https://arxiv.org/abs/1703.07737)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from faceforge.data.dataset import EpochSampler
from faceforge.errors import ConfigError
from faceforge.registry import Registry


class PKSampler(Sampler[int]):
    """Groups of ``k`` images of one identity, in an order seeded by ``(seed, epoch)``; a
    loader batch of ``P * k`` images (the batch size a multiple of ``k``) holds P groups.

    Each epoch every identity's images are shuffled and cut into groups of ``k`` (a short
    last group, or an identity with fewer than ``k`` images, is filled by drawing its images
    again), and the groups are shuffled. Rank ``r`` takes groups ``r, r + world_size, ...``
    (padded by wrapping, so every rank gets as many), and :meth:`set_epoch` can start after
    ``start`` samples of this rank's share (exact mid-epoch resume), like
    :class:`~faceforge.data.dataset.EpochSampler`.
    """

    def __init__(
        self, labels: np.ndarray, k: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if k < 2:
            raise ConfigError(f"data.pk_images must be >= 2 (a positive per anchor); got {k}")
        self.k, self.seed, self.rank, self.world_size = k, seed, rank, world_size
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")  # one sort, not a scan per identity
        _, starts = np.unique(labels[order], return_index=True)
        self.identities = np.split(order, starts[1:])
        self.num_groups = sum(-(-len(images) // k) for images in self.identities)
        self.epoch = 0
        self.start = 0

    @property
    def per_rank(self) -> int:
        return -(-self.num_groups // self.world_size) * self.k

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = [g for images in self.identities for g in self._groups(images, rng)]
        order = rng.permutation(len(groups))
        total = self.per_rank // self.k * self.world_size
        mine = np.resize(order, total)[self.rank : total : self.world_size]
        return np.concatenate([groups[i] for i in mine])

    def _groups(self, images: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        shuffled = rng.permutation(images)
        count = -(-len(shuffled) // self.k)
        missing = count * self.k - len(shuffled)
        filled = np.concatenate([shuffled, rng.choice(images, missing)])
        return np.split(filled, count)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


def _epoch(labels: np.ndarray, k: int, seed: int, rank: int, world_size: int) -> Sampler[int]:
    return EpochSampler(len(labels), seed, rank, world_size)


#: data.sampler: (labels, images per identity, seed, rank, world size) -> sampler
SAMPLERS: Registry[Sampler[int]] = Registry.of("sampler", {"epoch": _epoch, "pk": PKSampler})
