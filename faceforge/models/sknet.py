"""SKNet-50 for 112x112 faces with the ArcFace "E" embedding output.

Li et al., "Selective Kernel Networks", CVPR 2019, https://arxiv.org/abs/1903.06586
(Sec. 3.1 and Table 1, SKNet-50): the ResNeXt-50 (32x4d) bottleneck whose 3x3 grouped
convolution becomes an SK unit [M=2, G=32, r=16, L=32]. Two paths, a 3x3 and a dilated 3x3
(a 5x5 receptive field), are summed, globally pooled and squeezed to d = max(C / r, L)
channels (fully connected, batch norm, ReLU); per-channel softmax weights across the paths
then select the kernel size. The body is that of the paper (27.48M parameters with its
ImageNet stem and classifier, as timm's ``skresnext50_32x4d``); the stem and output follow our
face ResNet-50 (:mod:`faceforge.models.resnet`): a 3x3 stride-1 stem and BN-dropout-FC-BN on
the flattened 7x7x2048 map (7x6 for 112x96).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from faceforge.models.iresnet import INPUT_SIZE
from faceforge.models.resnet import Bottleneck, ResNet

PATHS = 2
GROUPS = 32
REDUCTION = 16
MIN_ATTENTION = 32


class SelectiveKernel(nn.Module):
    """SK convolution on ``channels`` channels: split, fuse, select (stride on the paths)."""

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    channels,
                    channels,
                    3,
                    stride,
                    padding=dilation,
                    dilation=dilation,
                    groups=GROUPS,
                    bias=False,
                ),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for dilation in range(1, PATHS + 1)
        )
        hidden = max(channels // REDUCTION, MIN_ATTENTION)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.select = nn.Conv2d(hidden, channels * PATHS, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.stack([path(x) for path in self.paths], dim=1)  # (N, M, C, H, W)
        summary = branches.sum(dim=1).mean((2, 3), keepdim=True)
        logits = self.select(self.fuse(summary)).unflatten(1, (PATHS, -1))  # (N, M, C, 1, 1)
        return (branches * logits.softmax(dim=1)).sum(dim=1)


def selective_middle(width: int, stride: int) -> list[nn.Module]:
    return [SelectiveKernel(width, stride)]


#: the SKNet-50 unit: ResNeXt widths (twice ResNet's inside the block) around an SK convolution
SK_BOTTLENECK = partial(Bottleneck, middle=selective_middle, mid_ratio=2)


def sknet50(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> ResNet:
    """Face SKNet-50 (https://arxiv.org/abs/1903.06586) with the ArcFace "E" output."""
    return ResNet((3, 4, 6, 3), embedding_size, dropout, input_size, block=SK_BOTTLENECK)
