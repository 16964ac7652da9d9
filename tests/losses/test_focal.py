"""Label-smoothed focal cross-entropy against its formula recomputed in float64 numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforge.losses.focal import FocalLoss, focal_cross_entropy

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float64: {"rtol": 1e-12, "atol": 1e-12},
}


def reference(logits: np.ndarray, labels: np.ndarray, gamma: float, eps: float) -> float:
    """mean over labelled rows of -sum_c q_c (1 - p_c)^gamma log p_c, by explicit loops."""
    losses = []
    classes = logits.shape[1]
    for row, label in zip(logits.astype(np.float64), labels, strict=True):
        if label == -1:
            continue
        p = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        q = np.full(classes, eps / classes)
        q[label] += 1.0 - eps
        losses.append(-sum(q[c] * (1 - p[c]) ** gamma * np.log(p[c]) for c in range(classes)))
    return float(np.mean(losses)) if losses else 0.0


def make_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=(12, 7))
    labels = rng.integers(0, 7, size=12)
    labels[5] = -1
    return logits, labels


SETTINGS = [(0.0, 0.0), (0.0, 0.1), (2.0, 0.0), (2.0, 0.1), (0.5, 0.3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("gamma", "eps"), SETTINGS)
def test_matches_formula(gamma, eps, dtype):
    logits, labels = make_inputs()
    got = focal_cross_entropy(torch.tensor(logits, dtype=dtype), torch.tensor(labels), gamma, eps)
    assert got.dtype == dtype
    expected = reference(
        logits.astype(np.float32) if dtype == torch.float32 else logits, labels, gamma, eps
    )
    assert float(got) == pytest.approx(
        expected, **{"rel": TOLERANCE[dtype]["rtol"], "abs": TOLERANCE[dtype]["atol"]}
    )


@pytest.mark.parametrize(("gamma", "eps"), SETTINGS)
def test_bf16_logits_are_computed_in_float32(gamma, eps):
    logits, labels = make_inputs()
    logits16 = torch.tensor(logits).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = FocalLoss(gamma, eps)(logits16, torch.tensor(labels))
    assert got.dtype == torch.float32
    expected = reference(logits16.double().numpy(), labels, gamma, eps)
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_gamma_zero_is_torch_cross_entropy():
    logits, labels = make_inputs()
    kept = labels != -1
    expected = F.cross_entropy(
        torch.tensor(logits[kept]), torch.tensor(labels[kept]), label_smoothing=0.2
    )
    got = FocalLoss(0.0, 0.2)(torch.tensor(logits), torch.tensor(labels))
    torch.testing.assert_close(got, expected)


def test_ignored_rows_do_not_count():
    logits, labels = make_inputs()
    kept = labels != -1
    for gamma, eps in SETTINGS:
        full = focal_cross_entropy(torch.tensor(logits), torch.tensor(labels), gamma, eps)
        subset = focal_cross_entropy(
            torch.tensor(logits[kept]), torch.tensor(labels[kept]), gamma, eps
        )
        torch.testing.assert_close(full, subset)
    logits_t = torch.tensor(logits, requires_grad=True)
    none = focal_cross_entropy(logits_t, torch.full((12,), -1), 2.0, 0.1)
    none.backward()
    assert float(none.detach()) == 0.0 and bool((logits_t.grad == 0).all())


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_gradient_is_finite_on_saturated_logits(gamma):
    logits = torch.tensor([[80.0, -80.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    loss = focal_cross_entropy(logits, torch.tensor([0, 1]), gamma, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_focusing_downweights_easy_samples():
    easy = torch.tensor([[5.0, 0.0, 0.0]])
    hard = torch.tensor([[0.0, 1.0, 0.0]])
    label = torch.tensor([0])

    def ratio(x: torch.Tensor) -> float:
        return float(focal_cross_entropy(x, label, 2.0) / focal_cross_entropy(x, label))

    assert ratio(easy) < 0.001 < 0.3 < ratio(hard) < 1.0
    assert FocalLoss(2.0).name == "focal" and FocalLoss(0.0).name == "ce"
