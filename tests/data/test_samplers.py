"""The P x K sampler: identity-balanced groups, seeded epochs, rank shards, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.data.dataset import EpochSampler
from faceforge.data.samplers import SAMPLERS, PKSampler
from faceforge.errors import ConfigError

LABELS = np.repeat(np.arange(7), [5, 4, 4, 2, 8, 1, 3])  # uneven, one singleton


def groups(indices: np.ndarray, k: int) -> list[np.ndarray]:
    return np.split(indices, len(indices) // k)


def test_groups_are_k_images_of_one_identity_covering_every_image():
    sampler = PKSampler(LABELS, k=4, seed=1)
    indices = np.array(list(sampler))
    assert len(indices) == len(sampler) == sampler.num_groups * 4
    for group in groups(indices, 4):
        assert len(set(LABELS[group])) == 1
    assert set(indices) == set(range(len(LABELS)))


def test_epochs_are_seeded_and_differ():
    sampler = PKSampler(LABELS, k=2, seed=3)
    first = list(sampler)
    assert list(PKSampler(LABELS, k=2, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_ranks_split_whole_groups_in_lockstep():
    shards = [PKSampler(LABELS, k=4, seed=0, rank=r, world_size=3) for r in range(3)]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1
    everything = np.concatenate([np.array(list(s)) for s in shards])
    assert set(everything) == set(range(len(LABELS)))
    for shard in shards:
        for group in groups(np.array(list(shard)), 4):
            assert len(set(LABELS[group])) == 1


def test_resume_mid_epoch_continues_exactly():
    sampler = PKSampler(LABELS, k=4, seed=0, rank=1, world_size=2)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, start=8)
    assert list(sampler) == whole[8:] and len(sampler) == len(whole) - 8


def test_registry_builds_both_samplers_and_k_is_checked():
    assert isinstance(SAMPLERS.get("epoch")(LABELS, 4, 0, 0, 1), EpochSampler)
    assert isinstance(SAMPLERS.get("pk")(LABELS, 4, 0, 0, 1), PKSampler)
    with pytest.raises(ConfigError, match="pk_images"):
        PKSampler(LABELS, k=1)
