"""Heads built from a linear layer: plain softmax, and cosine FC + margin (insightface split)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceforge.models.heads.base import Head
from faceforge.models.heads.margins import Margin


class SoftmaxHead(Head):
    """Plain softmax classifier: ``W x + b`` on the raw embeddings; labels are unused."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dtype = embeddings.dtype
        return F.linear(embeddings, self.fc.weight.to(dtype), self.fc.bias.to(dtype))


class CosineClassifier(nn.Module):
    """Cosines (N, C) between L2-normalised embeddings and L2-normalised class weights.

    Weights start as N(0, 0.01) like insightface's (Partial) FC layer; only their direction
    matters to the output.
    """

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: Tensor) -> Tensor:
        weight = F.normalize(self.weight.to(embeddings.dtype), dim=1)
        return F.linear(F.normalize(embeddings, dim=1), weight)


class MarginHead(Head):
    """Cosine classifier followed by a :class:`~faceforge.models.heads.margins.Margin` mapping
    ``(cosine, labels, embedding norms)`` to logits (NormFace, ArcFace, CosFace, combined,
    AdaFace, CurricularFace, MagFace, ElasticFace)."""

    def __init__(self, embedding_size: int, num_classes: int, margin: Margin) -> None:
        super().__init__()
        self.fc = CosineClassifier(embedding_size, num_classes)
        self.margin = margin

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.margin(self.fc(embeddings), labels, embeddings.norm(dim=1))

    def regularizer(self, embeddings: Tensor) -> Tensor | None:
        """The margin's extra loss on the embedding norms (MagFace's ``g``), or None."""
        return self.margin.regularizer(embeddings.float().norm(dim=1))


class NoHead(Head):
    """No classifier (``head.type: none``), for training on embedding losses alone (triplet
    fine-tuning); the criterion never asks it for logits."""

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise RuntimeError("head.type=none has no logits; train with an embedding loss")
