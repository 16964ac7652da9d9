"""Verification pairs in identity-disjoint, balanced folds, as LFW View 2 is built.

Each of ``folds`` folds holds ``per_fold`` same-identity pairs and ``per_fold`` pairs of two
identities, and no identity appears in two folds: a threshold chosen on nine folds is then
tested on people it has never seen. Identities are dealt to the folds so that each fold can
supply its same pairs (identities with two or more images are spread by how many distinct
pairs they give), and within a fold the same pairs are spread as evenly over its identities
as their image counts allow. Everything is drawn from one seeded generator: the same dataset,
options and seed give the same pairs.

>>> folds = make_folds(np.repeat(np.arange(8), 3), folds=2, per_fold=3, seed=0)
>>> [(len(f.same), len(f.different)) for f in folds]
[(3, 3), (3, 3)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceforge.errors import ConfigError, DataError


@dataclass(frozen=True)
class Fold:
    """One fold: ``(index_a, index_b)`` dataset indices of its same and different pairs, and
    the class labels it owns."""

    same: list[tuple[int, int]]
    different: list[tuple[int, int]]
    labels: np.ndarray


def same_capacity(counts: np.ndarray) -> np.ndarray:
    """Distinct same pairs an identity with ``counts`` images gives: ``n (n - 1) / 2``."""
    counts = np.asarray(counts, dtype=np.int64)
    return counts * (counts - 1) // 2


def different_capacity(counts: np.ndarray) -> int:
    """Distinct pairs of images of two different identities: ``sum_{a<b} n_a n_b``."""
    counts = np.asarray(counts, dtype=np.int64)
    return int((counts.sum() ** 2 - (counts**2).sum()) // 2)


def unrank_pair(rank: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``rank``-th pair ``(i, j)``, ``i < j < n``, in the order (0,1), (0,2), .., (1,2), ..

    Pairs starting with ``i`` begin at rank ``i n - i (i + 1) / 2``; ``i`` is found by
    inverting that quadratic, then corrected by one where floating point rounds it off.
    """
    rank = np.asarray(rank, dtype=np.int64)
    b = 2 * n - 1
    i = np.floor((b - np.sqrt(np.maximum(b * b - 8 * rank, 0))) / 2).astype(np.int64)
    start = i * n - i * (i + 1) // 2
    i = np.where(start > rank, i - 1, i)
    i = np.where(rank >= start + (n - 1 - i), i + 1, i)
    start = i * n - i * (i + 1) // 2
    return i, rank - start + i + 1


