"""ElasticFace: ArcFace / CosFace margins drawn per sample from a normal distribution.
Boutros et al. 2022, https://arxiv.org/abs/2109.09416."""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from faceforge.models.heads.margins import Margin, apply_to_target, clamp_cosine


class ElasticMargin(Margin, abc.ABC):
    """Every labelled row of a training step draws its margin from ``N(m, sigma)`` (the
    default generator; :func:`~faceforge.train.main.setup` seeds it); evaluation uses ``m``.

    ``plus`` (ElasticFace+) sorts the drawn margins and hands the smallest to the sample
    closest to its class centre (highest target cosine), the largest to the farthest, which
    the margin pushes hardest (the official code's intent: its indexing applies the inverse
    of that permutation). Rows without a label take no part in the ranking.
    Subclasses give the target as a function of the cosine and the margins.
    Full classifier only: under Partial FC every rank would draw other margins for a row.
    """

    shardable = False

    def __init__(self, scale: float, margin: float, sigma: float = 0.05, plus: bool = False):
        super().__init__()
        self.scale, self.margin, self.sigma, self.plus = scale, margin, sigma, plus

    def margins(self, target: Tensor, labelled: Tensor) -> Tensor:
        """Per-row margins (N, 1) for the target cosines ``target`` (N, 1) of the rows where
        ``labelled`` (N,) is true (the others' margins are never used)."""
        if not self.training:
            return torch.full_like(target, self.margin)
        drawn = torch.normal(
            self.margin, self.sigma, target.shape, dtype=target.dtype, device=target.device
        )
        if not self.plus:
            return drawn
        rows = labelled.nonzero().squeeze(1)
        nearest_first = rows[target.detach()[rows, 0].argsort(descending=True)]
        ordered = drawn.clone()
        ordered[nearest_first] = drawn[rows].sort(dim=0).values  # smallest margin first
        return ordered

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        index = labels.clamp(min=0).long().unsqueeze(1)
        m = self.margins(cosine.gather(1, index), labels >= 0)
        return apply_to_target(cosine, labels, lambda c: self.target(c, m)) * self.scale

    @abc.abstractmethod
    def target(self, cosine: Tensor, margins: Tensor) -> Tensor:
        """The target logit (before scaling) for cosines and margins (N, 1)."""


class ElasticArcFace(ElasticMargin):
    """``s * cos(theta + m_i)`` on the target, ``m_i ~ N(0.5, 0.05)`` by default."""

    def __init__(
        self, scale: float = 64.0, margin: float = 0.5, sigma: float = 0.05, plus: bool = False
    ) -> None:
        super().__init__(scale, margin, sigma, plus)

    def target(self, cosine: Tensor, margins: Tensor) -> Tensor:
        theta = torch.acos(clamp_cosine(cosine)) + margins
        return torch.cos(theta.clamp(max=math.pi))


class ElasticCosFace(ElasticMargin):
    """``s * (cos(theta) - m_i)`` on the target, ``m_i ~ N(0.35, 0.05)`` by default."""

    def __init__(
        self, scale: float = 64.0, margin: float = 0.35, sigma: float = 0.05, plus: bool = False
    ) -> None:
        super().__init__(scale, margin, sigma, plus)

    def target(self, cosine: Tensor, margins: Tensor) -> Tensor:
        return cosine - margins
