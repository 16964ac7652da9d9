"""MobileNetV1 with width multipliers, as trained for faces by CASIA's ``arcface_mobilenet``.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017, https://arxiv.org/abs/1704.04861 (Table 1). For 112x112 faces the last
stride-2 block keeps its resolution, so the final map is 7x7 (7x6 for 112x96), and global
average pooling is replaced by a global depthwise convolution (GDC, as in MobileFaceNet,
https://arxiv.org/abs/1804.07573) and a linear 1x1 embedding convolution with batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from faceforge.models.init import init_weights
from faceforge.models.iresnet import INPUT_SIZE, final_map_size

#: (output channels, stride) of the depthwise-separable blocks at width 1.0
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 1),
    (1024, 1),
)


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Bias-free convolution (same padding), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 face embedder; ``width`` scales every layer's channels (at least 8)."""

    def __init__(
        self,
        width: float = 1.0,
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        super().__init__()
        channels = max(8, int(32 * width))
        layers: list[nn.Module] = [conv_bn_relu(3, channels, 3, stride=2)]
        for out_width, stride in BLOCKS:
            out_channels = max(8, int(out_width * width))
            layers.append(conv_bn_relu(channels, channels, 3, stride=stride, groups=channels))
            layers.append(conv_bn_relu(channels, out_channels, 1))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.gdc = nn.Sequential(
            nn.Conv2d(channels, channels, final_map_size(input_size), groups=channels, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Sequential(
            nn.Conv2d(channels, embedding_size, 1, bias=False), nn.BatchNorm2d(embedding_size)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gdc(self.features(x))
        return self.embedding(self.dropout(x)).flatten(1)


def mobilenetv1_1_0(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> MobileNetV1:
    """MobileNetV1 at width 1.0 (https://arxiv.org/abs/1704.04861)."""
    return MobileNetV1(1.0, embedding_size, dropout, input_size)


def mobilenetv1_0_5(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> MobileNetV1:
    """MobileNetV1 at width 0.5 (https://arxiv.org/abs/1704.04861)."""
    return MobileNetV1(0.5, embedding_size, dropout, input_size)


def mobilenetv1_0_25(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> MobileNetV1:
    """MobileNetV1 at width 0.25 (https://arxiv.org/abs/1704.04861)."""
    return MobileNetV1(0.25, embedding_size, dropout, input_size)
