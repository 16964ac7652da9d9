"""CurricularFace: an ArcFace target with hard negatives re-weighted by a learned curriculum.
Huang et al. 2020, https://arxiv.org/abs/2004.00288."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from faceforge.models.heads.margins import Margin, clamp_cosine, labelled_sums


class CurricularFace(Margin):
    """``s * cos(theta_y + m)`` on the target (with ArcFace's ``cos - m sin m`` fallback past
    ``pi - m``); each hard negative, ``cos(theta_j) > cos(theta_y + m)`` (the plain
    ``cos(theta_y + m)``, as the official code, not the fallback), becomes
    ``cos(theta_j) * (t + cos(theta_j))``. ``t`` is an EMA (``alpha`` per training step) of the
    mean target cosine of the global batch, a buffer starting at 0: early on hard negatives
    are damped (easy samples first), later emphasised.

    Paper defaults: ``m`` = 0.5, ``s`` = 64. Runs on a full or a sharded classifier (there,
    every row's target cosine is summed from the one rank holding it).
    """

    def __init__(self, scale: float = 64.0, margin: float = 0.5, alpha: float = 0.01) -> None:
        super().__init__()
        self.scale, self.margin, self.alpha = scale, margin, alpha
        self.register_buffer("t", torch.tensor(0.0))

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        held = labels != -1
        index = labels.clamp(min=0).long().unsqueeze(1)
        target = cosine.gather(1, index)
        shifted = self._arc(target)
        if self.training:
            self._update_t(target.detach(), labels)
        with torch.no_grad():
            boundary = self._shifted(self._row_targets(target.detach(), held))
            hard = cosine.detach() > boundary
            if not self.sharded:
                hard &= held.unsqueeze(1)
        t = self.t.to(cosine.dtype)
        logits = torch.where(hard, cosine * (t + cosine), cosine)
        kept = logits.gather(1, index)  # an unlabelled row's column 0: an ordinary negative
        logits = logits.scatter(1, index, torch.where(held.unsqueeze(1), shifted, kept))
        return logits * self.scale

    def _shifted(self, c: Tensor) -> Tensor:
        """``cos(theta + m)``."""
        clamped = clamp_cosine(c)
        sine = torch.sqrt(1.0 - clamped * clamped)
        return clamped * math.cos(self.margin) - sine * math.sin(self.margin)

    def _arc(self, c: Tensor) -> Tensor:
        """``cos(theta + m)``, or ``cos(theta) - m sin m`` past ``pi - m``."""
        fallback = c - self.margin * math.sin(self.margin)
        return torch.where(c > math.cos(math.pi - self.margin), self._shifted(c), fallback)

    def _row_targets(self, target: Tensor, held: Tensor) -> Tensor:
        """Every row's target cosine: local, or summed from the rank holding it when sharded."""
        if not self.sharded:
            return target
        summed = torch.where(held.unsqueeze(1), target, 0.0)
        dist.all_reduce(summed, dist.ReduceOp.SUM)
        return summed

    @torch.no_grad()
    def _update_t(self, target: Tensor, labels: Tensor) -> None:
        values = torch.cat([target, torch.ones_like(target)], dim=1)
        total, count = labelled_sums(values, labels).double().unbind()
        if count > 0:
            self.t.lerp_((total / count).to(self.t.dtype), self.alpha)
