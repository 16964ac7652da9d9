"""EdgeFace: EdgeNeXt face embedders with low-rank linear layers, key-compatible with the
official release.

George et al., "EdgeFace: Efficient Face Recognition Model for Edge Devices", IEEE T-BIOM
2024, https://arxiv.org/abs/2307.01838 (winner of the EFaR 2023 compact track). The network is
EdgeNeXt (Maaz et al. 2022, https://arxiv.org/abs/2206.10589): a 4x4 patch stem, four stages
of depthwise-convolution blocks ending in one split depth-wise transposed attention (STDA)
block (multi-scale depthwise convolutions, then cross-covariance attention across channels),
global average pooling, LayerNorm and a 512-d linear embedding. EdgeFace's low-rank linear
layers (LoRaLin) replace every linear layer W by W2 W1 of rank max(2, int(gamma * min(in,
out))): ``edgeface_xs_gamma_06`` is gamma = 0.6, ``edgeface_s_gamma_05`` gamma = 0.5.

Names and shapes follow otroshi/edgeface's ``get_model`` (its timm EdgeNeXt wrapped as
``model``), so its released ``checkpoints/*.pt`` load with ``strict=True``. Its contract:
112x112 RGB, (x - 0.5) / 0.5, the ArcFace alignment template; 112x96 works too (3x3 last map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from faceforge.models.iresnet import INPUT_SIZE

EPS = 1e-6
#: layer-scale initial value (EdgeNeXt's): every block starts as a near identity
LAYER_SCALE = 1e-6
EXPANSION = 4
KERNELS = (3, 5, 7, 9)
SCALES = (2, 2, 3, 4)
#: sine/cosine features per axis of the Fourier position encoding (stage 2 only)
POSITION_FEATURES = 32


@dataclass(frozen=True)
class EdgeFaceConfig:
    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: int
    #: low-rank ratio gamma of the linear layers; None keeps them full rank
    rank_ratio: float | None


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LowRankLinear(nn.Module):
    """``linear2(linear1(x))``: a rank-``rank`` factorisation of a linear layer (LoRaLin)."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, rank, bias=False)
        self.linear2 = nn.Linear(rank, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.linear1(x))


def linear(in_features: int, out_features: int, rank_ratio: float | None) -> nn.Module:
    """A biased linear layer, factorised to EdgeFace's rank when ``rank_ratio`` is set."""
    if rank_ratio is None:
        return nn.Linear(in_features, out_features)
    rank = max(2, int(min(in_features, out_features) * rank_ratio))
    return LowRankLinear(in_features, out_features, rank)


class Mlp(nn.Module):
    def __init__(self, dim: int, rank_ratio: float | None) -> None:
        super().__init__()
        self.fc1 = linear(dim, dim * EXPANSION, rank_ratio)
        self.act = nn.GELU()
        self.fc2 = linear(dim * EXPANSION, dim, rank_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def depthwise(channels: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)


class ConvBlock(nn.Module):
    """Depthwise k x k convolution, LayerNorm, MLP, layer scale, residual."""

    def __init__(self, dim: int, kernel: int, rank_ratio: float | None) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        self.conv_dw = depthwise(dim, kernel)
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, rank_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.conv_dw(x).permute(0, 2, 3, 1)))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class FourierPositions(nn.Module):
    """Sine/cosine features of normalised row and column positions, projected to ``dim``
    channels (DETR-style, as in XCiT and EdgeNeXt); the same for every image."""

    def __init__(self, dim: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(2 * POSITION_FEATURES, dim, 1)
        self.temperature = temperature

    def forward(self, height: int, width: int) -> torch.Tensor:
        """(1, dim, height, width) encoding."""
        device = self.token_projection.weight.device
        rows = torch.arange(1, height + 1, device=device, dtype=torch.float32)
        cols = torch.arange(1, width + 1, device=device, dtype=torch.float32)
        rows = (rows / (height + 1e-6) * 2 * math.pi)[:, None].expand(height, width)
        cols = (cols / (width + 1e-6) * 2 * math.pi)[None, :].expand(height, width)
        index = torch.arange(POSITION_FEATURES, device=device, dtype=torch.float32)
        periods = self.temperature ** (
            2 * torch.div(index, 2, rounding_mode="floor") / index.numel()
        )

        def features(position: torch.Tensor) -> torch.Tensor:
            phase = position[..., None] / periods  # sin on even features, cos on odd
            return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), -1).flatten(2)

        encoding = torch.cat((features(rows), features(cols)), dim=-1).permute(2, 0, 1)
        weight = self.token_projection.weight
        return self.token_projection(encoding[None].to(weight.dtype))


class CrossCovarianceAttention(nn.Module):
    """Attention across channels (XCiT, https://arxiv.org/abs/2106.09681): per head, softmax of
    the temperature-scaled cosine similarities of the d x d channel pairs, applied to v."""

    def __init__(self, dim: int, heads: int, rank_ratio: float | None) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = linear(dim, dim * 3, rank_ratio)
        self.proj = linear(dim, dim, rank_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)  # each (batch, heads, d, tokens)
        q, k = nn.functional.normalize(q, dim=-1), nn.functional.normalize(k, dim=-1)
        weights = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.proj((weights @ v).permute(0, 3, 1, 2).reshape(batch, tokens, dim))


