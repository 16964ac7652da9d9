"""MobileFaceNet: a ~1M-parameter face embedding network for mobile devices.

Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on
Mobile Devices", 2018, https://arxiv.org/abs/1804.07573 (Table 1). MobileNetV2-style
bottlenecks with PReLU, then a global depthwise convolution (GDC) instead of global average
pooling, so every spatial position of the final map gets its own learned weight: the GDC
kernel is that map, 7x7 for 112x112 inputs and 7x6 for the classic 112x96 crops.
"""

from __future__ import annotations

import torch
from torch import nn

from faceforge.models.init import init_weights
from faceforge.models.iresnet import INPUT_SIZE, final_map_size

#: (expansion, output channels, blocks, first-block stride) of the bottleneck stages.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class ConvBN(nn.Sequential):
    """Bias-free convolution, batch norm and (unless ``linear``) a per-channel PReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        groups: int = 1,
        linear: bool = False,
    ) -> None:
        padding = kernel_size // 2 if kernel_size == 3 else 0
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if not linear:
            layers.append(nn.PReLU(out_channels))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, linear 1x1 project; a shortcut when the
    block keeps both resolution and width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            ConvBN(in_channels, hidden, 1),
            ConvBN(hidden, hidden, 3, stride=stride, groups=hidden),
            ConvBN(hidden, out_channels, 1, linear=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileFaceNet(nn.Module):
    """MobileFaceNet for ``input_size`` (height, width) inputs in [-1, 1]; returns raw
    (N, embedding_size) features.

    ``dropout`` applies to the GDC output, before the final linear 1x1 convolution.
    """

    def __init__(
        self,
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ConvBN(3, 64, 3, stride=2),
            ConvBN(64, 64, 3, groups=64),
        ]
        channels = 64
        for expansion, out_channels, blocks, stride in STAGES:
            for index in range(blocks):
                block_stride = stride if index == 0 else 1
                layers.append(Bottleneck(channels, out_channels, block_stride, expansion))
                channels = out_channels
        layers.append(ConvBN(channels, 512, 1))
        self.features = nn.Sequential(*layers)
        self.gdc = ConvBN(512, 512, final_map_size(input_size), groups=512, linear=True)
        self.dropout = nn.Dropout(dropout)
        self.embedding = ConvBN(512, embedding_size, 1, linear=True)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gdc(self.features(x))
        return self.embedding(self.dropout(x)).flatten(1)


def mobilefacenet(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> MobileFaceNet:
    """MobileFaceNet (https://arxiv.org/abs/1804.07573): ~1.0M parameters at 128-d."""
    return MobileFaceNet(embedding_size, dropout, input_size)
