"""Full heads (FC + margin) against numpy float64 recomputations, across dtypes and autocast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceforge.models.heads import ArcFace, MarginHead, SoftmaxHead

TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 2e-4},
    torch.float64: {"rtol": 1e-12, "atol": 1e-10},
}
EMB, CLASSES, S, M = 32, 11, 64.0, 0.5


def normalise(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def arcface_reference(x: np.ndarray, w: np.ndarray, labels: np.ndarray) -> np.ndarray:
    cosine = normalise(x) @ normalise(w).T
    out = cosine.copy()
    for i, label in enumerate(labels):
        if label != -1:
            theta = math.acos(cosine[i, label])
            c = cosine[i, label]
            out[i, label] = math.cos(theta + M) if theta + M <= math.pi else c - M * math.sin(M)
    return S * out


def make_inputs(seed: int = 1):
    torch.manual_seed(seed)
    x = torch.randn(9, EMB) * 5
    labels = torch.randint(0, CLASSES, (9,))
    labels[4] = -1
    return x, labels


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arcface_head_matches_formula(dtype):
    torch.manual_seed(0)
    head = MarginHead(EMB, CLASSES, ArcFace(S, M)).to(dtype)
    x, labels = make_inputs()
    logits = head(x.to(dtype), labels)
    assert logits.dtype == dtype and logits.shape == (9, CLASSES)
    expected = arcface_reference(as_numpy(x.to(dtype)), as_numpy(head.fc.weight), labels.numpy())
    np.testing.assert_allclose(as_numpy(logits), expected, **TOLERANCE[dtype])


def test_head_upcasts_bf16_embeddings():
    torch.manual_seed(0)
    head = MarginHead(EMB, CLASSES, ArcFace(S, M))
    x, labels = make_inputs()
    x16 = x.bfloat16()
    logits = head(x16, labels)
    assert logits.dtype == torch.float32
    expected = arcface_reference(as_numpy(x16), as_numpy(head.fc.weight), labels.numpy())
    np.testing.assert_allclose(as_numpy(logits), expected, **TOLERANCE[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_head_is_affine_on_raw_embeddings(dtype):
    torch.manual_seed(0)
    head = SoftmaxHead(EMB, CLASSES).to(dtype)
    x, labels = make_inputs()
    logits = head(x.to(dtype), labels)
    w, b = as_numpy(head.fc.weight), as_numpy(head.fc.bias)
    np.testing.assert_allclose(
        as_numpy(logits), as_numpy(x.to(dtype)) @ w.T + b, **TOLERANCE[dtype]
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head.float()(x, labels).dtype == torch.float32


def test_ignored_rows_are_plain_scaled_cosines():
    torch.manual_seed(0)
    head = MarginHead(EMB, CLASSES, ArcFace(S, M))
    x, _ = make_inputs()
    cosine = normalise(as_numpy(x)) @ normalise(as_numpy(head.fc.weight)).T
    logits = head(x, torch.full((9,), -1))
    np.testing.assert_allclose(as_numpy(logits), S * cosine, **TOLERANCE[torch.float32])
