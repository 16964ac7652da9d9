"""Weight initialisation shared by the backbones."""

from __future__ import annotations

from torch import nn


def init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions, identity batch norms; linear layers keep PyTorch's
    default. He et al. 2015, https://arxiv.org/abs/1502.01852.

    A model built on the ``meta`` device (shapes only, as ``faceforge inspect`` matches weights
    files) is left as it is: there is nothing to draw, and PyTorch's meta ``normal_`` imports
    ``torch._dynamo``, seconds of start-up."""
    if any(parameter.is_meta for parameter in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
