"""NMS and box helpers against a plain-Python reference written from the definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceforge.inference.detection.boxes import (
    apply_box_regression,
    batched_nms,
    box_overlap,
    nms,
    square_boxes,
)


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str) -> list[int]:
    """Greedy NMS straight from its definition, one box at a time."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            ix = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            iy = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = ix * iy
            ai = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            aj = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            overlap = inter / (ai + aj - inter) if mode == "union" else inter / min(ai, aj)
            if overlap > threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(5, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("mode", ["union", "min"])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_reference(mode: str, threshold: float) -> None:
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 200)
    scores = rng.permutation(200).astype(np.float64) / 200  # distinct: order is unambiguous
    kept = nms(torch.tensor(boxes), torch.tensor(scores), threshold, mode).tolist()
    assert kept == reference_nms(boxes, scores, threshold, mode)


def test_overlap_values_by_hand() -> None:
    box = torch.tensor([0.0, 0.0, 10.0, 10.0])
    others = torch.tensor([[5.0, 0.0, 15.0, 10.0], [2.0, 2.0, 4.0, 4.0], [20.0, 20, 30, 30]])
    union = box_overlap(box, others, "union")
    torch.testing.assert_close(union, torch.tensor([50 / 150, 4 / 100, 0.0]))
    minimum = box_overlap(box, others, "min")
    torch.testing.assert_close(minimum, torch.tensor([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match="overlap mode"):
        box_overlap(box, others, "max")


def test_batched_nms_keeps_groups_apart() -> None:
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = box.repeat(4, 1)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    groups = torch.tensor([0, 0, 1, 1])
    assert sorted(batched_nms(boxes, scores, groups, 0.5).tolist()) == [0, 2]
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


def test_batched_nms_gives_each_group_what_it_gets_alone() -> None:
    """An overlap a hair above the threshold (4e-8) keeps its fate whatever other groups hold:
    one image's detections must not depend on the batch around it. Shifting this group past
    another image's wide box (the one-pass trick) rounded the overlap below it."""
    boxes = torch.tensor(
        [[92.692642, 100.585922, 124.837608, 173.748459],
         [106.341484, 100.585922, 138.486450, 173.748459]]
    )  # fmt: skip
    scores = torch.tensor([0.9, 0.8])
    threshold = 0.4039
    assert 0 < box_overlap(boxes[0], boxes[1:], "union").item() - threshold < 1e-6
    assert nms(boxes, scores, threshold).tolist() == [0]
    with_far_image = torch.cat([boxes, torch.tensor([[0.0, 0.0, 3000.0, 3000.0]])])
    groups = torch.tensor([3, 3, 0])
    kept = batched_nms(with_far_image, torch.tensor([0.9, 0.8, 1.0]), groups, threshold)
    assert kept.tolist() == [2, 0]  # group by group, each group's best first


def test_square_and_regression() -> None:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    torch.testing.assert_close(square_boxes(boxes), torch.tensor([[0.0, 20.0, 40.0, 60.0]]))
    offsets = torch.tensor([[0.1, -0.25, 0.0, 0.5]])
    expected = torch.tensor([[12.0, 10.0, 30.0, 80.0]])  # width 20, height 40
    torch.testing.assert_close(apply_box_regression(boxes, offsets), expected)
