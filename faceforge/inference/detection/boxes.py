"""Box arithmetic shared by the detectors: overlap, non-maximum suppression, squaring.

Boxes are float tensors ``(N, 4)`` of ``(x1, y1, x2, y2)`` pixel coordinates with
``x2 - x1`` the width. NMS is written here (plain torch, any device) because torchvision is
not a dependency.
"""

from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(N, 4)`` boxes (zero for degenerate ones)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_overlap(box: torch.Tensor, others: torch.Tensor, mode: str = "union") -> torch.Tensor:
    """Overlap of one box ``(4,)`` with ``(M, 4)`` others.

    ``mode="union"`` is intersection over union; ``mode="min"`` divides by the smaller area
    (MTCNN's last stage uses it to drop a small box lying inside a bigger one).
    """
    top_left = torch.maximum(box[:2], others[:, :2])
    bottom_right = torch.minimum(box[2:], others[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area, areas = box_area(box[None])[0], box_area(others)
    if mode == "union":
        denom = area + areas - inter
    elif mode == "min":
        denom = torch.minimum(area.expand_as(areas), areas)
    else:
        raise ValueError(f"overlap mode must be 'union' or 'min', got {mode!r}")
    return inter / denom.clamp(min=1e-12)


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union"
) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first.

    A box is dropped when its overlap (see :func:`box_overlap`) with an already kept,
    higher-scoring box exceeds ``threshold``.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    keep: list[torch.Tensor] = []
    while order.numel() > 0:
        best = order[0]
        keep.append(best)
        if order.numel() == 1:
            break
        rest = order[1:]
        order = rest[box_overlap(boxes[best], boxes[rest], mode) <= threshold]
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return torch.stack(keep)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    threshold: float,
    mode: str = "union",
) -> torch.Tensor:
    """NMS applied independently within each group (image, scale, ...): kept indices, group
    by group in ascending order, each group's highest score first.

    Each group is suppressed on its own, so a group's result never depends on the others
    (shifting groups apart in one pass would round their coordinates differently with every
    batch, flipping overlaps that sit at the threshold).
    """
    kept = [torch.zeros(0, dtype=torch.long, device=boxes.device)]
    for group in groups.unique():
        members = (groups == group).nonzero()[:, 0]
        kept.append(members[nms(boxes[members], scores[members], threshold, mode)])
    return torch.cat(kept)


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre, side = its longer edge."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def apply_box_regression(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each edge by its offset times the box width/height (MTCNN's calibration)."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size
