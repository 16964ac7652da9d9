"""build_head: config plumbing, bad configs, and a short optimisation sanity check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faceforge.config import HeadConfig
from faceforge.errors import ConfigError
from faceforge.models.heads import (
    ArcFace,
    CombinedMargin,
    CosFace,
    MarginHead,
    NormFace,
    SoftmaxHead,
    SphereFaceHead,
    build_head,
    head_names,
)

#: every head that produces logits (``none`` trains on embedding losses only)
CLASSIFYING = [name for name in head_names() if name != "none"]


def test_registry_lists_every_head_type():
    assert head_names() == [
        "adaface", "arcface", "combined", "cosface", "curricularface", "elasticface",
        "elasticface_cos", "magface", "none", "normface", "softmax", "sphereface",
        "subcenter_arcface",
    ]  # fmt: skip


@pytest.mark.parametrize("name", CLASSIFYING)
def test_every_head_gives_finite_logits_and_gradients(name):
    torch.manual_seed(0)
    margin = 4.0 if name == "sphereface" else 0.3
    head = build_head(HeadConfig(type=name, margin=margin), 16, num_classes=5)
    x = torch.randn(6, 16, requires_grad=True)
    logits = head(x, torch.tensor([0, 1, 2, 3, 4, -1]))
    assert logits.shape == (6, 5) and logits.dtype == torch.float32
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4, 0])).backward()
    assert torch.isfinite(logits).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", CLASSIFYING)
def test_every_head_computes_in_float32_under_bf16_autocast(name):
    # in bf16 the scaled margin logits would be off by ~0.1 (checked without the guard)
    torch.manual_seed(0)
    margin = 4.0 if name == "sphereface" else 0.35
    head = build_head(HeadConfig(type=name, margin=margin), 32, num_classes=11).eval()
    x, labels = torch.randn(9, 32) * 5, torch.randint(0, 11, (9,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x, labels)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, head(x, labels), rtol=1e-5, atol=2e-4)


def test_config_fields_reach_the_modules():
    def margin_of(cfg: HeadConfig):
        head = build_head(cfg, 8, 3)
        assert isinstance(head, MarginHead)
        return head.margin

    arc = margin_of(HeadConfig(type="arcface", scale=32.0, margin=0.4, easy_margin=True))
    assert isinstance(arc, ArcFace) and (arc.scale, arc.margin, arc.easy_margin) == (
        32.0,
        0.4,
        True,
    )
    cos = margin_of(HeadConfig(type="cosface", scale=30.0, margin=0.35))
    assert isinstance(cos, CosFace) and (cos.scale, cos.margin) == (30.0, 0.35)
    comb = margin_of(HeadConfig(type="combined", m1=0.9, m2=0.4, m3=0.15))
    assert isinstance(comb, CombinedMargin) and (comb.m1, comb.m2, comb.m3) == (0.9, 0.4, 0.15)
    assert isinstance(margin_of(HeadConfig(type="normface", scale=16.0)), NormFace)
    assert isinstance(build_head(HeadConfig(type="softmax"), 8, 3), SoftmaxHead)
    sphere = build_head(
        HeadConfig(
            type="sphereface",
            margin=3.0,
            sphere_base=10.0,
            sphere_gamma=0.5,
            sphere_power=2.0,
            sphere_lambda_min=1.0,
        ),
        8,
        3,
    )
    assert isinstance(sphere, SphereFaceHead)
    assert (sphere.margin, sphere.base, sphere.gamma, sphere.power, sphere.lambda_min) == (
        3,
        10.0,
        0.5,
        2.0,
        1.0,
    )


def test_unknown_type_names_it_and_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        build_head(HeadConfig(type="magfacex"), 8, 3)
    message = str(info.value)
    assert "'magfacex'" in message
    assert all(name in message for name in head_names())


@pytest.mark.parametrize(
    "cfg",
    [
        HeadConfig(type="sphereface", margin=0.5),
        HeadConfig(type="sphereface", margin=0.0),
        HeadConfig(type="arcface", margin=2.0),
        HeadConfig(type="arcface", margin=-0.1),
        HeadConfig(type="cosface", margin=-0.1),
        HeadConfig(type="combined", m1=0.0),
        HeadConfig(type="normface", scale=0.0),
    ],
)
def test_impossible_settings_raise_config_error(cfg):
    with pytest.raises(ConfigError, match=r"head\."):
        build_head(cfg, 8, 3)


def test_arcface_lowers_the_loss_on_a_separable_problem():
    torch.manual_seed(0)
    classes, dim = 4, 8
    prototypes = torch.randn(classes, dim) * 3
    labels = torch.arange(classes).repeat(8)
    x = prototypes[labels] + 0.3 * torch.randn(len(labels), dim)
    head = build_head(HeadConfig(type="arcface", scale=16.0, margin=0.3), dim, classes)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(head(x, labels), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    # without margins (labels -1), the cosines alone now classify every sample
    assert (head(x, torch.full_like(labels, -1)).argmax(1) == labels).all()


@pytest.mark.parametrize(
    ("name", "paper"),
    [
        ("arcface", 0.5),
        ("cosface", 0.35),
        ("adaface", 0.4),
        ("curricularface", 0.5),
        ("elasticface", 0.5),
        ("elasticface_cos", 0.35),
        ("sphereface", 4),
    ],
)
def test_an_unset_margin_is_the_papers(name: str, paper: float) -> None:
    """One default of 0.5 for every head gave CosFace and AdaFace other margins than their
    papers', and made head.type=sphereface alone a ConfigError."""
    head = build_head(HeadConfig(type=name), 8, num_classes=3)
    margin = getattr(head, "margin", None)
    value = margin.margin if hasattr(margin, "margin") else margin
    assert value == pytest.approx(paper)


def test_margin_overrides_are_numbers_or_null() -> None:
    from faceforge.config import load_config

    assert load_config(None, ["head.margin=0.3"]).head.margin == 0.3
    assert load_config(None, ["head.margin=null"]).head.margin is None
    with pytest.raises(ConfigError, match="head.margin: expected a finite number"):
        load_config(None, ["head.margin=wide"])
