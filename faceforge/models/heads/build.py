"""Head registry and the public factory :func:`build_head`."""

from __future__ import annotations

import math

from torch import nn

from faceforge.config import HeadConfig
from faceforge.errors import ConfigError
from faceforge.models.heads.base import Head
from faceforge.models.heads.classifier import MarginHead, SoftmaxHead
from faceforge.models.heads.margins import ArcFace, CombinedMargin, CosFace, NormFace
from faceforge.models.heads.sphereface import SphereFaceHead
from faceforge.registry import Registry


def _softmax(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    return SoftmaxHead(embedding_size, num_classes)


def _normface(cfg: HeadConfig) -> nn.Module:
    return NormFace(cfg.scale)


def _arcface(cfg: HeadConfig) -> nn.Module:
    if not 0.0 <= cfg.margin < math.pi / 2:
        raise ConfigError(
            f"head.margin for arcface is an angle in radians in [0, pi/2), "
            f"typically 0.5; got {cfg.margin}"
        )
    return ArcFace(cfg.scale, cfg.margin, cfg.easy_margin)


def _cosface(cfg: HeadConfig) -> nn.Module:
    if cfg.margin < 0.0:
        raise ConfigError(
            f"head.margin for cosface must be >= 0 (typically 0.35); got {cfg.margin}"
        )
    return CosFace(cfg.scale, cfg.margin)


def _combined(cfg: HeadConfig) -> nn.Module:
    if cfg.m1 <= 0.0:
        raise ConfigError(
            f"head.m1 must be > 0 (1.0 disables the multiplicative margin); got {cfg.m1}"
        )
    return CombinedMargin(cfg.scale, cfg.m1, cfg.m2, cfg.m3)


#: margins mapping (cosine, labels) to logits: they run on a full or a sharded classifier
MARGINS: Registry[nn.Module] = Registry.of(
    "margin",
    {"normface": _normface, "arcface": _arcface, "cosface": _cosface, "combined": _combined},
)


def build_margin(cfg: HeadConfig) -> nn.Module:
    """The margin of ``cfg.type`` alone, for a Partial FC classifier; the head types whose
    margin needs the whole classifier (softmax, sphereface) are refused."""
    if cfg.type not in MARGINS:
        raise ConfigError(
            f"head.type={cfg.type!r} cannot run with head.partial_fc (it needs the whole "
            f"classifier); use one of {', '.join(MARGINS.names())}"
        )
    return MARGINS.get(cfg.type)(cfg)


def _margin_head(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    return MarginHead(embedding_size, num_classes, MARGINS.get(cfg.type)(cfg))


def _sphereface(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    if cfg.margin < 1 or cfg.margin != int(cfg.margin):
        raise ConfigError(
            f"head.margin for sphereface is the integer angle multiplier m >= 1 (the paper "
            f"uses 4); got {cfg.margin}"
        )
    return SphereFaceHead(
        embedding_size,
        num_classes,
        margin=int(cfg.margin),
        base=cfg.sphere_base,
        gamma=cfg.sphere_gamma,
        power=cfg.sphere_power,
        lambda_min=cfg.sphere_lambda_min,
    )


HEADS: Registry[Head] = Registry.of(
    "head",
    {
        "softmax": _softmax,
        "sphereface": _sphereface,
        **dict.fromkeys(MARGINS.names(), _margin_head),
    },
)


def head_names() -> list[str]:
    """Sorted head types accepted by :func:`build_head` (``head.type`` in the config)."""
    return HEADS.names()


def build_head(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    """Build the classification head named by ``cfg.type``.

    The head's ``forward(embeddings (N, D), labels (N,))`` returns float32 logits
    (N, num_classes) ready for cross-entropy; rows labelled -1 get no margin. An unknown
    type or an impossible margin raises :class:`~faceforge.errors.ConfigError`.

    >>> import torch
    >>> head = build_head(HeadConfig(type="cosface", margin=0.35), 128, num_classes=10)
    >>> head(torch.randn(4, 128), torch.tensor([0, 3, 9, -1])).shape
    torch.Size([4, 10])
    """
    if cfg.type not in HEADS:
        raise ConfigError(f"unknown head.type {cfg.type!r}; known types: {', '.join(head_names())}")
    if cfg.scale <= 0.0:
        raise ConfigError(f"head.scale must be > 0 (typically 64); got {cfg.scale}")
    return HEADS.get(cfg.type)(cfg, embedding_size, num_classes)
