"""Margins on cosine logits: each maps ``(cosine (N, C), labels (N,), norms (N,))`` to scaled
logits.

As in insightface's arcface_torch, the margin is separate from the FC layer, so the same
margin serves a plain cosine classifier or a Partial FC layer. ``norms`` are the embeddings'
L2 norms before normalisation (AdaFace, MagFace read them). Rows labelled ``-1`` get no margin
(on a sharded classifier: their class is on another rank). Angular margins are in radians.

Batch statistics (the EMAs of AdaFace and CurricularFace) are taken over the labelled rows
and summed over the process group when one is running: under DDP each rank's rows are its
local batch, under Partial FC each row of the all-gathered batch is labelled on exactly one
rank, so either way every rank sees the statistics of the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

#: cosines are kept this far inside [-1, 1] before acos or sqrt(1 - cos^2), whose derivatives
#: are infinite at +-1
COS_EPS = 1e-7


def clamp_cosine(cosine: Tensor) -> Tensor:
    """Cosine clamped to [-1 + eps, 1 - eps] so acos and sin have finite gradients."""
    return cosine.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)


def apply_to_target(cosine: Tensor, labels: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Copy of ``cosine`` whose entry ``[i, labels[i]]`` is ``fn`` of itself, for every row
    with ``labels[i] != -1``; out of place, so autograd sees every step."""
    index = labels.clamp(min=0).long().unsqueeze(1)
    target = cosine.gather(1, index)
    modified = torch.where((labels != -1).unsqueeze(1), fn(target), target)
    return cosine.scatter(1, index, modified)


def process_group_active() -> bool:
    """Whether a process group of more than one rank is running (statistics are reduced)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def labelled_sums(values: Tensor, labels: Tensor) -> Tensor:
    """Sums (k,) over the labelled rows of ``values`` (N, k), and over the process group when
    one is running; a column of ones in ``values`` gives the row count."""
    sums = torch.where((labels != -1).unsqueeze(1), values, 0.0).sum(dim=0)
    if process_group_active():
        dist.all_reduce(sums, dist.ReduceOp.SUM)
    return sums


class Margin(nn.Module):
    """Base of every margin: ``forward(cosine, labels, norms=None)`` returns scaled logits.

    ``sharded`` is set by Partial FC when the classes are split over several ranks (a row's
    target then lives on one rank only). Margins that cannot run that way set ``shardable``
    to False; :func:`~faceforge.models.heads.build.build_margin` refuses them.
    """

    shardable = True

    def __init__(self) -> None:
        super().__init__()
        self.sharded = False

    def regularizer(self, norms: Tensor) -> Tensor | None:
        """An extra loss term on the embedding norms (MagFace), or None."""
        return None


class NormFace(Margin):
    """``s * cos(theta)``, no margin. Wang et al. 2017, https://arxiv.org/abs/1704.06369."""

    def __init__(self, scale: float = 64.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        return cosine * self.scale


class CosFace(Margin):
    """Additive cosine margin (CosFace / AM-Softmax): ``s * (cos(theta) - m)`` on the target.
    Wang et al. 2018, https://arxiv.org/abs/1801.09414."""

    def __init__(self, scale: float = 64.0, margin: float = 0.4) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        return apply_to_target(cosine, labels, lambda c: c - self.margin) * self.scale


class ArcFace(Margin):
    """Additive angular margin: ``s * cos(theta + m)`` on the target.
    Deng et al. 2019, https://arxiv.org/abs/1801.07698.

    ``cos(theta + m)`` stops decreasing once ``theta + m > pi``. As in insightface, the target
    then becomes ``cos(theta) - m * sin(m)`` (where ``cos(theta) <= cos(pi - m)``), which keeps
    the logit decreasing in theta. With ``easy_margin`` the margin applies only where
    ``cos(theta) > 0`` and the cosine is left as is elsewhere.
    """

    def __init__(self, scale: float = 64.0, margin: float = 0.5, easy_margin: bool = False):
        super().__init__()
        self.scale = scale
        self.margin = margin
        self.easy_margin = easy_margin

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        return apply_to_target(cosine, labels, self._target) * self.scale

    def _target(self, cosine: Tensor) -> Tensor:
        c = clamp_cosine(cosine)
        sine = torch.sqrt(1.0 - c * c)
        shifted = c * math.cos(self.margin) - sine * math.sin(self.margin)
        if self.easy_margin:
            return torch.where(cosine > 0, shifted, cosine)
        threshold = math.cos(math.pi - self.margin)
        return torch.where(
            cosine > threshold, shifted, cosine - self.margin * math.sin(self.margin)
        )


class CombinedMargin(Margin):
    """insightface's combined margin ``s * (cos(m1 * theta + m2) - m3)`` on the target:
    SphereFace-, ArcFace- and CosFace-style margins at once (m1=1, m2=0.3, m3=0.2 in the
    ArcFace paper). Like the original it has no special case for ``m1 * theta + m2 > pi``."""

    def __init__(self, scale: float = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2):
        super().__init__()
        self.scale = scale
        self.m1, self.m2, self.m3 = m1, m2, m3

    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        return apply_to_target(cosine, labels, self._target) * self.scale

    def _target(self, cosine: Tensor) -> Tensor:
        theta = torch.acos(clamp_cosine(cosine))
        return torch.cos(self.m1 * theta + self.m2) - self.m3
