"""Triplet loss with online mining inside the batch (batch-hard and semi-hard).
Schroff et al. 2015 (FaceNet, semi-hard), https://arxiv.org/abs/1503.03832;
Hermans et al. 2017 (batch-hard), https://arxiv.org/abs/1703.07737."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceforge.registry import Registry

#: keeps sqrt differentiable at zero distance
SQRT_EPS = 1e-12


def squared_l2(x: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances (N, N) of the rows of ``x``."""
    squares = (x * x).sum(dim=1)
    return (squares.unsqueeze(1) + squares.unsqueeze(0) - 2.0 * x @ x.T).clamp(min=0.0)


def l2(x: Tensor) -> Tensor:
    """Pairwise Euclidean distances (N, N)."""
    return squared_l2(x).clamp(min=SQRT_EPS).sqrt()


def cosine_distance(x: Tensor) -> Tensor:
    """Pairwise ``1 - cosine similarity`` (N, N)."""
    return 1.0 - x @ x.T


#: triplet.distance: pairwise distances of L2-normalised embeddings
DISTANCES: Registry[Tensor] = Registry.of(
    "triplet distance", {"l2": l2, "squared_l2": squared_l2, "cosine": cosine_distance}
)


def batch_hard(distances: Tensor, same: Tensor, margin: float) -> Tensor:
    """Per anchor with a positive and a negative: ``relu(max d(a, p) - min d(a, n) + margin)``."""
    eye = torch.eye(len(same), dtype=torch.bool, device=same.device)
    positive = same & ~eye
    hardest_positive = distances.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    valid = positive.any(dim=1) & (~same).any(dim=1)
    return F.relu(hardest_positive - hardest_negative + margin)[valid]


def semi_hard(distances: Tensor, same: Tensor, margin: float) -> Tensor:
    """Per positive pair (a, p): the nearest negative farther than ``d(a, p)``
    (semi-hard), or the farthest negative when there is none (as TensorFlow Addons'
    ``triplet_semihard_loss``): ``relu(d(a, p) - d(a, n) + margin)``."""
    eye = torch.eye(len(same), dtype=torch.bool, device=same.device)
    anchors, positives = torch.nonzero(same & ~eye, as_tuple=True)
    d_ap = distances[anchors, positives].unsqueeze(1)
    d_an = distances[anchors]
    negative = ~same[anchors]
    farther = negative & (d_an > d_ap)
    nearest_farther = d_an.masked_fill(~farther, float("inf")).amin(dim=1)
    farthest = d_an.masked_fill(~negative, float("-inf")).amax(dim=1)
    chosen = torch.where(farther.any(dim=1), nearest_farther, farthest)
    valid = negative.any(dim=1)
    return F.relu(d_ap.squeeze(1) - chosen + margin)[valid]


#: triplet.mining: (distances, same-identity mask, margin) -> one loss per mined triplet
MINERS: Registry[Tensor] = Registry.of(
    "triplet mining", {"batch_hard": batch_hard, "semi_hard": semi_hard}
)


class TripletLoss(nn.Module):
    """``weight * mean relu(d(a, p) - d(a, n) + margin)`` over the triplets that ``mining``
    picks inside the batch, on L2-normalised embeddings; 0 (with a gradient) when the batch
    holds no triplet. Batches need several images per identity: use the P x K sampler.

    >>> loss = TripletLoss(margin=0.2)
    >>> loss(torch.eye(4), torch.tensor([0, 0, 1, 1])).item() > 0
    True
    """

    name = "triplet"

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "batch_hard",
        distance: str = "l2",
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.margin, self.weight = margin, weight
        self.mine: Callable[[Tensor, Tensor, float], Tensor] = MINERS.get(
            mining, "loss.triplet_mining"
        )
        self.distance: Callable[[Tensor], Tensor] = DISTANCES.get(distance, "loss.triplet_distance")

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        losses = self.mine(self.distance(x), same, self.margin)
        if losses.numel() == 0:
            return x.sum() * 0.0
        return self.weight * losses.mean()
