"""MagFace against its formula recomputed per row in float64 numpy: logits, regulariser and
their gradients with respect to cosines and norms, with the easy margin of MagFace's code
(the default) and without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.config import HeadConfig
from faceforge.errors import ConfigError
from faceforge.models.heads import MagFace, build_margin, quality

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-3},
    torch.float64: {"rtol": 1e-10, "atol": 1e-9},
}
S, LA, UA, LM, UM, LG = 64.0, 10.0, 110.0, 0.45, 0.8, 35.0


def problem(n: int = 10, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.95, 0.95, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    labels[1] = -1
    norms = rng.uniform(12.0, 100.0, size=n)  # inside [l_a, u_a]: the margin moves
    norms[0], norms[2] = 5.0, 150.0  # clipped
    return cosine, labels, norms


def target(c: float, a: float, easy: bool) -> float:
    m = (UM - LM) / (UA - LA) * (a - LA) + LM
    if c > (0.0 if easy else math.cos(math.pi - m)):
        return math.cos(math.acos(c) + m)
    return c if easy else c - m * math.sin(m)


def reference(cosine, labels, norms, easy=True):
    logits = S * cosine.copy()
    for i, y in enumerate(labels):
        if y != -1:
            logits[i, y] = S * target(cosine[i, y], min(max(norms[i], LA), UA), easy)
    a = np.clip(norms, LA, UA)
    return logits, LG * np.mean(1 / a + a / UA**2)


@pytest.mark.parametrize("easy", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_regularizer_match_formula(dtype, easy):
    cosine, labels, norms = problem()
    cosine[4, labels[4]] = -0.97  # a target past pi - m: the two rules differ there
    margin = MagFace(S, LA, UA, LM, UM, LG, easy_margin=easy)
    n = torch.tensor(norms, dtype=dtype)
    got = margin(torch.tensor(cosine, dtype=dtype), torch.tensor(labels), n)
    logits, g = reference(cosine, labels, norms, easy)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), logits, **TOLERANCE[dtype])
    assert margin.regularizer(n).item() == pytest.approx(g, rel=1e-6)


@pytest.mark.parametrize("easy", [True, False])
def test_gradients_match_finite_differences_of_the_formula(easy):
    cosine, labels, norms = problem()
    margin = MagFace(S, LA, UA, LM, UM, LG, easy_margin=easy)
    c = torch.tensor(cosine, requires_grad=True)
    n = torch.tensor(norms, requires_grad=True)
    weights = np.random.default_rng(1).normal(size=cosine.shape)
    total = (margin(c, torch.tensor(labels), n) * torch.tensor(weights)).sum()
    (total + margin.regularizer(n)).backward()

    def objective(cos, nrm):
        logits, g = reference(cos, labels, nrm, easy)
        return (logits * weights).sum() + g

    h = 1e-6
    for i, y in [(3, labels[3]), (4, 0), (5, labels[5])]:
        step = np.zeros_like(cosine)
        step[i, y] = h
        numeric = (objective(cosine + step, norms) - objective(cosine - step, norms)) / (2 * h)
        assert c.grad[i, y].item() == pytest.approx(numeric, rel=1e-5)
    for i in range(len(norms)):
        step = np.zeros_like(norms)
        step[i] = h
        numeric = (objective(cosine, norms + step) - objective(cosine, norms - step)) / (2 * h)
        assert n.grad[i].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    assert n.grad[0].item() == 0.0 and n.grad[2].item() == 0.0  # clipped norms


def test_quality_is_the_norm_and_sharding_is_refused():
    x = torch.tensor([[3.0, 4.0]])
    assert quality(x).tolist() == [5.0]
    with pytest.raises(ConfigError, match="partial_fc"):
        build_margin(HeadConfig(type="magface"))


def test_impossible_ranges_are_config_errors():
    from faceforge.models.heads import build_head

    with pytest.raises(ConfigError, match="mag_l_a"):
        build_head(HeadConfig(type="magface", mag_l_a=120.0), 8, 2)
    with pytest.raises(ConfigError, match="mag_l_m"):
        build_head(HeadConfig(type="magface", mag_l_m=0.9, mag_u_m=0.5), 8, 2)
