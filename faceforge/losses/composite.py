"""The training loss: a classification term on the head's logits plus optional center and
triplet losses on the embeddings and the head's own regulariser (MagFace)."""

from __future__ import annotations

import functools
import operator

from torch import Tensor, nn

from faceforge.config import LossConfig
from faceforge.errors import ConfigError
from faceforge.losses.center import CenterLoss
from faceforge.losses.focal import FocalLoss
from faceforge.losses.triplet import TripletLoss


class CompositeLoss(nn.Module):
    """``classification(logits, labels) [+ center(embeddings, labels)]
    [+ triplet(embeddings, labels)] [+ head regulariser]``.

    ``forward`` returns the total and its parts by name (``ce`` or ``focal``, ``center`` and
    ``triplet`` when enabled, and the extra terms passed in) as detached 0-d tensors (no host
    synchronisation in the training step: the loop turns them into numbers only when it
    logs); each part is its weighted contribution, so the parts add up to the total.
    Parameters owned by the loss (the centers) are optimised through :meth:`param_groups`,
    and its state dict belongs in checkpoints.
    """

    def __init__(
        self,
        classification: FocalLoss,
        center: CenterLoss | None = None,
        triplet: TripletLoss | None = None,
    ) -> None:
        super().__init__()
        self.classification = classification
        self.center = center
        self.triplet = triplet

    def forward(
        self,
        logits: Tensor | None,
        embeddings: Tensor,
        labels: Tensor,
        extra: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``logits`` None: no classifier (``head.type: none``), embedding losses only."""
        classification = None if logits is None else self.classification(logits, labels)
        return self.combine(classification, embeddings, labels, extra)

    def combine(
        self,
        classification: Tensor | None,
        embeddings: Tensor,
        labels: Tensor,
        extra: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The total from a classification loss computed elsewhere (e.g. by a Partial FC
        layer's distributed cross-entropy), the embedding losses and the ``extra`` terms."""
        terms = dict(extra or {})
        if classification is not None:
            terms = {self.classification.name: classification, **terms}
        if self.center is not None:
            terms["center"] = self.center(embeddings, labels)
        if self.triplet is not None:
            terms["triplet"] = self.triplet(embeddings, labels)
        if not terms:
            raise ValueError("no loss term: a classifier or an embedding loss is needed")
        total = functools.reduce(operator.add, terms.values())
        return total, {name: term.detach() for name, term in terms.items()}

    def param_groups(self) -> list[dict]:
        """Optimizer param groups the trainer must add for the loss's own parameters
        (empty without center loss); these parameters must not be in any other group."""
        return self.center.param_groups() if self.center is not None else []


def build_loss(cfg: LossConfig, embedding_size: int, num_classes: int) -> CompositeLoss:
    """Build the training loss from ``cfg``; e.g. the seeds' MobileFaceNet recipe is
    ``LossConfig(focal_gamma=2.0, center_weight=0.005)`` on an ArcFace head.

    Out-of-range settings raise :class:`~faceforge.errors.ConfigError`.

    >>> import torch
    >>> loss = build_loss(LossConfig(focal_gamma=2.0, center_weight=0.005), 8, num_classes=3)
    >>> total, parts = loss(torch.zeros(2, 3), torch.zeros(2, 8), torch.tensor([0, 2]))
    >>> sorted(parts)
    ['center', 'focal']
    """
    if cfg.focal_gamma < 0.0:
        raise ConfigError(
            f"loss.focal_gamma must be >= 0 (0 = cross-entropy); got {cfg.focal_gamma}"
        )
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"loss.label_smoothing must be in [0, 1); got {cfg.label_smoothing}")
    if cfg.center_weight < 0.0:
        raise ConfigError(f"loss.center_weight must be >= 0 (0 disables); got {cfg.center_weight}")
    center = None
    if cfg.center_weight > 0.0:
        if cfg.center_lr <= 0.0:
            raise ConfigError(f"loss.center_lr must be > 0 (typically 0.5); got {cfg.center_lr}")
        center = CenterLoss(num_classes, embedding_size, cfg.center_weight, cfg.center_lr)
    return CompositeLoss(
        FocalLoss(cfg.focal_gamma, cfg.label_smoothing), center, _build_triplet(cfg)
    )


def _build_triplet(cfg: LossConfig) -> TripletLoss | None:
    if cfg.triplet_weight < 0.0:
        raise ConfigError(
            f"loss.triplet_weight must be >= 0 (0 disables); got {cfg.triplet_weight}"
        )
    if cfg.triplet_margin < 0.0:
        raise ConfigError(
            f"loss.triplet_margin must be >= 0 (typically 0.2); got {cfg.triplet_margin}"
        )
    if cfg.triplet_weight == 0.0:
        return None
    return TripletLoss(
        cfg.triplet_margin, cfg.triplet_mining, cfg.triplet_distance, cfg.triplet_weight
    )
