"""Head registry and the public factory :func:`build_head`."""

from __future__ import annotations

import math

from faceforge.config import HeadConfig
from faceforge.errors import ConfigError, shorten
from faceforge.models.heads.adaface import AdaFace
from faceforge.models.heads.base import Head
from faceforge.models.heads.classifier import MarginHead, NoHead, SoftmaxHead
from faceforge.models.heads.curricularface import CurricularFace
from faceforge.models.heads.elasticface import ElasticArcFace, ElasticCosFace
from faceforge.models.heads.magface import MagFace
from faceforge.models.heads.margins import ArcFace, CombinedMargin, CosFace, Margin, NormFace
from faceforge.models.heads.sphereface import SphereFaceHead
from faceforge.models.heads.subcenter import SubCenterHead
from faceforge.registry import Registry


def _softmax(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    return SoftmaxHead(embedding_size, num_classes)


def _normface(cfg: HeadConfig) -> Margin:
    return NormFace(cfg.scale)


def _margin(cfg: HeadConfig, paper: float) -> float:
    """``head.margin``, or the paper's value for this head when unset."""
    return paper if cfg.margin is None else cfg.margin


def _angular_margin(cfg: HeadConfig, paper: float) -> float:
    margin = _margin(cfg, paper)
    if not 0.0 <= margin < math.pi / 2:
        raise ConfigError(
            f"head.margin for {cfg.type} is an angle in radians in [0, pi/2), "
            f"typically {paper}; got {margin}"
        )
    return margin


def _arcface(cfg: HeadConfig) -> Margin:
    return ArcFace(cfg.scale, _angular_margin(cfg, 0.5), bool(cfg.easy_margin))


def _adaface(cfg: HeadConfig) -> Margin:
    return AdaFace(cfg.scale, _angular_margin(cfg, 0.4), cfg.adaface_h, cfg.ema_alpha)


def _curricularface(cfg: HeadConfig) -> Margin:
    return CurricularFace(cfg.scale, _angular_margin(cfg, 0.5), cfg.ema_alpha)


def _magface(cfg: HeadConfig) -> Margin:
    if not 0.0 < cfg.mag_l_a < cfg.mag_u_a:
        raise ConfigError(
            f"head.mag_l_a < head.mag_u_a must be positive norms (10 and 110 in the paper); "
            f"got {cfg.mag_l_a} and {cfg.mag_u_a}"
        )
    if not 0.0 <= cfg.mag_l_m <= cfg.mag_u_m < math.pi / 2:
        raise ConfigError(
            f"head.mag_l_m <= head.mag_u_m must be angles in [0, pi/2) (0.45 and 0.8 in the "
            f"paper); got {cfg.mag_l_m} and {cfg.mag_u_m}"
        )
    easy = cfg.easy_margin is not False  # unset: on, as MagFace's MagLinear
    bounds = (cfg.mag_l_a, cfg.mag_u_a, cfg.mag_l_m, cfg.mag_u_m)
    return MagFace(cfg.scale, *bounds, cfg.mag_lambda_g, easy_margin=easy)


def _elasticface(cfg: HeadConfig) -> Margin:
    margin = _angular_margin(cfg, 0.5)
    return ElasticArcFace(cfg.scale, margin, cfg.elastic_sigma, cfg.elastic_plus)


def _elasticface_cos(cfg: HeadConfig) -> Margin:
    return ElasticCosFace(cfg.scale, _cosface(cfg).margin, cfg.elastic_sigma, cfg.elastic_plus)


def _cosface(cfg: HeadConfig) -> Margin:
    margin = _margin(cfg, 0.35)
    if margin < 0.0:
        raise ConfigError(f"head.margin for {cfg.type} must be >= 0 (typically 0.35); got {margin}")
    return CosFace(cfg.scale, margin)


def _combined(cfg: HeadConfig) -> Margin:
    if cfg.m1 <= 0.0:
        raise ConfigError(
            f"head.m1 must be > 0 (1.0 disables the multiplicative margin); got {cfg.m1}"
        )
    return CombinedMargin(cfg.scale, cfg.m1, cfg.m2, cfg.m3)


#: margins mapping (cosine, labels, norms) to logits, on a full or (if shardable) sharded
#: classifier
MARGINS: Registry[Margin] = Registry.of(
    "margin",
    {
        "normface": _normface,
        "arcface": _arcface,
        "cosface": _cosface,
        "combined": _combined,
        "adaface": _adaface,
        "curricularface": _curricularface,
        "magface": _magface,
        "elasticface": _elasticface,
        "elasticface_cos": _elasticface_cos,
    },
)


def shardable_names() -> list[str]:
    """Head types that run on a sharded (Partial FC) classifier."""
    return [name for name in MARGINS.names() if MARGINS.get(name)(HeadConfig(type=name)).shardable]


def build_margin(cfg: HeadConfig) -> Margin:
    """The margin of ``cfg.type`` alone, for a Partial FC classifier; the head types that need
    the whole classifier (softmax, sphereface, subcenter_arcface, none) or a per-rank batch
    (magface, elasticface: see their docstrings) are refused."""
    margin = MARGINS.get(cfg.type)(cfg) if cfg.type in MARGINS else None
    if margin is None or not margin.shardable:
        raise ConfigError(
            f"head.type={cfg.type!r} cannot run with head.partial_fc (it needs the whole "
            f"classifier and the local batch); use one of {', '.join(shardable_names())}"
        )
    return margin


def _margin_head(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    return MarginHead(embedding_size, num_classes, MARGINS.get(cfg.type)(cfg))


def _sphereface(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    margin = _margin(cfg, 4)
    if margin < 1 or margin != int(margin):
        raise ConfigError(
            f"head.margin for sphereface is the integer angle multiplier m >= 1 (the paper "
            f"uses 4); got {margin}"
        )
    return SphereFaceHead(
        embedding_size,
        num_classes,
        margin=int(margin),
        base=cfg.sphere_base,
        gamma=cfg.sphere_gamma,
        power=cfg.sphere_power,
        lambda_min=cfg.sphere_lambda_min,
    )


def _subcenter_arcface(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    return SubCenterHead(
        embedding_size,
        num_classes,
        _arcface(cfg),
        cfg.subcenters,
        cfg.subcenter_drop_step,
        cfg.subcenter_drop_angle,
    )


def _none(cfg: HeadConfig, embedding_size: int, num_classes: int) -> Head:
    return NoHead()


HEADS: Registry[Head] = Registry.of(
    "head",
    {
        "softmax": _softmax,
        "sphereface": _sphereface,
        "subcenter_arcface": _subcenter_arcface,
        "none": _none,
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
        known = ", ".join(head_names())
        raise ConfigError(f"unknown head.type {shorten(cfg.type)}; known types: {known}")
    if cfg.scale <= 0.0:
        raise ConfigError(f"head.scale must be > 0 (typically 64); got {cfg.scale}")
    return HEADS.get(cfg.type)(cfg, embedding_size, num_classes)
