"""Margins against their formulas recomputed with explicit acos/cos in float64 numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.models.heads.margins import ArcFace, CombinedMargin, CosFace, NormFace

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-4},
    torch.float64: {"rtol": 1e-12, "atol": 1e-10},
}
S = 64.0


def reference(cosine: np.ndarray, labels: np.ndarray, target_fn) -> np.ndarray:
    """s * cosine with the target entry of every labelled row replaced by target_fn."""
    out = cosine.astype(np.float64).copy()
    for i, label in enumerate(labels):
        if label != -1:
            out[i, label] = target_fn(out[i, label])
    return S * out


def arcface_ref(m: float, easy: bool):
    def target(c: float) -> float:
        theta = math.acos(c)
        if easy:
            return math.cos(theta + m) if c > 0 else c
        return math.cos(theta + m) if theta + m <= math.pi else c - m * math.sin(m)

    return target


CASES = [
    ("normface", NormFace(S), lambda c: c),
    ("cosface", CosFace(S, 0.35), lambda c: c - 0.35),
    ("arcface", ArcFace(S, 0.5), arcface_ref(0.5, easy=False)),
    ("arcface_easy", ArcFace(S, 0.5, easy_margin=True), arcface_ref(0.5, easy=True)),
    (
        "combined",
        CombinedMargin(S, 0.9, 0.4, 0.15),
        lambda c: math.cos(0.9 * math.acos(c) + 0.4) - 0.15,
    ),
]


def random_problem(n: int = 16, classes: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.99, 0.99, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    labels[[1, n - 2]] = -1
    return cosine, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "margin", "target_fn"), CASES, ids=[c[0] for c in CASES])
def test_margin_matches_formula(name, margin, target_fn, dtype):
    cosine, labels = random_problem()
    got = margin(torch.tensor(cosine, dtype=dtype), torch.tensor(labels))
    assert got.dtype == dtype
    expected = reference(cosine, labels, target_fn)
    np.testing.assert_allclose(got.double().numpy(), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize(("name", "margin", "target_fn"), CASES, ids=[c[0] for c in CASES])
def test_ignored_rows_are_only_scaled(name, margin, target_fn):
    cosine, _ = random_problem()
    labels = torch.full((len(cosine),), -1)
    got = margin(torch.tensor(cosine), labels)
    torch.testing.assert_close(got, S * torch.tensor(cosine), rtol=0, atol=0)


def test_arcface_past_pi_branch_on_cosines_near_minus_one():
    m = 0.5
    threshold = math.cos(math.pi - m)  # theta + m == pi here
    values = [-1.0, -0.99999, -0.999, -0.95, threshold - 1e-4, threshold + 1e-4, 0.0, 0.9]
    cosine = torch.tensor(values, dtype=torch.float64).unsqueeze(1)
    got = ArcFace(S, m)(cosine, torch.zeros(len(values), dtype=torch.long)).squeeze(1) / S
    for c, g in zip(values, got.tolist(), strict=True):
        if c <= threshold:
            assert g == pytest.approx(c - m * math.sin(m), abs=1e-12)
        else:
            assert g == pytest.approx(math.cos(math.acos(c) + m), abs=1e-6)
    # the fallback keeps the target logit decreasing in theta over the whole of [0, pi]
    grid = torch.linspace(1.0, -1.0, 2001, dtype=torch.float64).unsqueeze(1)
    curve = ArcFace(S, m)(grid, torch.zeros(len(grid), dtype=torch.long)).squeeze(1)
    assert bool((curve[1:] < curve[:-1]).all())


def test_combined_reduces_to_arcface_and_cosface():
    cosine, labels = random_problem()
    c, y = torch.tensor(cosine), torch.tensor(labels)
    inside = torch.tensor(cosine).clamp(min=math.cos(math.pi - 0.5) + 1e-3)  # theta + m < pi
    torch.testing.assert_close(
        CombinedMargin(S, 1.0, 0.5, 0.0)(inside, y), ArcFace(S, 0.5)(inside, y)
    )
    torch.testing.assert_close(CombinedMargin(S, 1.0, 0.0, 0.35)(c, y), CosFace(S, 0.35)(c, y))


@pytest.mark.parametrize(
    "margin", [ArcFace(S, 0.5), ArcFace(S, 0.5, True), CombinedMargin(S, 2.0, 0.3, 0.2)]
)
def test_gradients_are_finite_at_plus_minus_one(margin):
    cosine = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0 + 1e-7, 0.0]], requires_grad=True)
    margin(cosine, torch.tensor([0, 0, 0])).sum().backward()
    assert torch.isfinite(cosine.grad).all()


@pytest.mark.parametrize(
    "margin", [ArcFace(2.0, 0.5), CosFace(2.0, 0.3), CombinedMargin(2.0, 1.5, 0.2, 0.1)]
)
def test_gradcheck(margin):
    cosine, labels = random_problem(n=4, classes=3, seed=1)
    cosine = torch.tensor(cosine, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: margin(c, torch.tensor(labels)), (cosine,))
