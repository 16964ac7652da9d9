"""Identity-disjoint, balanced folds of verification pairs: structure, spread, seeding and the
errors that name what a too-small dataset lacks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from faceforge.errors import ConfigError, DataError
from faceforge.prepare.pair_folds import (
    different_capacity,
    make_folds,
    same_capacity,
    unrank_pair,
    water_fill,
)


def skewed_labels(seed: int = 0) -> np.ndarray:
    """60 identities with 1 to 12 images each, shuffled as a dataset's order might be."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 13, 60)
    labels = np.repeat(np.arange(60) * 7 + 3, counts)  # non-contiguous class ids
    return labels[rng.permutation(len(labels))]


@pytest.mark.parametrize("n", [2, 3, 7, 30])
def test_unrank_pair_lists_every_pair_in_order(n: int) -> None:
    first, second = unrank_pair(np.arange(n * (n - 1) // 2), n)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == list(
        itertools.combinations(range(n), 2)
    )


def test_unrank_pair_at_the_ends_of_a_large_range() -> None:
    n = 200_000
    last = n * (n - 1) // 2 - 1
    first, second = unrank_pair(np.array([0, n - 2, n - 1, last]), n)
    assert first.tolist() == [0, 0, 1, n - 2]
    assert second.tolist() == [1, n - 1, 2, n - 1]


def test_capacities_count_distinct_pairs() -> None:
    counts = np.array([1, 2, 4])
    assert same_capacity(counts).tolist() == [0, 1, 6]
    brute = sum(a * b for a, b in itertools.combinations(counts.tolist(), 2))
    assert different_capacity(counts) == brute == 14


def test_water_fill_is_as_even_as_capacity_allows() -> None:
    rng = np.random.default_rng(0)
    capacity = np.array([1, 0, 50, 3, 50, 50])
    quotas = water_fill(capacity, 40, rng)
    assert quotas.sum() == 40 and (quotas <= capacity).all()
    assert quotas[[0, 1, 3]].tolist() == [1, 0, 3]  # small identities give all they have
    assert quotas[[2, 4, 5]].max() - quotas[[2, 4, 5]].min() <= 1  # the rest share evenly


def test_folds_are_identity_disjoint_and_balanced() -> None:
    labels = skewed_labels()
    folds = make_folds(labels, folds=5, per_fold=20, seed=1)
    owners = [set(fold.labels.tolist()) for fold in folds]
    assert all(a.isdisjoint(b) for a, b in itertools.combinations(owners, 2))
    assert set().union(*owners) == set(np.unique(labels).tolist())
    for fold, owned in zip(folds, owners, strict=True):
        assert (len(fold.same), len(fold.different)) == (20, 20)
        for a, b in fold.same:
            assert a != b and labels[a] == labels[b] and labels[a] in owned
        for a, b in fold.different:
            assert labels[a] != labels[b] and {labels[a], labels[b]} <= owned
        unordered = [frozenset(p) for p in fold.same + fold.different]
        assert len(set(unordered)) == 40  # no pair twice
    sizes = [len(o) for o in owners]
    assert max(sizes) - min(sizes) <= 2


def test_same_pairs_are_spread_over_the_identities() -> None:
    labels = np.repeat(np.arange(6), 10)  # 45 distinct same pairs each
    (fold,) = make_folds(labels, folds=1, per_fold=30, seed=0)
    per_identity = np.bincount([labels[a] for a, _ in fold.same], minlength=6)
    assert per_identity.tolist() == [5] * 6


def test_the_seed_decides_the_pairs() -> None:
    labels = skewed_labels()
    one = make_folds(labels, 3, 10, seed=4)
    assert [f.same + f.different for f in one] == [
        f.same + f.different for f in make_folds(labels, 3, 10, seed=4)
    ]
    assert [f.same for f in one] != [f.same for f in make_folds(labels, 3, 10, seed=5)]


def test_small_few_image_folds_enumerate_their_different_pairs() -> None:
    labels = np.array([0, 0, 1, 1, 2])  # 8 cross-identity pairs, all needed but three
    (fold,) = make_folds(labels, folds=1, per_fold=1, seed=0)
    assert len(fold.different) == 1
    (fold,) = make_folds(np.array([0, 1, 2, 2, 3]), folds=1, per_fold=1, seed=0)
    assert fold.same == [(2, 3)]


def test_too_few_same_pairs_names_the_fold_and_what_is_left() -> None:
    labels = np.repeat(np.arange(20), [3] * 4 + [1] * 16)  # 4 identities with 2+ images
    with pytest.raises(
        DataError,
        match=r"fold \d of 4 needs 5 same pairs but only 1 identities "
        r"with 2\+ images are left for it, giving 3 distinct pairs",
    ):
        make_folds(labels, folds=4, per_fold=5, seed=0)


def test_too_few_identities_or_different_pairs() -> None:
    with pytest.raises(DataError, match="need at least 20 identities"):
        make_folds(np.repeat(np.arange(12), 5), folds=10, per_fold=1)
    labels = np.repeat(np.arange(4), [30, 1, 1, 1])  # one fold gets only singletons
    with pytest.raises(DataError, match="needs 2 same pairs but only 0 identities"):
        make_folds(labels, folds=2, per_fold=2)
    with pytest.raises(
        DataError,
        match=r"needs 100 different pairs but its 2 identities \(42 "
        r"images\) give only 80",
    ):
        make_folds(np.repeat(np.arange(2), [40, 2]), folds=1, per_fold=100)


def test_fold_counts_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="--folds and --per-fold must be >= 1"):
        make_folds(np.arange(10), folds=0, per_fold=3)
