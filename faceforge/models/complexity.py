"""Model size figures for reports: parameter count and multiply-accumulates per image."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: tuple[int, int] = (112, 112)) -> int:
    """Multiply-accumulates of one 3-channel image: convolutions, linear layers and matrix
    products (the two of attention, q k^T and weights v).

    Counted by PyTorch's FLOP counter (2 FLOPs per multiply-accumulate) on a single zero
    image in eval mode (the model's mode is restored afterwards); normalisation, activations,
    softmax and additions are not counted, which is the convention of the MobileFaceNet and
    ArcFace papers and of arcface_torch's ViT figures.
    """
    was_training = model.training
    parameter = next(model.parameters())
    image = torch.zeros(1, 3, *input_size, dtype=parameter.dtype, device=parameter.device)
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
