"""Center loss: value and embedding gradient by hand, centers updated by the paper's rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceforge.losses.center import CenterLoss

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float64: {"rtol": 1e-12, "atol": 1e-12},
}
CLASSES, DIM = 5, 4


def make_problem(dtype=torch.float32, weight: float = 0.3, lr: float = 0.5):
    torch.manual_seed(0)
    loss = CenterLoss(CLASSES, DIM, weight=weight, lr=lr).to(dtype)
    with torch.no_grad():
        loss.centers.copy_(torch.randn(CLASSES, DIM))
    x = torch.randn(7, DIM, dtype=dtype, requires_grad=True)
    labels = torch.tensor([0, 2, 2, 4, -1, 2, 0])
    return loss, x, labels


def paper_delta(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Wen et al. eq. 4: sum_{i: y_i = j} (c_j - x_i) / (1 + n_j), per class j."""
    delta = np.zeros_like(centers)
    for j in range(len(centers)):
        members = x[labels == j]
        delta[j] = (centers[j] - members).sum(axis=0) / (1 + len(members))
    return delta


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_and_embedding_gradient_match_formula(dtype):
    loss, x, labels = make_problem(dtype)
    value = loss(x, labels)
    value.backward()
    xn, cn, yn = x.detach().double().numpy(), loss.centers.detach().double().numpy(), labels.numpy()
    kept = yn != -1
    diff = xn[kept] - cn[yn[kept]]
    expected = 0.3 * 0.5 * np.mean((diff**2).sum(axis=1))
    assert float(value.detach()) == pytest.approx(expected, rel=TOLERANCE[dtype]["rtol"])
    expected_grad = np.zeros_like(xn)
    expected_grad[kept] = 0.3 * diff / kept.sum()
    np.testing.assert_allclose(x.grad.double().numpy(), expected_grad, **TOLERANCE[dtype])


@pytest.mark.parametrize("weight", [0.005, 1.0])
def test_center_gradient_is_the_paper_update_whatever_the_weight(weight):
    loss, x, labels = make_problem(torch.float64, weight=weight)
    loss(x, labels).backward()
    expected = paper_delta(x.detach().numpy(), loss.centers.detach().numpy(), labels.numpy())
    np.testing.assert_allclose(loss.centers.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_one_sgd_step_moves_the_center_toward_its_feature():
    alpha = 0.5
    loss = CenterLoss(3, 2, weight=0.005, lr=alpha)
    optimizer = torch.optim.SGD(loss.param_groups(), lr=99.0, momentum=0.9, weight_decay=0.1)
    feature = torch.tensor([[2.0, -4.0]])
    loss(feature, torch.tensor([1])).backward()
    optimizer.step()
    # one sample of class 1: c <- c - alpha * (c - x) / 2 from c = 0; other centers stay
    expected = torch.zeros(3, 2)
    expected[1] = alpha * feature[0] / 2
    torch.testing.assert_close(loss.centers.detach(), expected)


def test_bf16_embeddings_are_computed_in_float32():
    loss, x, labels = make_problem()
    x16 = x.detach().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x16, labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(x16.float(), labels), rtol=0, atol=0)


def test_ignored_rows_neither_count_nor_move_centers():
    loss, x, labels = make_problem()
    kept = labels != -1
    torch.testing.assert_close(loss(x, labels), loss(x[kept], labels[kept]))
    value = loss(x, torch.full_like(labels, -1))
    value.backward()
    assert float(value.detach()) == 0.0
    assert bool((loss.centers.grad == 0).all()) and bool((x.grad == 0).all())


def test_param_group_settings():
    loss = CenterLoss(CLASSES, DIM, weight=0.005, lr=0.25)
    (group,) = loss.param_groups()
    assert group["params"] == [loss.centers]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.25, 0.0, 0.0)
