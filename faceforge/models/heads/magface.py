"""MagFace: a margin that grows with the feature magnitude, which becomes a quality score.
Meng et al. 2021, https://arxiv.org/abs/2103.06627."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from faceforge.models.heads.margins import Margin, apply_to_target, clamp_cosine


class MagFace(Margin):
    """``s * cos(theta + m(a))`` on the target where ``cos(theta) > 0`` and ``s * cos(theta)``
    elsewhere (``easy_margin``, the default of MagFace's ``MagLinear``; without it, ArcFace's
    ``cos - m sin m`` past ``pi - m``), with ``a = clip(||f||, l_a, u_a)`` and the margin
    rising linearly from ``l_m``
    at ``l_a`` to ``u_m`` at ``u_a``; :meth:`regularizer` adds
    ``lambda_g * mean(1 / a + a / u_a^2)``, which pulls easy (high-margin) samples to large
    norms, so at test time ``||f||`` is the quality score (:func:`quality`).

    Unlike the other margins the norms keep their gradient: margin and regulariser train them.
    Paper defaults: ``l_a`` = 10, ``u_a`` = 110, ``l_m`` = 0.45, ``u_m`` = 0.8,
    ``lambda_g`` = 35, ``s`` = 64. Full classifier only: the regulariser is a per-sample term
    of the local batch, which the global-batch loss of Partial FC would count once per rank.
    """

    shardable = False

    def __init__(
        self,
        scale: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = True,
    ) -> None:
        super().__init__()
        self.scale, self.l_a, self.u_a, self.l_m, self.u_m = scale, l_a, u_a, l_m, u_m
        self.lambda_g, self.easy_margin = lambda_g, easy_margin

    def magnitude(self, norms: Tensor) -> Tensor:
        """``a``: the norms clipped to ``[l_a, u_a]``."""
        return norms.clamp(self.l_a, self.u_a)

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        if norms is None:
            raise ValueError("MagFace needs the embedding norms")
        a = self.magnitude(norms).unsqueeze(1)
        m = (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

        def target(c: Tensor) -> Tensor:
            clamped = clamp_cosine(c)
            sine = torch.sqrt(1.0 - clamped * clamped)
            shifted = clamped * torch.cos(m) - sine * torch.sin(m)
            if self.easy_margin:
                return torch.where(c > 0, shifted, c)
            return torch.where(c > torch.cos(math.pi - m), shifted, c - m * torch.sin(m))

        return apply_to_target(cosine, labels, target) * self.scale

    def regularizer(self, norms: Tensor) -> Tensor:
        a = self.magnitude(norms)
        return self.lambda_g * (1.0 / a + a / self.u_a**2).mean()


def quality(embeddings: Tensor) -> Tensor:
    """MagFace's quality score of each raw (unnormalised) embedding: its L2 norm."""
    return embeddings.norm(dim=1)
