"""AdaFace: a margin that adapts to image quality through the feature norm.
Kim et al. 2022, https://arxiv.org/abs/2204.00964."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from faceforge.models.heads.margins import Margin, apply_to_target, clamp_cosine, labelled_sums

#: the norms are clipped to this range before their statistics are taken, as in the paper's code
NORM_RANGE = (0.001, 100.0)
#: keeps ``theta + g_angle`` inside (0, pi) and the division by the norm spread finite
EPS = 1e-3


class AdaFace(Margin):
    """``s * (cos(theta - m z) - (m + m z))`` on the target, where
    ``z = clip(h (||f|| - mu) / (sigma + eps), -1, 1)`` is the normalised feature norm (a proxy
    for image quality): high-quality images (z -> 1) get ArcFace-like angular margins, low
    quality ones (z -> -1) CosFace-like additive margins that ease them out.

    ``mu`` and ``sigma`` are EMAs (``alpha`` per training step) of the mean and the standard
    deviation of the norms of the global batch; they are buffers, so checkpoints hold them and
    every rank keeps the same values. The norms are detached: the margin does not train them.
    Only the target cosine is clamped (to 1e-7 off +-1; the official code clamps every cosine
    to +-(1 - 1e-3), which differs only above |cos| 0.999).
    Paper defaults: ``m`` = 0.4, ``h`` = 0.333, ``s`` = 64. Runs on a full or sharded classifier.
    """

    def __init__(
        self, scale: float = 64.0, margin: float = 0.4, h: float = 0.333, alpha: float = 0.01
    ) -> None:
        super().__init__()
        self.scale, self.margin, self.h, self.alpha = scale, margin, h, alpha
        # the paper's starting values
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        if norms is None:
            raise ValueError("AdaFace needs the embedding norms")
        norms = norms.detach().clamp(*NORM_RANGE)
        if self.training:
            self._update_statistics(norms, labels)
        mean, std = self.norm_mean.to(norms.dtype), self.norm_std.to(norms.dtype)
        z = (self.h * (norms - mean) / (std + EPS)).clamp(-1.0, 1.0).unsqueeze(1)
        angular, additive = -self.margin * z, self.margin + self.margin * z

        def target(c: Tensor) -> Tensor:
            theta = torch.acos(clamp_cosine(c)) + angular
            return torch.cos(theta.clamp(EPS, math.pi - EPS)) - additive

        return apply_to_target(cosine, labels, target) * self.scale

    @torch.no_grad()
    def _update_statistics(self, norms: Tensor, labels: Tensor) -> None:
        values = torch.stack([norms, norms * norms, torch.ones_like(norms)], dim=1)
        total, squares, count = labelled_sums(values, labels).double().unbind()
        if count < 2:
            return
        mean = total / count
        std = ((squares - count * mean * mean) / (count - 1)).clamp(min=0.0).sqrt()
        self.norm_mean.lerp_(mean.to(self.norm_mean.dtype), self.alpha)
        self.norm_std.lerp_(std.to(self.norm_std.dtype), self.alpha)
