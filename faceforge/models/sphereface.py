"""SphereFace residual networks (the ``sphere20a`` layout) for 112x96 crops and 112x112.

Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", 2017,
https://arxiv.org/abs/1704.08063 (Table 2). Four stages, each a biased stride-2 3x3
convolution with PReLU followed by residual units of two biased 3x3 convolutions with PReLU
and no batch norm; the flattened 7x6x512 map (7x7 at 112x112) goes through one fully
connected layer to the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from faceforge.models.iresnet import INPUT_SIZE, STAGE_WIDTHS, final_map_size, run_stages


def conv_prelu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Biased 3x3 convolution (padding 1) and a per-channel PReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.PReLU(out_channels))


class ResidualUnit(nn.Module):
    """x + PReLU(conv(PReLU(conv(x)))) at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_prelu(channels, channels), conv_prelu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def init_sphere(model: nn.Module) -> None:
    """Xavier-uniform convolutions and linear layers, zero biases, as the SphereFace Caffe
    prototxts ("xavier" filler, https://arxiv.org/abs/1704.08063): the network has no batch
    norm, so He-normal fan-out weights would blow activations up through the residual units."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


class SphereNet(nn.Module):
    """SphereFace ResNet with ``units`` residual units per stage; raw (N, embedding_size)."""

    def __init__(
        self,
        units: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = 3
        for width, count in zip(STAGE_WIDTHS, units, strict=True):
            stages.append(
                nn.Sequential(
                    conv_prelu(channels, width, stride=2),
                    *(ResidualUnit(width) for _ in range(count)),
                )
            )
            channels = width
        self.stages = nn.Sequential(*stages)
        height, width = final_map_size(input_size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * height * width, embedding_size)
        init_sphere(self)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_stages(self.stages, x, self.grad_checkpointing and self.training)
        return self.fc(self.dropout(x.flatten(1)))


def sphereface20(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> SphereNet:
    """SphereFace-20 (``sphere20a``, https://arxiv.org/abs/1704.08063); native
    input 112x96 (pass ``input_size``)."""
    return SphereNet((1, 2, 4, 1), embedding_size, dropout, input_size)


def sphereface36(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> SphereNet:
    """SphereFace-36 (https://arxiv.org/abs/1704.08063); native 112x96."""
    return SphereNet((2, 4, 8, 2), embedding_size, dropout, input_size)


def sphereface64(
    embedding_size: int = 512, dropout: float = 0.0, input_size: tuple[int, int] = INPUT_SIZE
) -> SphereNet:
    """SphereFace-64 (https://arxiv.org/abs/1704.08063); native 112x96."""
    return SphereNet((3, 8, 16, 3), embedding_size, dropout, input_size)
