"""Sub-center ArcFace: max over K sub-centres then ArcFace, recomputed by hand; the drop of
non-dominant sub-centres and far samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforge.config import HeadConfig
from faceforge.errors import ConfigError
from faceforge.models.heads import ArcFace, SubCenterHead, build_margin

S, M, K, C, D = 64.0, 0.5, 3, 4, 8
TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-3},
    torch.float64: {"rtol": 1e-10, "atol": 1e-9},
}


def arc(c: float) -> float:
    if c > math.cos(math.pi - M):
        return math.cos(math.acos(c) + M)
    return c - M * math.sin(M)


def reference(x: np.ndarray, w: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    cosine = (x @ w.T).reshape(len(x), C, K).max(axis=2)
    logits = S * cosine
    for i, y in enumerate(labels):
        logits[i, y] = S * arc(cosine[i, y])
    return logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_gradient_match_formula(dtype):
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(6, D)), rng.integers(0, C, size=6)
    head = SubCenterHead(D, C, ArcFace(S, M), K).to(dtype)
    w = head.weight.detach().double().numpy()
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    got = head(xt, torch.tensor(labels))
    np.testing.assert_allclose(
        got.detach().double().numpy(), reference(x, w, labels), **TOLERANCE[dtype]
    )
    got.sum().backward()
    h, numeric = 1e-6, np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(D):
            step = np.zeros_like(x)
            step[i, j] = h
            up, down = reference(x + step, w, labels), reference(x - step, w, labels)
            numeric[i, j] = (up.sum() - down.sum()) / (2 * h)
    np.testing.assert_allclose(xt.grad.double().numpy(), numeric, rtol=1e-3, atol=1e-3)


def test_counts_then_drop_keeps_the_dominant_centre_and_ignores_far_samples():
    head = SubCenterHead(D, 2, ArcFace(S, M), K, drop_step=1, drop_angle=math.radians(75))
    with torch.no_grad():
        head.weight.copy_(torch.eye(2 * K, D))  # class 0: axes 0-2, class 1: axes 3-5
    near_1 = F.one_hot(torch.tensor([1, 1]), D).double()
    head.double()(near_1, torch.tensor([0, 0]))  # class 0's sub-centre 1 is nearest twice
    assert head.counts.tolist() == [[0, 2, 0], [0, 0, 0]] and head.dropped
    away = F.one_hot(torch.tensor([0]), D).double()  # sub-centre 0, now dropped: 90 degrees
    x = torch.cat([away, near_1[:1]]).requires_grad_()
    logits = head(x, torch.tensor([0, 0]))
    assert logits[0].abs().sum().item() == 0.0
    logits.sum().backward()
    assert x.grad[0].abs().sum().item() == 0.0  # a far sample adds nothing
    assert x.grad[1].abs().sum().item() > 0.0


def test_state_dict_holds_the_counts_and_sharding_is_refused():
    head = SubCenterHead(D, C, ArcFace(), K)
    assert set(head.state_dict()) == {"weight", "step", "counts"}
    with pytest.raises(ConfigError, match="partial_fc"):
        build_margin(HeadConfig(type="subcenter_arcface"))


def test_the_step_that_reaches_drop_step_drops_nothing_yet() -> None:
    """Counting moves the step to drop_step inside that call: it used to zero far samples
    there while keeping every sub-centre, a mix of the two regimes."""
    torch.manual_seed(0)
    head = SubCenterHead(8, 4, ArcFace(), 3, drop_step=2, drop_angle=math.radians(75)).train()
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    zeroed = []
    for _ in range(3):
        zeroed.append(int((head(x, y) == 0).all(1).sum()))
    assert zeroed[:2] == [0, 0] and head.dropped
