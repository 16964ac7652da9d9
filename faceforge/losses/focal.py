"""Softmax cross-entropy with label smoothing and an optional focal term.
Focal loss: Lin et al. 2017, https://arxiv.org/abs/1708.02002."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceforge.losses.reduction import mean_over_labelled


def focal_cross_entropy(
    logits: Tensor, labels: Tensor, gamma: float = 0.0, label_smoothing: float = 0.0
) -> Tensor:
    """Mean over labelled rows of ``-sum_c q_c (1 - p_c)^gamma log p_c``.

    ``p = softmax(logits)`` and ``q = (1 - eps) onehot(label) + eps / C`` is the smoothed
    target. ``gamma = 0`` is exactly PyTorch's label-smoothed cross-entropy (and is computed by
    it); ``eps = 0`` is the focal loss ``(1 - p_t)^gamma * -log p_t``. Smoothing and focusing
    combine per class, so each smoothed target class is down-weighted by its own confidence
    (rather than weighting the smoothed loss by ``exp(-loss)``, which is not a probability).
    Rows labelled -1 are ignored. Computed in float32 (or wider).
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if gamma == 0.0:
        per_sample = F.cross_entropy(
            logits, labels, ignore_index=-1, label_smoothing=label_smoothing, reduction="none"
        )
        return mean_over_labelled(per_sample, labels)
    log_p = F.log_softmax(logits, dim=1)
    # 1 - p via expm1 keeps precision when p -> 1; the floor keeps the gradient of
    # (1 - p)^gamma finite for gamma < 1
    weighted = (-torch.expm1(log_p)).clamp(min=torch.finfo(log_p.dtype).tiny) ** gamma * log_p
    index = labels.clamp(min=0).long().unsqueeze(1)
    per_sample = -(1.0 - label_smoothing) * weighted.gather(1, index).squeeze(1)
    if label_smoothing > 0.0:
        per_sample = per_sample - label_smoothing * weighted.mean(dim=1)
    return mean_over_labelled(per_sample, labels)


class FocalLoss(nn.Module):
    """:func:`focal_cross_entropy` as a module; ``gamma = 0`` is plain cross-entropy."""

    def __init__(self, gamma: float = 0.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    @property
    def name(self) -> str:
        """Name of this term in the loss report: ``ce`` or ``focal``."""
        return "focal" if self.gamma else "ce"

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return focal_cross_entropy(logits, labels, self.gamma, self.label_smoothing)
