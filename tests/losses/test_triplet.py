"""Triplet loss against every triplet enumerated by hand in float64 numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from faceforge.errors import UnknownChoiceError
from faceforge.losses import TripletLoss

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
}
DISTANCES = {
    "l2": lambda a, b: np.linalg.norm(a - b),
    "squared_l2": lambda a, b: np.sum((a - b) ** 2),
    "cosine": lambda a, b: 1.0 - a @ b,
}


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 6))
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4])  # 4: no positive
    return x, labels


def pairwise(x: np.ndarray, distance: str) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.array([[DISTANCES[distance](a, b) for b in x] for a in x])


def batch_hard_ref(d: np.ndarray, labels: np.ndarray, margin: float) -> float:
    losses = []
    for a in range(len(labels)):
        pos = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return float(np.mean(losses))


def semi_hard_ref(d: np.ndarray, labels: np.ndarray, margin: float) -> float:
    losses = []
    for a, p in itertools.permutations(range(len(labels)), 2):
        if labels[a] != labels[p]:
            continue
        neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        farther = [v for v in neg if v > d[a, p]]
        chosen = min(farther) if farther else max(neg)
        losses.append(max(0.0, d[a, p] - chosen + margin))
    return float(np.mean(losses))


REFERENCES = {"batch_hard": batch_hard_ref, "semi_hard": semi_hard_ref}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distance", sorted(DISTANCES))
@pytest.mark.parametrize("mining", sorted(REFERENCES))
def test_loss_and_gradient_match_the_enumerated_triplets(mining, distance, dtype):
    x, labels = problem()
    margin = 0.3 if distance != "squared_l2" else 1.0
    loss = TripletLoss(margin, mining, distance, weight=2.0)
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    got = loss(xt, torch.tensor(labels))
    expected = 2.0 * REFERENCES[mining](pairwise(x, distance), labels, margin)
    np.testing.assert_allclose(got.item(), expected, **TOLERANCE[dtype])
    got.backward()
    h, numeric = 1e-6, np.zeros_like(x)
    for i, j in itertools.product(range(x.shape[0]), range(x.shape[1])):
        step = np.zeros_like(x)
        step[i, j] = h
        up = REFERENCES[mining](pairwise(x + step, distance), labels, margin)
        down = REFERENCES[mining](pairwise(x - step, distance), labels, margin)
        numeric[i, j] = 2.0 * (up - down) / (2 * h)
    np.testing.assert_allclose(xt.grad.double().numpy(), numeric, rtol=1e-3, atol=1e-4)


def test_a_batch_without_triplets_gives_zero_with_a_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    got = TripletLoss()(x, torch.tensor([0, 1, 2]))
    got.backward()
    assert got.item() == 0.0 and x.grad is not None


def test_unknown_choices_name_the_field():
    with pytest.raises(UnknownChoiceError, match="loss.triplet_mining"):
        TripletLoss(mining="hardest")
    with pytest.raises(UnknownChoiceError, match="loss.triplet_distance"):
        TripletLoss(distance="l1")
