"""Weights in the layouts of other projects, written from their published descriptions (test
helpers: what users bring to ``faceforge import``).

* AdaFace's IR networks (github.com/mk-minchul/AdaFace ``net.py``): ``input_layer`` (conv,
  BN, PReLU), ``body`` of blocks with a ``shortcut_layer`` (a stride-s 1x1 max-pool when the
  width is kept, else a 1x1 conv + BN) and a ``res_layer`` (BN, conv, BN, PReLU,
  conv(stride), BN), ``output_layer`` (BN without affine, dropout, flatten, linear, BN1d
  without affine); trained on BGR input, saved by PyTorch Lightning.
* A CASIA-trained SphereFace-style MobileFaceNet (github.com/Xiaoccer/MobileFaceNet_Pytorch):
  the same layers as faceforge's MobileFaceNet under ``conv1``, ``dw_conv1``,
  ``blocks.<i>.conv.<j>``, ``conv2``, ``linear7``, ``linear1``, saved as
  ``{'epoch', 'net_state_dict'}``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

STAGE_WIDTHS = (64, 128, 256, 512)


class AdaFaceBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceIR(nn.Module):
    """AdaFace's IR network with ``blocks`` per stage (IR-18: 2, 2, 2, 2); returns the raw
    embedding (AdaFace's forward also returns its norm and the normalised vector)."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), embedding_size: int = 512):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        layers, channels = [], 64
        for width, count in zip(STAGE_WIDTHS, blocks, strict=True):
            layers.append(AdaFaceBlock(channels, width, 2))
            layers += [AdaFaceBlock(width, width, 1) for _ in range(count - 1)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512, affine=False),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


def randomised_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics (so a mis-mapped layer changes the output); eval."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            size = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return model.eval()


def lightning_checkpoint(model: AdaFaceIR, classes: int = 7) -> dict:
    """What AdaFace's ``.ckpt`` files hold: Lightning's ``state_dict`` with ``model.`` and
    the ``head.`` classifier, beside training state."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["head.kernel"] = torch.randn(512, classes)
    return {"epoch": 3, "global_step": 100, "state_dict": state, "hyper_parameters": {"m": 0.4}}


def sphereface_mobilefacenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """faceforge's MobileFaceNet state dict under the CASIA MobileFaceNet repository's names."""
    parts = ("conv", "bn", "prelu")
    last = max(int(k.split(".")[1]) for k in state if k.startswith("features."))
    renamed = {}
    for key, value in state.items():
        block = re.fullmatch(r"features\.(\d+)\.body\.(\d)\.(\d)\.(.+)", key)
        plain = re.fullmatch(r"(features\.(\d+)|gdc|embedding)\.(\d)\.(.+)", key)
        if block:
            index, layer, part, leaf = map(block.group, (1, 2, 3, 4))
            name = f"blocks.{int(index) - 2}.conv.{3 * int(layer) + int(part)}.{leaf}"
        else:
            module, index, part, leaf = map(plain.group, (1, 2, 3, 4))
            if index is not None:
                module = {0: "conv1", 1: "dw_conv1", last: "conv2"}[int(index)]
            else:
                module = {"gdc": "linear7", "embedding": "linear1"}[module]
            name = f"{module}.{parts[int(part)]}.{leaf}"
        renamed[name] = value
    return renamed
