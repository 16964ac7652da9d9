"""AdaFace against its formula recomputed per row in float64 numpy: EMAs, logits, gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.models.heads import AdaFace

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-3},
    torch.float64: {"rtol": 1e-10, "atol": 1e-9},
}
S, M, H, ALPHA, EPS = 64.0, 0.4, 0.333, 0.01, 1e-3


def problem(n: int = 12, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.95, 0.95, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    labels[2] = -1
    norms = rng.uniform(5.0, 40.0, size=n)
    return cosine, labels, norms


def reference(cosine, labels, norms, mean0=20.0, std0=100.0):
    """Logits, d logits / d cosine (elementwise) and the updated (mean, std) after one step."""
    held = labels != -1
    mean = (1 - ALPHA) * mean0 + ALPHA * norms[held].mean()
    std = (1 - ALPHA) * std0 + ALPHA * norms[held].std(ddof=1)
    logits, grad = S * cosine.copy(), np.full_like(cosine, S)
    for i, y in enumerate(labels):
        if y == -1:
            continue
        z = min(max(H * (norms[i] - mean) / (std + EPS), -1.0), 1.0)
        theta = math.acos(cosine[i, y]) - M * z
        inside = EPS < theta < math.pi - EPS
        theta = min(max(theta, EPS), math.pi - EPS)
        logits[i, y] = S * (math.cos(theta) - (M + M * z))
        c = cosine[i, y]
        grad[i, y] = S * math.sin(theta) / math.sqrt(1 - c * c) if inside else 0.0
    return logits, grad, (mean, std)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_gradient_and_ema_match_formula(dtype):
    cosine, labels, norms = problem()
    margin = AdaFace(S, M, H, ALPHA).to(dtype)
    c = torch.tensor(cosine, dtype=dtype, requires_grad=True)
    got = margin(c, torch.tensor(labels), torch.tensor(norms, dtype=dtype))
    weights = torch.randn(got.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    (got * weights).sum().backward()
    logits, grad, (mean, std) = reference(cosine, labels, norms)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.detach().double().numpy(), logits, **TOLERANCE[dtype])
    np.testing.assert_allclose(
        c.grad.double().numpy(), grad * weights.double().numpy(), **TOLERANCE[dtype]
    )
    assert margin.norm_mean.item() == pytest.approx(mean, rel=1e-6)
    assert margin.norm_std.item() == pytest.approx(std, rel=1e-6)


def test_statistics_follow_the_ema_and_freeze_in_eval():
    cosine, labels, norms = problem()
    margin = AdaFace(S, M, H, ALPHA).double()
    args = (torch.tensor(cosine), torch.tensor(labels), torch.tensor(norms))
    margin(*args)
    margin(*args)
    _, _, first = reference(cosine, labels, norms)
    _, _, second = reference(cosine, labels, norms, *first)
    assert (margin.norm_mean.item(), margin.norm_std.item()) == pytest.approx(second)
    margin.eval()
    margin(*args)
    assert (margin.norm_mean.item(), margin.norm_std.item()) == pytest.approx(second)


def test_norms_are_not_trained_and_state_dict_holds_the_emas():
    cosine, labels, norms = problem()
    n = torch.tensor(norms, requires_grad=True)
    assert not AdaFace()(torch.tensor(cosine), torch.tensor(labels), n).requires_grad
    assert set(AdaFace().state_dict()) == {"norm_mean", "norm_std"}


def test_high_quality_is_angular_low_quality_is_additive():
    """z = 1: cos(theta - m) - 2m; z = -1: cos(theta + m) (the paper's two extremes)."""
    margin = AdaFace(1.0, M, H).eval()
    margin.norm_mean.fill_(10.0)
    margin.norm_std.fill_(1.0)
    c = torch.tensor([[0.3], [0.3]], dtype=torch.float64)
    got = margin(c, torch.tensor([0, 0]), torch.tensor([100.0, 0.01], dtype=torch.float64))
    theta = math.acos(0.3)
    assert got[0, 0].item() == pytest.approx(math.cos(theta - M) - 2 * M)
    assert got[1, 0].item() == pytest.approx(math.cos(theta + M))
