"""build_loss: composition from the config, reported parts, param groups, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforge.config import HeadConfig, LossConfig
from faceforge.errors import ConfigError
from faceforge.losses import CenterLoss, build_loss
from faceforge.models.heads import build_head


def make_batch():
    torch.manual_seed(0)
    logits = torch.randn(6, 4) * 3
    embeddings = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 2, 3, 1, -1])
    return logits, embeddings, labels


def test_default_is_plain_cross_entropy_without_params():
    loss = build_loss(LossConfig(), 8, 4)
    logits, embeddings, labels = make_batch()
    total, parts = loss(logits, embeddings, labels)
    torch.testing.assert_close(total, F.cross_entropy(logits[:5], labels[:5]))
    assert {k: float(v) for k, v in parts.items()} == {"ce": pytest.approx(float(total))}
    assert loss.center is None and loss.param_groups() == [] and list(loss.parameters()) == []


def test_seed_recipe_total_is_focal_plus_weighted_center():
    loss = build_loss(LossConfig(focal_gamma=2.0, center_weight=0.005, center_lr=0.5), 8, 4)
    assert isinstance(loss.center, CenterLoss)
    with torch.no_grad():
        loss.center.centers.normal_()
    logits, embeddings, labels = make_batch()
    total, parts = loss(logits, embeddings, labels)
    assert sorted(parts) == ["center", "focal"]
    kept = slice(0, 5)
    log_p = F.log_softmax(logits[kept].double(), dim=1).gather(1, labels[kept, None]).squeeze(1)
    focal = float((-((1 - log_p.exp()) ** 2) * log_p).mean())
    diff = embeddings[kept].double() - loss.center.centers.detach().double()[labels[kept]]
    center = 0.005 * 0.5 * float(diff.square().sum(1).mean())
    assert float(parts["focal"]) == pytest.approx(focal, rel=1e-5)
    assert float(parts["center"]) == pytest.approx(center, rel=1e-5)
    assert float(total.detach()) == pytest.approx(focal + center, rel=1e-5)


def test_label_smoothing_reaches_the_classification_term():
    loss = build_loss(LossConfig(label_smoothing=0.1), 8, 4)
    logits, embeddings, labels = make_batch()
    total, _ = loss(logits, embeddings, labels)
    torch.testing.assert_close(total, F.cross_entropy(logits[:5], labels[:5], label_smoothing=0.1))


def test_one_training_step_updates_model_and_centers_by_their_own_rules():
    torch.manual_seed(0)
    head = build_head(HeadConfig(type="arcface", scale=16.0), 8, 4)
    loss = build_loss(LossConfig(focal_gamma=2.0, center_weight=0.005, center_lr=0.5), 8, 4)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for group in loss.param_groups():
        optimizer.add_param_group(group)
    _, embeddings, labels = make_batch()
    before = head.fc.weight.detach().clone()
    total, _ = loss(head(embeddings, labels), embeddings, labels)
    total.backward()
    optimizer.step()
    # centers start at 0: c_j <- 0.5 * sum_{y_i = j} x_i / (1 + n_j)
    expected = np.zeros((4, 8))
    for j in range(4):
        members = embeddings[labels == j].numpy()
        expected[j] = 0.5 * members.sum(axis=0) / (1 + len(members))
    np.testing.assert_allclose(loss.center.centers.detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(head.fc.weight.detach(), before)


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (LossConfig(focal_gamma=-1.0), "loss.focal_gamma"),
        (LossConfig(label_smoothing=1.0), "loss.label_smoothing"),
        (LossConfig(label_smoothing=-0.1), "loss.label_smoothing"),
        (LossConfig(center_weight=-0.01), "loss.center_weight"),
        (LossConfig(center_weight=0.01, center_lr=0.0), "loss.center_lr"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key):
        build_loss(cfg, 8, 4)
