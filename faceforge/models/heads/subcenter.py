"""Sub-center ArcFace: K centres per class, a sample taking the nearest, so noisy samples
gather around non-dominant sub-centres instead of pulling the dominant one.
Deng et al. 2020, https://www.ecva.net/papers/eccv_2020/papers_ECCV/papers/123560715.pdf."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from faceforge.models.heads.base import Head
from faceforge.models.heads.margins import Margin, process_group_active


class SubCenterHead(Head):
    """Cosines to ``subcenters`` centres per class, max-pooled per class, then ``margin``.

    After ``drop_step`` training steps (0: never) each class keeps only its dominant
    sub-centre (the one most training samples were nearest to so far, counted in the buffer
    ``counts``, over the global batch under DDP), and samples whose angle to their class
    exceeds ``drop_angle`` (radians; 75 degrees in the paper) are dropped: their logits are
    constant (all zero), so they add nothing to the gradient. ``step`` and ``counts`` are
    buffers, saved in checkpoints. Full classifier only: the max over sub-centres needs every
    centre of a class.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: Margin,
        subcenters: int = 3,
        drop_step: int = 0,
        drop_angle: float = math.radians(75.0),
    ) -> None:
        super().__init__()
        self.num_classes, self.subcenters = num_classes, subcenters
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.margin = margin
        self.drop_step, self.drop_angle = drop_step, drop_angle
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("counts", torch.zeros(num_classes, subcenters, dtype=torch.long))

    @property
    def dropped(self) -> bool:
        """Whether non-dominant sub-centres and far samples are dropped by now."""
        return 0 < self.drop_step <= int(self.step)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        weight = F.normalize(self.weight.to(embeddings.dtype), dim=1)
        cosine = F.linear(F.normalize(embeddings, dim=1), weight)
        cosine = cosine.view(-1, self.num_classes, self.subcenters)
        dropped = self.dropped  # read once: counting below moves the step past drop_step
        if dropped:
            cosine = cosine.masked_fill(~self._dominant().unsqueeze(0), -1.0)
        cosine, nearest = cosine.max(dim=2)
        if self.training:
            self._count(nearest, labels)
        logits = self.margin(cosine, labels, embeddings.norm(dim=1))
        if not dropped:
            return logits
        far = self._far(cosine, labels).unsqueeze(1)
        return torch.where(far, logits.detach() * 0.0, logits)

    def _dominant(self) -> Tensor:
        """(C, K) mask of each class's most used sub-centre."""
        dominant = self.counts.argmax(dim=1, keepdim=True)
        return torch.zeros_like(self.counts, dtype=torch.bool).scatter_(1, dominant, True)

    @torch.no_grad()
    def _count(self, nearest: Tensor, labels: Tensor) -> None:
        self.step += 1
        held = labels != -1
        rows = labels[held].long()
        counted = torch.zeros_like(self.counts)
        counted.index_put_((rows, nearest[held, rows]), torch.ones_like(rows), accumulate=True)
        if process_group_active():  # every rank counts the global batch (DDP)
            dist.all_reduce(counted, dist.ReduceOp.SUM)
        self.counts += counted

    def _far(self, cosine: Tensor, labels: Tensor) -> Tensor:
        target = cosine.detach().gather(1, labels.clamp(min=0).long().unsqueeze(1)).squeeze(1)
        return (labels != -1) & (target < math.cos(self.drop_angle))
