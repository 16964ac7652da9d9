"""Training losses composed on top of a head's logits and the embeddings (focal, center,
triplet)."""

from __future__ import annotations

from faceforge.losses.center import CenterLoss
from faceforge.losses.composite import CompositeLoss, build_loss
from faceforge.losses.focal import FocalLoss, focal_cross_entropy
from faceforge.losses.triplet import TripletLoss

__all__ = [
    "CenterLoss",
    "CompositeLoss",
    "FocalLoss",
    "TripletLoss",
    "build_loss",
    "focal_cross_entropy",
]