class SplitTransposeBlock(nn.Module):
    """STDA: channel groups through a cascade of depthwise 3x3 convolutions (the last group
    passes), optional positions, cross-covariance attention and an MLP, each layer-scaled."""

    def __init__(
        self, dim: int, scales: int, heads: int, positions: bool, rank_ratio: float | None
    ) -> None:
        super().__init__()
        self.gamma_xca = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        group = math.ceil(dim / scales)
        self.convs = nn.ModuleList(depthwise(group, 3) for _ in range(max(1, scales - 1)))
        self.pos_embd = FourierPositions(dim) if positions else None
        self.norm_xca = nn.LayerNorm(dim, eps=EPS)
        self.xca = CrossCovarianceAttention(dim, heads, rank_ratio)
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, rank_ratio)

    def multi_scale(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(len(self.convs) + 1, dim=1)
        outputs, y = [], groups[0]
        for index, conv in enumerate(self.convs):
            y = conv(y if index == 0 else y + groups[index])
            outputs.append(y)
        return torch.cat([*outputs, groups[-1]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        y = self.multi_scale(x)
        if self.pos_embd is not None:
            y = y + self.pos_embd(height, width)
        y = y.flatten(2).transpose(1, 2)  # (batch, tokens, channels)
        y = y + self.gamma_xca * self.xca(self.norm_xca(y))
        y = self.gamma * self.mlp(self.norm(y.reshape(batch, height, width, channels)))
        return x + y.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """Optional LayerNorm + 2x2 stride-2 downsampling, then conv blocks and one STDA block."""

    def __init__(
        self, index: int, in_dim: int, config: EdgeFaceConfig, downsample: bool = True
    ) -> None:
        super().__init__()
        dim, depth = config.widths[index], config.depths[index]
        self.downsample: nn.Module = nn.Identity()
        if downsample:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_dim, eps=EPS), nn.Conv2d(in_dim, dim, 2, 2)
            )
        global_blocks = 0 if index == 0 else 1  # the first stage has none
        blocks: list[nn.Module] = [
            ConvBlock(dim, KERNELS[index], config.rank_ratio) for _ in range(depth - global_blocks)
        ]
        if global_blocks:
            positions = index == 1
            blocks.append(
                SplitTransposeBlock(dim, SCALES[index], config.heads, positions, config.rank_ratio)
            )
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pooling, LayerNorm, dropout, linear embedding."""

    def __init__(self, dim: int, embedding_size: int, config: EdgeFaceConfig, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.drop = nn.Dropout(dropout)
        self.fc = linear(dim, embedding_size, config.rank_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.norm(x.mean((2, 3)))))


class EdgeNeXt(nn.Module):
    def __init__(self, config: EdgeFaceConfig, embedding_size: int, dropout: float) -> None:
        super().__init__()
        widths = config.widths
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, 4), LayerNorm2d(widths[0], eps=EPS))
        self.stages = nn.Sequential(
            *(Stage(i, widths[max(i - 1, 0)], config, downsample=i > 0) for i in range(4))
        )
        self.head = Head(widths[-1], embedding_size, config, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class EdgeFace(nn.Module):
    """EdgeFace embedder: (N, 3, H, W) in [-1, 1] -> raw (N, embedding_size) features. The
    network sits in ``model``, as in the official wrapper, so the released keys match.
    Global average pooling takes any ``input_size`` of at least 32x32."""

    def __init__(
        self,
        config: EdgeFaceConfig,
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        super().__init__()
        self.model = EdgeNeXt(config, embedding_size, dropout)
        for module in self.modules():  # EdgeNeXt's: truncated normal (0.02), zero biases
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


CONFIGS = {
    "edgeface_xxs": EdgeFaceConfig((24, 48, 88, 168), (2, 2, 6, 2), 4, None),
    "edgeface_xs_gamma_06": EdgeFaceConfig((32, 64, 100, 192), (3, 3, 9, 3), 4, 0.6),
    "edgeface_s_gamma_05": EdgeFaceConfig((48, 96, 160, 304), (3, 3, 9, 3), 8, 0.5),
    "edgeface_base": EdgeFaceConfig((80, 160, 288, 584), (3, 3, 9, 3), 8, None),
}


def edgeface_xxs(**kwargs: Any) -> EdgeFace:
    """EdgeFace-XXS (https://arxiv.org/abs/2307.01838): EdgeNeXt-XXS, full-rank linears."""
    return EdgeFace(CONFIGS["edgeface_xxs"], **kwargs)


def edgeface_xs_gamma_06(**kwargs: Any) -> EdgeFace:
    """EdgeFace-XS (https://arxiv.org/abs/2307.01838): EdgeNeXt-XS, low rank gamma = 0.6."""
    return EdgeFace(CONFIGS["edgeface_xs_gamma_06"], **kwargs)


def edgeface_s_gamma_05(**kwargs: Any) -> EdgeFace:
    """EdgeFace-S (https://arxiv.org/abs/2307.01838): EdgeNeXt-S, low rank gamma = 0.5."""
    return EdgeFace(CONFIGS["edgeface_s_gamma_05"], **kwargs)


def edgeface_base(**kwargs: Any) -> EdgeFace:
    """EdgeFace-Base (https://arxiv.org/abs/2307.01838): EdgeNeXt-Base, full-rank linears."""
    return EdgeFace(CONFIGS["edgeface_base"], **kwargs)
