"""ElasticFace against its formula, the per-sample margins redrawn from the same seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.config import HeadConfig
from faceforge.errors import ConfigError
from faceforge.models.heads import ElasticArcFace, ElasticCosFace, build_margin

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-3},
    torch.float64: {"rtol": 1e-10, "atol": 1e-9},
}
S, SIGMA = 64.0, 0.05


def problem(n: int = 10, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.9, 0.95, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    labels[1] = -1
    return cosine, labels


def drawn(mean: float, n: int, dtype: torch.dtype, seed: int = 7) -> np.ndarray:
    torch.manual_seed(seed)
    return torch.normal(mean, SIGMA, (n, 1), dtype=dtype).double().numpy()[:, 0]


def plus_order(margins: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ElasticFace+: among labelled rows, the i-th largest target cosine gets the i-th
    smallest margin (of those rows' draws); unlabelled rows keep theirs."""
    rows = np.flatnonzero(labels >= 0)
    out = margins.copy()
    out[rows[np.argsort(-targets[rows], kind="stable")]] = np.sort(margins[rows])
    return out


CASES = {
    "arc": (ElasticArcFace, 0.5, lambda c, m: math.cos(min(math.acos(c) + m, math.pi))),
    "cos": (ElasticCosFace, 0.35, lambda c, m: c - m),
}


@pytest.mark.parametrize("plus", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_forward_and_gradient_match_formula(kind, dtype, plus):
    cls, mean, fn = CASES[kind]
    cosine, labels = problem()
    margins = drawn(mean, len(labels), dtype)
    if plus:
        margins = plus_order(margins, cosine[np.arange(len(labels)), labels.clip(0)], labels)
    c = torch.tensor(cosine, dtype=dtype, requires_grad=True)
    torch.manual_seed(7)
    got = cls(S, mean, SIGMA, plus)(c, torch.tensor(labels))
    got.sum().backward()
    expected, grad = S * cosine.copy(), np.full_like(cosine, S)
    h = 1e-6
    for i, y in enumerate(labels):
        if y != -1:
            expected[i, y] = S * fn(cosine[i, y], margins[i])
            grad[i, y] = S * (fn(cosine[i, y] + h, margins[i]) - fn(cosine[i, y] - h, margins[i]))
            grad[i, y] /= 2 * h
    np.testing.assert_allclose(got.detach().double().numpy(), expected, **TOLERANCE[dtype])
    np.testing.assert_allclose(c.grad.double().numpy(), grad, rtol=1e-4, atol=1e-3)


def test_eval_uses_the_mean_margin():
    cosine, labels = problem()
    got = ElasticCosFace(S, 0.35).eval()(torch.tensor(cosine), torch.tensor(labels))
    row = 0
    assert got[row, labels[row]].item() == pytest.approx(S * (cosine[row, labels[row]] - 0.35))


def test_plus_gives_the_nearest_sample_the_smallest_margin_and_ranks_labelled_rows_only():
    """ElasticFace+ pushes hardest the samples farthest from their class centre."""
    cosine = torch.tensor([[0.9], [0.1], [0.5], [0.95]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, -1])  # the unlabelled row, nearest of all, is not ranked
    torch.manual_seed(0)
    got = ElasticCosFace(1.0, 0.35, 0.2, plus=True)(cosine, labels)
    margins = (cosine - got).squeeze(1)[:3]
    torch.manual_seed(0)
    draws = torch.normal(0.35, 0.2, (4, 1), dtype=torch.float64).squeeze(1)[:3]
    expected = draws.sort().values[[0, 2, 1]]  # cosines 0.9, 0.1, 0.5: smallest, largest, middle
    torch.testing.assert_close(margins, expected)


@pytest.mark.parametrize("kind", ["elasticface", "elasticface_cos"])
def test_sharding_is_refused(kind):
    with pytest.raises(ConfigError, match="partial_fc"):
        build_margin(HeadConfig(type=kind, margin=0.35))
