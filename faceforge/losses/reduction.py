"""Batch reduction shared by the losses: ignored samples (label -1) do not count."""

from __future__ import annotations

from torch import Tensor


def mean_over_labelled(per_sample: Tensor, labels: Tensor) -> Tensor:
    """Mean of ``per_sample`` over rows whose label is not -1 (0 when there are none).

    Ignored rows must already hold 0 (or any finite value: they are masked out here).
    """
    labelled = labels != -1
    return per_sample.where(labelled, 0.0).sum() / labelled.sum().clamp(min=1)
