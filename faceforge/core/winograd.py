"""Winograd F(4x4, 3x3) convolution for fp32 inference on CPUs.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (https://arxiv.org/abs/1509.09308):
a 3x3 convolution computes each 4x4 output tile from a 6x6 input tile with 36 products per
input-output channel pair instead of 144. The input tiles and the weights are transformed
(``B^T d B``, ``G g G^T``), the 36 transformed positions become 36 matrix products over
the channels, and the products are transformed back (``A^T m A``). The transforms are written
as matrix products too, so every step runs in the BLAS library.

On CPUs that compute bf16 natively the embedder runs bf16 and has no use for this. On the
others it runs fp32, where IResNet's 3x3 convolutions use most of the time: with oneDNN's
direct convolution IResNet-50 runs at about the FMA ceiling of an AVX2 core (see the
README's measured figures). Layers of fewer than 128 input channels gain nothing (the
transforms then cost as much as they save) and keep the direct convolution. The result
differs from the direct convolution by fp32 rounding amplified by the transforms' entries
(up to 8 and 1/24): about 1e-5 of the output's scale, cosine 0.9999998 between IResNet-50
embeddings. The transformed weights take 36/9 = 4x the memory of the layers they replace
(IResNet-50's inference copy: 166 -> 477 MiB; IResNet-100: 249 -> 806 MiB).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: input channels below which the direct convolution is as fast (see the module docs)
MIN_CHANNELS = 128
#: output tile side (F(4x4, 3x3)) and input tile side
OUT_TILE, IN_TILE = 4, 6

# the F(4x4, 3x3) transforms with interpolation points 0, +-1, +-2 (Lavin & Gray, eq. 11-13)
_B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))  # fmt: skip
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))  # fmt: skip
_A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def eligible(module: nn.Module, min_channels: int = MIN_CHANNELS) -> bool:
    """Whether ``module`` is a 3x3, stride 1, padding 1, ungrouped convolution with at least
    ``min_channels`` input channels (what :class:`WinogradConv2d` computes)."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and module.in_channels >= min_channels
    )


class WinogradConv2d(nn.Module):
    """The convolution of an :func:`eligible` ``nn.Conv2d`` by F(4x4, 3x3); its output is
    in ``channels_last`` layout."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not eligible(conv, min_channels=1):
            raise ValueError(f"Winograd F(4x4, 3x3) computes 3x3 stride-1 convolutions: {conv}")
        device = conv.weight.device  # a model on a GPU is transformed there
        b_t, g, a_t = (
            torch.tensor(m, dtype=torch.float64, device=device) for m in (_B_T, _G, _A_T)
        )
        weight = conv.weight.detach().double()
        transformed = torch.einsum("ai,kcij,bj->abck", g, weight, g)  # G g G^T per channel pair
        positions = IN_TILE * IN_TILE
        self.register_buffer(
            "weight", transformed.reshape(positions, conv.in_channels, conv.out_channels).float()
        )
        self.register_buffer("input_transform", torch.kron(b_t, b_t).float())
        self.register_buffer("output_transform", torch.kron(a_t, a_t).float())
        bias = torch.zeros(conv.out_channels, device=device) if conv.bias is None else conv.bias
        self.register_buffer("bias", bias.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        n, channels, height, width = x.shape
        rows, cols = -(-height // OUT_TILE), -(-width // OUT_TILE)
        tiles = n * rows * cols
        padded = x.new_zeros(n, rows * OUT_TILE + 2, cols * OUT_TILE + 2, channels)
        padded[:, 1 : height + 1, 1 : width + 1].copy_(x.permute(0, 2, 3, 1))
        windows = padded.unfold(1, IN_TILE, OUT_TILE).unfold(2, IN_TILE, OUT_TILE)
        windows = windows.reshape(tiles * channels, IN_TILE * IN_TILE)
        inputs = (self.input_transform @ windows.T).view(-1, tiles, channels)
        products = torch.bmm(inputs, self.weight)  # (36, tiles, out channels)
        out_channels = products.shape[2]
        outputs = self.output_transform @ products.view(-1, tiles * out_channels)
        outputs = outputs.view(OUT_TILE, OUT_TILE, n, rows, cols, out_channels)
        y = x.new_empty(n, rows * OUT_TILE, cols * OUT_TILE, out_channels)
        y.view(n, rows, OUT_TILE, cols, OUT_TILE, out_channels).copy_(
            outputs.permute(2, 3, 0, 4, 1, 5)
        )
        return y.add_(self.bias)[:, :height, :width].permute(0, 3, 1, 2)


def use_winograd(model: nn.Module, min_channels: int = MIN_CHANNELS) -> int:
    """Replace every :func:`eligible` convolution of ``model`` (in place) by a
    :class:`WinogradConv2d`; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if eligible(child, min_channels):
                setattr(parent, name, WinogradConv2d(child).to(child.weight.device))
                replaced += 1
    return replaced
