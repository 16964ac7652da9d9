"""Plain ResNet-50 for 112x112 faces with the ArcFace "E" embedding output.

He et al., "Deep Residual Learning for Image Recognition", 2015,
https://arxiv.org/abs/1512.03385 (Table 1, bottleneck blocks, stride on the 3x3 convolution
as in torchvision). The ImageNet stem (7x7 stride-2 convolution and max pooling) becomes a
3x3 stride-1 convolution, so four stride-2 stages take 112x112 to 7x7 (112x96 to 7x6), and
the output is BN-dropout-FC-BN on the flattened 7x7x2048 map (ArcFace,
https://arxiv.org/abs/1801.07698, Sec. 3.2), as in Face_Pytorch's ResNet50.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from faceforge.models.init import init_weights
from faceforge.models.iresnet import INPUT_SIZE, STAGE_WIDTHS, final_map_size, run_stages

EXPANSION = 4


def plain_middle(width: int, stride: int) -> list[nn.Module]:
    """The bottleneck's 3x3 convolution (carrying the stride), batch norm and ReLU."""
    return [
        nn.Conv2d(width, width, 3, stride, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]


class Bottleneck(nn.Module):
    """1x1 reduce, ``middle`` (stride), 1x1 expand, each with batch norm; ReLU after the sum.

    The middle layers work on ``mid_ratio`` x ``width`` channels (1: ResNet; 2: the
    ResNeXt-style SKNet units); the block outputs ``width`` x ``EXPANSION`` channels.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        middle: Callable[[int, int], list[nn.Module]] = plain_middle,
        mid_ratio: int = 1,
    ) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        mid = width * mid_ratio
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            *middle(mid, stride),
            nn.Conv2d(mid, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Bottleneck ResNet with ``blocks`` per stage; raw (N, embedding_size) embeddings.
    ``block(in_channels, width, stride)`` builds each block (default :class:`Bottleneck`)."""

    def __init__(
        self,
        blocks: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = INPUT_SIZE,
        block: Callable[[int, int, int], nn.Module] = Bottleneck,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        channels = 64
        for width, count in zip(STAGE_WIDTHS, blocks, strict=True):
            stage = []
            for index in range(count):
                stage.append(block(channels, width, 2 if index == 0 else 1))
                channels = width * EXPANSION
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        height, width = final_map_size(input_size)
        self.bn = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * height * width, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        init_weights(self)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = run_stages(self.stages, x, self.grad_checkpointing and self.training)
        x = self.dropout(self.bn(x).flatten(1))
        return self.features(self.fc(x))


def resnet50(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> ResNet:
    """Face ResNet-50 (https://arxiv.org/abs/1512.03385) with the ArcFace "E" output."""
    return ResNet((3, 4, 6, 3), embedding_size, dropout, input_size)
