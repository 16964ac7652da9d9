"""Model size figures for reports: parameter count and multiply-accumulates per image."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: tuple[int, int] = (112, 112)) -> int:
    """Multiply-accumulates of ``Conv2d`` and ``Linear`` layers for one 3-channel image.

    Counted with forward hooks on a single zero image in eval mode (the model's mode is
    restored afterwards); normalisation, activations and additions are not counted, which is
    the convention of the MobileFaceNet and ArcFace papers.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.weight[0].numel()  # (in_channels / groups) * kh * kw
        total += output.numel() * kernel

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, dtype=parameter.dtype, device=parameter.device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
