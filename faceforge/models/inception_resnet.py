"""Inception-ResNet-v1, state-dict compatible with facenet-pytorch's ``InceptionResnetV1``.

Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning", 2016, https://arxiv.org/abs/1602.07261 (Figs. 10-15, the v1 variant). Module names
and shapes follow facenet-pytorch, so its published VGGFace2 and CASIA-WebFace weights load
with ``strict=True`` once the ``logits.*`` classifier is dropped. Its contract: 160x160 RGB
input, (x - 127.5) / 128; average pooling makes any input of at least ~75 pixels work.
"""

from __future__ import annotations

import torch
from torch import nn

#: facenet-pytorch's published weights were trained on 160x160 crops
FACENET_SIZE = (160, 160)


class BasicConv2d(nn.Module):
    """Bias-free convolution, batch norm (eps 1e-3, as TensorFlow's FaceNet), ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ScaledResidual(nn.Module):
    """Concatenated branches, a biased 1x1 projection scaled by ``scale``, added to the input
    and (unless ``activate`` is False) a ReLU: the Inception-ResNet A/B/C blocks."""

    def __init__(self, scale: float, activate: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.relu = nn.ReLU(inplace=False) if activate else nn.Identity()

    def branches(self) -> list[nn.Module]:
        return [module for name, module in self.named_children() if name.startswith("branch")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([branch(x) for branch in self.branches()], 1)
        return self.relu(x + self.conv2d(mixed) * self.scale)


class Block35(ScaledResidual):
    """Inception-ResNet-A on the 256-channel 35x35 grid (Fig. 10)."""

    def __init__(self, scale: float = 0.17) -> None:
        super().__init__(scale)
        self.branch0 = BasicConv2d(256, 32, 1)
        self.branch1 = nn.Sequential(BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(256, 32, 1),
            BasicConv2d(32, 32, 3, padding=1),
            BasicConv2d(32, 32, 3, padding=1),
        )
        self.conv2d = nn.Conv2d(96, 256, 1)


class Block17(ScaledResidual):
    """Inception-ResNet-B on the 896-channel 17x17 grid (Fig. 11)."""

    def __init__(self, scale: float = 0.10) -> None:
        super().__init__(scale)
        self.branch0 = BasicConv2d(896, 128, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(896, 128, 1),
            BasicConv2d(128, 128, (1, 7), padding=(0, 3)),
            BasicConv2d(128, 128, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(256, 896, 1)


class Block8(ScaledResidual):
    """Inception-ResNet-C on the 1792-channel 8x8 grid (Fig. 13)."""

    def __init__(self, scale: float = 0.20, activate: bool = True) -> None:
        super().__init__(scale, activate)
        self.branch0 = BasicConv2d(1792, 192, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1792, 192, 1),
            BasicConv2d(192, 192, (1, 3), padding=(0, 1)),
            BasicConv2d(192, 192, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1792, 1)


class Reduction(nn.Module):
    """Concatenation of strided branches (the grid reductions, Figs. 7 and 12)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


class Mixed6a(Reduction):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(256, 192, 1),
            BasicConv2d(192, 192, 3, padding=1),
            BasicConv2d(192, 256, 3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)


class Mixed7a(Reduction):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(896, 256, 1),
            BasicConv2d(256, 256, 3, padding=1),
            BasicConv2d(256, 256, 3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)


class InceptionResnetV1(nn.Module):
    """Inception-ResNet-v1 face embedder; raw (N, embedding_size) features (facenet-pytorch
    L2-normalises them: same direction)."""

    def __init__(
        self,
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = FACENET_SIZE,
    ) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*(Block35() for _ in range(5)))
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*(Block17() for _ in range(10)))
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*(Block8() for _ in range(5)))
        self.block8 = Block8(scale=1.0, activate=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, embedding_size, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_size, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in list(self.children())[:-3]:
            x = module(x)
        return self.last_bn(self.last_linear(self.dropout(x.flatten(1))))


def inception_resnet_v1(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = FACENET_SIZE
) -> InceptionResnetV1:
    """Inception-ResNet-v1 (https://arxiv.org/abs/1602.07261), facenet-pytorch's layout."""
    return InceptionResnetV1(embedding_size, dropout, input_size)
