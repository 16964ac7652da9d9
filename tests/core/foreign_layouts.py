"""Weights in the layouts of other projects, written from their published descriptions (test
helpers: what users bring to ``faceforge import``).

* AdaFace's IR networks (github.com/mk-minchul/AdaFace ``net.py``): ``input_layer`` (conv,
  BN, PReLU), ``body`` of blocks with a ``shortcut_layer`` (a stride-s 1x1 max-pool when the
  width is kept, else a 1x1 conv + BN) and a ``res_layer`` (BN, conv, BN, PReLU,
  conv(stride), BN, and for IR-SE a biasless SE module added as ``se_block``),
  ``output_layer`` (BN without affine, dropout, flatten, linear, BN1d without affine);
  trained on BGR input, saved by PyTorch Lightning.
* TreB1eN's InsightFace_Pytorch (``model.py``), where AdaFace's layout comes from: the same
  but for no BN before PReLU in a block, the SE module numbered with the block's layers, and
  affine output BatchNorms; a bare state dict (``model_ir_se50.pth``).
* A CASIA-trained SphereFace-style MobileFaceNet (github.com/Xiaoccer/MobileFaceNet_Pytorch):
  the same layers as faceforge's MobileFaceNet under ``conv1``, ``dw_conv1``,
  ``blocks.<i>.conv.<j>``, ``conv2``, ``linear7``, ``linear1``, saved as
  ``{'epoch', 'net_state_dict'}``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

STAGE_WIDTHS = (64, 128, 256, 512)


class SqueezeExcitation(nn.Module):
    """Both projects' SE module: pooled, biasless 1x1 ``fc1`` (1/16 width), ReLU, biasless
    ``fc2``, sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // 16, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // 16, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class IRBlock(nn.Module):
    """One ``body`` block. AdaFace's ``res_layer``: BN, conv, BN, PReLU, conv(stride), BN,
    then its SE module under the name ``se_block``; TreB1eN's has no BN before PReLU and
    numbers its SE module with the other layers."""

    def __init__(self, in_channels: int, channels: int, stride: int, style: str, se: bool):
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )
        middle = [nn.BatchNorm2d(channels)] if style == "adaface" else []
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            *middle,
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        if se and style == "adaface":
            self.res_layer.add_module("se_block", SqueezeExcitation(channels))
        elif se:
            self.res_layer.append(SqueezeExcitation(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRNetwork(nn.Module):
    """AdaFace's (``style="adaface"``) or TreB1eN's (``"treb1en"``: affine output
    BatchNorms) IR network with ``blocks`` per stage (IR-18: 2, 2, 2, 2), IR-SE with
    ``se``; returns the raw embedding (both forwards then L2-normalise it)."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        style: str = "adaface",
        se: bool = False,
        embedding_size: int = 512,
    ) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        layers, channels = [], 64
        for width, count in zip(STAGE_WIDTHS, blocks, strict=True):
            layers.append(IRBlock(channels, width, 2, style, se))
            layers += [IRBlock(width, width, 1, style, se) for _ in range(count - 1)]
            channels = width
        self.body = nn.Sequential(*layers)
        affine = style == "treb1en"
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512, affine=affine),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


class ConvBlock(nn.Module):
    """TreB1eN's ``Conv_block`` (conv, bn, prelu) or, without ``act``, ``Linear_block``."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act=True
    ) -> None:
        super().__init__()
        padding = 1 if kernel == 3 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class DepthWise(nn.Module):
    """TreB1eN's ``Depth_Wise``: expand, depthwise 3x3, project (plus the input when kept)."""

    def __init__(self, cin: int, cout: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv = ConvBlock(cin, hidden)
        self.conv_dw = ConvBlock(hidden, hidden, 3, stride, hidden)
        self.project = ConvBlock(hidden, cout, act=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    def __init__(self, channels: int, count: int, hidden: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            *[DepthWise(channels, channels, hidden, 1, True) for _ in range(count)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TreB1eNMobileFaceNet(nn.Module):
    """TreB1eN's ``MobileFaceNet`` (112x112): faceforge's layers in the same order under
    ``conv1`` .. ``conv_6_dw``, ending in a biasless ``linear`` layer and ``bn``."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        self.conv1 = ConvBlock(3, 64, 3, 2)
        self.conv2_dw = ConvBlock(64, 64, 3, 1, 64)
        self.conv_23 = DepthWise(64, 64, 128, 2, False)
        self.conv_3 = Residual(64, 4, 128)
        self.conv_34 = DepthWise(64, 128, 256, 2, False)
        self.conv_4 = Residual(128, 6, 256)
        self.conv_45 = DepthWise(128, 128, 512, 2, False)
        self.conv_5 = Residual(128, 2, 256)
        self.conv_6_sep = ConvBlock(128, 512)
        self.conv_6_dw = ConvBlock(512, 512, 7, 1, 512, act=False)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in list(self.children())[:-2]:
            x = layer(x)
        return self.bn(self.linear(x.flatten(1)))


def randomised_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics (so a mis-mapped layer changes the output); eval."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            size = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return model.eval()


def lightning_checkpoint(model: IRNetwork, classes: int = 7) -> dict:
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


def assert_embeds_like(network: nn.Module, checkpoint: Path, color: str = "BGR") -> None:
    """The imported ``checkpoint`` gives ``network``'s embeddings of random uint8 faces fed
    to ``network`` in ``color`` order, scaled to [-1, 1]."""
    from faceforge.core.embedder import load_embedder

    faces = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), np.uint8)
    ordered = faces[..., ::-1] if color == "BGR" else faces
    pixels = torch.from_numpy(ordered.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = network.eval()(pixels.contiguous()).numpy()
    got = load_embedder(checkpoint, device="cpu", precision="fp32").embed_raw(faces)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
