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


def plus_order(margins: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ElasticFace+: the i-th smallest target cosine gets the i-th smallest margin."""
    out = np.empty_like(margins)
    out[np.argsort(targets, kind="stable")] = np.sort(margins)
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
        margins = plus_order(margins, cosine[np.arange(len(labels)), labels.clip(0)])
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


def test_plus_gives_the_nearest_sample_the_largest_margin():
    cosine = torch.tensor([[0.9], [0.1], [0.5]], dtype=torch.float64)
    torch.manual_seed(0)
    got = ElasticCosFace(1.0, 0.35, 0.2, plus=True)(cosine, torch.zeros(3, dtype=torch.long))
    margins = (cosine - got).squeeze(1)
    assert margins[0] == margins.max() and margins[1] == margins.min()


@pytest.mark.parametrize("kind", ["elasticface", "elasticface_cos"])
def test_sharding_is_refused(kind):
    with pytest.raises(ConfigError, match="partial_fc"):
        build_margin(HeadConfig(type=kind, margin=0.35))
