"""Improved residual networks (LResNetE-IR) used by ArcFace.

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", 2018,
https://arxiv.org/abs/1801.07698 (Sec. 3.2, "E" output and "IR" block). The block is
BN-conv3x3-BN-PReLU-conv3x3(stride)-BN with the stride on the second convolution, and the
"E" embedding head is BN-dropout-FC-BN on the flattened final map: 7x7x512 for 112x112
inputs, 7x6x512 for 112x96 crops.

Parameter and buffer names match insightface's ``arcface_torch`` ``backbones/iresnet.py``,
so its released ``backbone.pth`` files load with ``strict=True``. ``se_iresnet50`` adds
biasless squeeze-excitation after each block's last BatchNorm, the IR-SE-50 of TreB1eN's
InsightFace_Pytorch and of AdaFace, whose weights load through
:mod:`faceforge.core.weight_adapters` (insightface released no SE network for PyTorch).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from faceforge.errors import ConfigError
from faceforge.models.init import init_weights

#: default input (height, width); every backbone also takes 112x96 (SphereFace-style crops)
INPUT_SIZE = (112, 112)
#: stride-2 3x3 convolutions (padding 1) between the input and the last feature map
DOWNSAMPLINGS = 4
STAGE_WIDTHS = (64, 128, 256, 512)


def final_map_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the last feature map: each downsampling halves a side, rounding up
    (7x7 for 112x112 inputs, 7x6 for 112x96)."""
    height, width = input_size
    if height < 1 or width < 1:
        raise ConfigError(f"input size must be positive, got {height}x{width}")
    scale = 2**DOWNSAMPLINGS
    return -(-height // scale), -(-width // scale)


def run_stages(stages: nn.Module, x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """Run each stage, recomputing its activations in the backward pass when
    ``checkpointing`` (gradient checkpointing: memory for compute)."""
    for stage in stages:
        if checkpointing:
            x = checkpoint_sequential(stage, len(stage), x, use_reentrant=False)
        else:
            x = stage(x)
    return x


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)


class SqueezeExcitation(nn.Module):
    """Channel gating from globally pooled features.

    Hu et al., "Squeeze-and-Excitation Networks", https://arxiv.org/abs/1709.01507. The two
    1x1 convolutions have no bias, as in the published IR-SE face networks.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class IBasicBlock(nn.Module):
    """Improved residual block; ``downsample`` projects the shortcut when shape changes."""

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, use_se: bool = False
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcitation(channels) if use_se else None
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """IResNet for ``input_size`` inputs in [-1, 1]; returns raw (N, embedding_size) features.

    ``layers`` holds the number of blocks of the four stages (each starts with stride 2).
    The final ``features`` batch norm has its scale frozen at 1, as in insightface.
    With :meth:`set_grad_checkpointing`, training recomputes each block's activations in
    the backward pass instead of storing them (much less memory, about a third more
    compute); as in insightface, BatchNorm statistics then see each batch twice.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        use_se: bool = False,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.prelu = nn.PReLU(STAGE_WIDTHS[0])
        channels = STAGE_WIDTHS[0]
        stages = []
        for width, blocks in zip(STAGE_WIDTHS, layers, strict=True):
            stage = [IBasicBlock(channels, width, stride=2, use_se=use_se)]
            stage += [IBasicBlock(width, width, use_se=use_se) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        map_height, map_width = final_map_size(input_size)
        self.fc = nn.Linear(channels * map_height * map_width, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        init_weights(self)
        self.features.weight.requires_grad_(False)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        x = run_stages(stages, x, self.grad_checkpointing and self.training)
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def iresnet18(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> IResNet:
    """IResNet-18 (https://arxiv.org/abs/1801.07698), stages (2, 2, 2, 2)."""
    return IResNet((2, 2, 2, 2), embedding_size, dropout, input_size=input_size)


def iresnet34(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> IResNet:
    """IResNet-34 (https://arxiv.org/abs/1801.07698), stages (3, 4, 6, 3)."""
    return IResNet((3, 4, 6, 3), embedding_size, dropout, input_size=input_size)


def iresnet50(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> IResNet:
    """IResNet-50 (https://arxiv.org/abs/1801.07698), stages (3, 4, 14, 3)."""
    return IResNet((3, 4, 14, 3), embedding_size, dropout, input_size=input_size)


def iresnet100(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> IResNet:
    """IResNet-100 (https://arxiv.org/abs/1801.07698), stages (3, 13, 30, 3)."""
    return IResNet((3, 13, 30, 3), embedding_size, dropout, input_size=input_size)


def iresnet200(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> IResNet:
    """IResNet-200 (https://arxiv.org/abs/1801.07698), stages (6, 26, 60, 6)."""
    return IResNet((6, 26, 60, 6), embedding_size, dropout, input_size=input_size)


def se_iresnet50(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> IResNet:
    """IResNet-50 with squeeze-excitation (reduction 16) in every block: IR-SE-50
    (https://arxiv.org/abs/1709.01507, https://arxiv.org/abs/1801.07698)."""
    return IResNet((3, 4, 14, 3), embedding_size, dropout, use_se=True, input_size=input_size)
