"""Center loss with the paper's own center update rule.
Wen et al. 2016, "A Discriminative Feature Learning Approach for Deep Face Recognition",
https://ydwen.github.io/papers/WenECCV16.pdf."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faceforge.losses.reduction import mean_over_labelled


class CenterLoss(nn.Module):
    """``weight * 0.5 * mean_i ||x_i - c_{y_i}||^2`` over labelled rows (label -1 ignored).

    The embeddings receive this loss's true gradient, ``weight * (x_i - c_{y_i}) / N``. The
    centers instead receive the paper's update direction, independent of ``weight`` and of
    the batch size::

        grad c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)    (n_j: samples of class j)

    so a plain SGD step at ``lr`` (the paper's alpha) moves ``c_j`` by ``-lr * grad c_j``
    exactly. This is done with a zero-valued surrogate term (``s - s.detach()``), so the loss
    value is unchanged. Centers start at zero and must be optimised with the group from
    :meth:`param_groups` (lr = alpha, no momentum, no weight decay), not with the model's.
    """

    def __init__(
        self, num_classes: int, embedding_size: int, weight: float = 1.0, lr: float = 0.5
    ) -> None:
        super().__init__()
        self.weight = weight
        self.lr = lr
        self.centers = nn.Parameter(torch.zeros(num_classes, embedding_size))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))
        labelled = (labels != -1).unsqueeze(1)
        index = labels.clamp(min=0).long()
        centers = self.centers.to(x.dtype)[index]
        loss = 0.5 * mean_over_labelled((x - centers.detach()).square().sum(dim=1), labels)
        counts = torch.bincount(labels[labels != -1].long(), minlength=len(self.centers))
        surrogate = (
            0.5
            * (x.detach() - centers).where(labelled, 0.0).square().sum(dim=1)
            / (1.0 + counts[index].to(x.dtype))
        ).sum()
        return self.weight * loss + (surrogate - surrogate.detach())

    def param_groups(self) -> list[dict]:
        """Optimizer group for the centers: the paper's alpha as lr, SGD without momentum
        (the ``momentum`` key is ignored by optimizers that have none), no weight decay."""
        return [{"params": [self.centers], "lr": self.lr, "momentum": 0.0, "weight_decay": 0.0}]
