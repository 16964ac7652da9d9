"""SphereFace (A-Softmax): multiplicative angular margin with annealed softening.
Liu et al. 2017, https://arxiv.org/abs/1704.08063."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from faceforge.models.heads.base import Head
from faceforge.models.heads.classifier import CosineClassifier
from faceforge.models.heads.margins import apply_to_target, clamp_cosine


def chebyshev(cosine: Tensor, m: int) -> Tensor:
    """``cos(m * theta)`` from ``cos(theta)`` for an integer ``m >= 1`` by the Chebyshev
    recurrence (no acos, so the gradient stays finite at +-1)."""
    previous, current = torch.ones_like(cosine), cosine
    for _ in range(m - 1):
        previous, current = current, 2.0 * cosine * current - previous
    return current


def sphere_psi(cosine: Tensor, m: int) -> Tensor:
    """``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta`` in ``[k pi/m, (k+1) pi/m]``:
    the monotonically decreasing extension of ``cos(m theta)`` to all of [0, pi]."""
    c = clamp_cosine(cosine)
    with torch.no_grad():
        k = torch.floor(torch.acos(c) * m / math.pi).clamp(max=m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * chebyshev(c, m) - 2.0 * k


class SphereFaceHead(Head):
    """A-Softmax logits: ``||x|| * (lambda cos(theta) + psi(theta)) / (1 + lambda)`` on the
    target, ``||x|| cos(theta)`` elsewhere; class weights are normalised, features are not.

    ``lambda = max(lambda_min, base * (1 + gamma * iteration) ** -power)`` anneals from the
    plain softmax towards the full margin, as in the paper's released Caffe layer: each
    training-mode forward first increments ``iteration`` (a buffer, so it is saved in the
    state dict and a resumed run continues the schedule exactly), then uses it. Eval-mode
    forwards use the current value without incrementing. The forward is the Caffe layer's;
    the gradient is autograd's exact one (the Caffe layer's hand-written backward normalises
    its terms and leaves the margin out of the weight gradient).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
    ) -> None:
        super().__init__()
        self.fc = CosineClassifier(embedding_size, num_classes)
        self.margin = margin
        self.base, self.gamma, self.power, self.lambda_min = base, gamma, power, lambda_min
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> Tensor:
        """The softening weight lambda for the current ``iteration`` (a 0-d tensor)."""
        annealed = self.base * (1.0 + self.gamma * self.iteration.double()) ** -self.power
        return annealed.clamp(min=self.lambda_min)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if self.training:
            self.iteration += 1
        lam = self.current_lambda().to(embeddings.dtype)
        cosine = self.fc(embeddings)
        norm = embeddings.norm(dim=1, keepdim=True)

        def soften(c: Tensor) -> Tensor:
            return (lam * c + sphere_psi(c, self.margin)) / (1.0 + lam)

        return norm * apply_to_target(cosine, labels, soften)
