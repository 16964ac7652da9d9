"""CurricularFace against its formula recomputed per row in float64 numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.models.heads import CurricularFace

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-3},
    torch.float64: {"rtol": 1e-10, "atol": 1e-9},
}
S, M, ALPHA = 64.0, 0.5, 0.01


def problem(n: int = 12, classes: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.95, 0.95, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    labels[3] = -1
    cosine[0, labels[0]] = -0.99  # past pi - m: the fallback branch
    cosine[0, (labels[0] + 1) % classes] = -0.945  # above the fallback, below cos(theta + m)
    return cosine, labels


def arc(c: float) -> float:
    if c > math.cos(math.pi - M):
        return math.cos(math.acos(c) + M)
    return c - M * math.sin(M)


def reference(cosine, labels, t0=0.0):
    """Logits, d logits / d cosine (elementwise) and the updated t after one step."""
    held = labels != -1
    t = (1 - ALPHA) * t0 + ALPHA * cosine[held, labels[held]].mean()
    logits, grad = S * cosine.copy(), np.full_like(cosine, S)
    for i, y in enumerate(labels):
        if y == -1:
            continue
        boundary = math.cos(math.acos(cosine[i, y]) + M)  # never the fallback: row 0
        for j, c in enumerate(cosine[i]):
            if j != y and c > boundary:
                logits[i, j], grad[i, j] = S * c * (t + c), S * (t + 2 * c)
        c = cosine[i, y]
        logits[i, y] = S * arc(c)
        past = c <= math.cos(math.pi - M)
        grad[i, y] = S if past else S * math.sin(math.acos(c) + M) / math.sqrt(1 - c * c)
    return logits, grad, t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_gradient_and_ema_match_formula(dtype):
    cosine, labels = problem()
    margin = CurricularFace(S, M, ALPHA).to(dtype)
    margin.t.fill_(0.3)  # a later stage of training: hard negatives emphasised
    c = torch.tensor(cosine, dtype=dtype, requires_grad=True)
    got = margin(c, torch.tensor(labels))
    weights = torch.randn(got.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    (got * weights).sum().backward()
    logits, grad, t = reference(cosine, labels, t0=0.3)
    np.testing.assert_allclose(got.detach().double().numpy(), logits, **TOLERANCE[dtype])
    np.testing.assert_allclose(
        c.grad.double().numpy(), grad * weights.double().numpy(), **TOLERANCE[dtype]
    )
    assert margin.t.item() == pytest.approx(t, rel=1e-6)


def test_t_freezes_in_eval_and_is_in_the_state_dict():
    cosine, labels = problem()
    margin = CurricularFace(S, M, ALPHA).double().eval()
    margin(torch.tensor(cosine), torch.tensor(labels))
    assert margin.t.item() == 0.0
    assert set(margin.state_dict()) == {"t"}


def test_unlabelled_rows_are_only_scaled():
    cosine, _ = problem()
    got = CurricularFace(S, M)(torch.tensor(cosine), torch.full((len(cosine),), -1))
    torch.testing.assert_close(got, S * torch.tensor(cosine), rtol=0, atol=0)