def water_fill(capacity: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``total`` items each slot takes: as equal as ``capacity`` allows, the
    remainder going to randomly chosen slots (``capacity.sum() >= total`` is required)."""
    capacity = np.asarray(capacity, dtype=np.int64)
    low, high = 0, total  # the largest level L with sum(min(capacity, L)) <= total
    while low < high:
        mid = (low + high + 1) // 2
        if np.minimum(capacity, mid).sum() <= total:
            low = mid
        else:
            high = mid - 1
    quotas = np.minimum(capacity, low)
    left = total - int(quotas.sum())
    if left:
        room = np.flatnonzero(capacity > quotas)
        quotas[rng.choice(room, left, replace=False)] += 1
    return quotas


def _by_identity(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class labels present and, for each, its image indices in dataset order."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    return classes, np.split(order, starts[1:])


def _deal(counts: np.ndarray, folds: int, per_fold: int, rng: np.random.Generator) -> np.ndarray:
    """The fold of every identity: those with 2+ images by capped same-pair capacity, largest
    first, each to the fold with the least so far; the others to the fold with fewest."""
    fold_of = np.empty(len(counts), np.int64)
    useful = np.minimum(same_capacity(counts), per_fold)
    shuffled = rng.permutation(len(counts))
    filled = np.zeros(folds, np.int64)
    members = np.zeros(folds, np.int64)
    for identity in shuffled[np.argsort(-useful[shuffled], kind="stable")]:
        weight = useful[identity]
        target = int(np.argmin(filled if weight else members))
        fold_of[identity] = target
        filled[target] += weight
        members[target] += 1
    return fold_of


def _check_fold(k: int, folds: int, per_fold: int, counts: np.ndarray, overall: str) -> None:
    """DataError naming what fold ``k`` lacks for its pairs."""
    multi = int(np.count_nonzero(counts >= 2))
    same = int(same_capacity(counts).sum())
    where = f"fold {k + 1} of {folds}"
    hint = "lower --per-fold or --folds, or add images"
    if same < per_fold:
        raise DataError(
            f"{where} needs {per_fold} same pairs but only {multi} identities with 2+ images "
            f"are left for it, giving {same} distinct pairs ({overall}); {hint}"
        )
    if different_capacity(counts) < per_fold:
        raise DataError(
            f"{where} needs {per_fold} different pairs but its {len(counts)} identities "
            f"({int(counts.sum())} images) give only {different_capacity(counts)} ({overall}); "
            f"{hint}"
        )


def _same_pairs(
    groups: list[np.ndarray], per_fold: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    counts = np.array([len(g) for g in groups])
    quotas = water_fill(same_capacity(counts), per_fold, rng)
    pairs = []
    for group, quota in zip(groups, quotas, strict=True):
        if quota:
            ranks = rng.choice(int(same_capacity(len(group))), int(quota), replace=False)
            first, second = unrank_pair(ranks, len(group))
            pairs += list(zip(group[first].tolist(), group[second].tolist(), strict=True))
    return [pairs[i] for i in rng.permutation(len(pairs))]


def _different_pairs(
    groups: list[np.ndarray], per_fold: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Two identities drawn uniformly, one image of each; repeats drawn again. When the fold
    has few distinct pairs to spare, all of them are listed and drawn from instead."""
    counts = np.array([len(g) for g in groups])
    if different_capacity(counts) <= 4 * per_fold:
        every = [
            (int(a), int(b))
            for x in range(len(groups))
            for y in range(x + 1, len(groups))
            for a in groups[x]
            for b in groups[y]
        ]
        return [every[i] for i in rng.choice(len(every), per_fold, replace=False)]
    chosen: dict[tuple[int, int], tuple[int, int]] = {}
    while len(chosen) < per_fold:
        x, y = rng.choice(len(groups), 2, replace=False)
        a, b = int(rng.choice(groups[x])), int(rng.choice(groups[y]))
        chosen.setdefault((min(a, b), max(a, b)), (a, b))
    return list(chosen.values())


def make_folds(labels: np.ndarray, folds: int, per_fold: int, seed: int = 0) -> list[Fold]:
    """``folds`` identity-disjoint folds of ``per_fold`` same and ``per_fold`` different pairs
    over images labelled ``labels`` (see the module docs). Raises DataError naming the fold
    and what it lacks when the dataset is too small."""
    if folds < 1 or per_fold < 1:
        raise ConfigError(f"--folds and --per-fold must be >= 1, got {folds} and {per_fold}")
    labels = np.asarray(labels)
    classes, groups = _by_identity(labels)
    counts = np.array([len(g) for g in groups], dtype=np.int64)
    overall = (
        f"the dataset has {int(np.count_nonzero(counts >= 2))} identities with 2+ images "
        f"among {len(classes)}"
    )
    if len(classes) < 2 * folds:
        raise DataError(
            f"{folds} identity-disjoint folds need at least {2 * folds} identities (two per "
            f"fold for different pairs), but {overall}; lower --folds"
        )
    rng = np.random.default_rng(seed)
    fold_of = _deal(counts, folds, per_fold, rng)
    members = [np.flatnonzero(fold_of == k) for k in range(folds)]
    for k, ids in enumerate(members):
        _check_fold(k, folds, per_fold, counts[ids], overall)
    return [
        Fold(
            same=_same_pairs([groups[i] for i in ids], per_fold, rng),
            different=_different_pairs([groups[i] for i in ids], per_fold, rng),
            labels=classes[ids],
        )
        for ids in members
    ]
