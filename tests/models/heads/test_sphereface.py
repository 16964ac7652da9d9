"""SphereFace: psi, the annealed target logit and the saved iteration counter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.models.heads.sphereface import SphereFaceHead, chebyshev, sphere_psi

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-4},
    torch.float64: {"rtol": 1e-10, "atol": 1e-9},
}
EMB, CLASSES = 16, 6


def psi_reference(c: float, m: int) -> float:
    theta = math.acos(c)
    k = min(math.floor(theta * m / math.pi), m - 1)
    return (-1) ** k * math.cos(m * theta) - 2 * k


def lambda_reference(it: int, base=1000.0, gamma=0.12, power=1.0, lambda_min=5.0) -> float:
    return max(lambda_min, base * (1 + gamma * it) ** -power)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_chebyshev_and_psi_match_acos_formula(m):
    grid = np.linspace(-0.999, 0.999, 401)
    c = torch.tensor(grid)
    expected_cos = [math.cos(m * math.acos(v)) for v in grid]
    np.testing.assert_allclose(chebyshev(c, m).numpy(), expected_cos, atol=1e-9)
    np.testing.assert_allclose(
        sphere_psi(c, m).numpy(), [psi_reference(v, m) for v in grid], atol=1e-9
    )
    # psi decreases monotonically in theta (increases with the cosine) and spans [-2m + 1, 1]
    assert bool((sphere_psi(c, m).diff() > 0).all())
    ends = sphere_psi(torch.tensor([-1.0, 1.0], dtype=torch.float64), m)
    expected_ends = torch.tensor([1.0 - 2 * m, 1.0], dtype=torch.float64)
    torch.testing.assert_close(ends, expected_ends, rtol=0, atol=1e-5)  # cosines clamped by 1e-7


def sphere_reference(x: np.ndarray, w: np.ndarray, labels: np.ndarray, m: int, lam: float):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    cosine = (x / norms) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    out = cosine.copy()
    for i, label in enumerate(labels):
        if label != -1:
            c = cosine[i, label]
            out[i, label] = (lam * c + psi_reference(c, m)) / (1 + lam)
    return norms * out


def make_inputs():
    torch.manual_seed(1)
    x = torch.randn(8, EMB) * 3
    labels = torch.randint(0, CLASSES, (8,))
    labels[2] = -1
    return x, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logits_match_formula_on_first_training_step(dtype):
    torch.manual_seed(0)
    head = SphereFaceHead(EMB, CLASSES, margin=4).to(dtype).train()
    x, labels = make_inputs()
    logits = head(x.to(dtype), labels)
    assert logits.dtype == dtype and int(head.iteration) == 1
    w = head.fc.weight.detach().double().numpy()
    expected = sphere_reference(
        x.to(dtype).double().numpy(), w, labels.numpy(), 4, lambda_reference(1)
    )
    np.testing.assert_allclose(logits.detach().double().numpy(), expected, **TOLERANCE[dtype])


def test_lambda_anneals_down_to_its_floor():
    head = SphereFaceHead(EMB, CLASSES, base=1000.0, gamma=0.12, power=1.0, lambda_min=5.0)
    x, labels = make_inputs()
    for step in range(1, 4):
        head(x, labels)
        assert int(head.iteration) == step
        assert float(head.current_lambda()) == pytest.approx(lambda_reference(step))
    # 1000 / (1 + 0.12 it) reaches 5 between it = 1658 and 1659
    for it, expected in [(1658, 1000 / (1 + 0.12 * 1658)), (1659, 5.0), (10**6, 5.0)]:
        head.iteration.fill_(it)
        assert float(head.current_lambda()) == pytest.approx(expected)
        assert expected == pytest.approx(lambda_reference(it))


def test_eval_forward_does_not_advance_the_schedule():
    head = SphereFaceHead(EMB, CLASSES)
    x, labels = make_inputs()
    head(x, labels)
    head.eval()
    head(x, labels)
    assert int(head.iteration) == 1


def test_state_dict_round_trip_resumes_the_schedule_exactly():
    torch.manual_seed(0)
    head = SphereFaceHead(EMB, CLASSES)
    x, labels = make_inputs()
    for _ in range(5):
        head(x, labels)
    state = head.state_dict()
    assert "iteration" in state and int(state["iteration"]) == 5
    resumed = SphereFaceHead(EMB, CLASSES)
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed(x, labels), head(x, labels), rtol=0, atol=0)
    assert int(resumed.iteration) == int(head.iteration) == 6


def test_ignored_rows_are_norm_times_cosine():
    head = SphereFaceHead(EMB, CLASSES)
    x, _ = make_inputs()
    labels = torch.full((8,), -1)
    w = head.fc.weight.detach().double().numpy()
    expected = sphere_reference(x.double().numpy(), w, labels.numpy(), 4, 0.0)
    np.testing.assert_allclose(
        head(x, labels).detach().numpy(), expected, **TOLERANCE[torch.float32]
    )


def test_gradients_are_finite_at_plus_minus_one():
    c = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64, requires_grad=True)
    sphere_psi(c, 4).sum().backward()
    assert torch.isfinite(c.grad).all()
