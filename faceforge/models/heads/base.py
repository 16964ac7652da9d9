"""The contract every classification head follows, and its precision guarantee."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn


class Head(nn.Module, abc.ABC):
    """Maps ``(embeddings (N, D), labels (N,))`` to logits ``(N, num_classes)`` for
    cross-entropy.

    The logits are computed in float32 (float64 stays float64) with autocast switched off:
    margins and the scale ``s`` = 64 amplify bf16/fp16 rounding into wrong targets, so the
    head never inherits the training loop's reduced precision. Rows labelled ``-1`` (samples
    whose class is ignored, as in Partial FC) get no margin.
    """

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(embeddings.device.type, enabled=False):
            return self.logits(embeddings.to(dtype), labels)

    @abc.abstractmethod
    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Logits from embeddings already cast to the compute dtype, outside autocast."""
