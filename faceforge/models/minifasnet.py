"""MiniFASNet silent face anti-spoofing networks (V1, V2, V1SE, V2SE) and their Fourier branch.

The layout and parameter names follow minivision-ai/Silent-Face-Anti-Spoofing (Apache-2.0), so
its published state dicts load strictly. Input: (N, 3, 80, 80) BGR pixels in 0-255 as float;
output: class logits, index 1 meaning a live face. The auxiliary branch (:class:`FourierNet`)
predicts the log-magnitude Fourier spectrum of the input from mid-level features, which helps
the network see print and screen artefacts during training (Silent-Face-Anti-Spoofing, 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

#: published channel widths after pruning ("1.8M" for V1/V1SE, "1.8M_" for V2/V2SE)
WIDTHS_V1 = (
    32, 32, 103, 103, 64, 13, 13, 64, 26, 26, 64, 13, 13, 64, 52, 52, 64, 231, 231, 128,
    154, 154, 128, 52, 52, 128, 26, 26, 128, 52, 52, 128, 26, 26, 128, 26, 26, 128, 308, 308,
    128, 26, 26, 128, 26, 26, 128, 512, 512,
)  # fmt: skip
WIDTHS_V2 = (
    32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231, 128,
    231, 231, 128, 52, 52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26, 128, 308, 308,
    128, 26, 26, 128, 26, 26, 128, 512, 512,
)  # fmt: skip


class ConvBN(nn.Module):
    """Convolution without bias, batch norm, and (unless ``linear``) a per-channel PReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
        linear: bool = False, padding: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        pad = kernel // 2 if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if not linear:
            self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if hasattr(self, "prelu") else x


class SqueezeExcite(nn.Module):
    """Channel attention: pooled features -> 1x1 conv, BN, ReLU -> 1x1 conv, BN, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.relu(self.bn1(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(self.bn2(self.fc2(gate)))


class InvertedBlock(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual (optionally SE-gated) when
    ``stride`` is 1."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, se: bool = False) -> None:
        super().__init__()
        self.conv = ConvBN(cin, mid)
        self.conv_dw = ConvBN(mid, mid, 3, stride, groups=mid)
        self.project = ConvBN(mid, cout, linear=True)
        self.residual = stride == 1
        if se:
            self.se_module = SqueezeExcite(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        if not self.residual:
            return out
        if hasattr(self, "se_module"):
            out = self.se_module(out)
        return x + out


class Stage(nn.Module):
    """Residual blocks at one resolution; with ``se`` the last block is squeeze-excited."""

    def __init__(self, widths: Sequence[int], se: bool) -> None:
        super().__init__()
        count = (len(widths) - 1) // 3
        self.model = nn.Sequential(
            *(
                InvertedBlock(widths[3 * i], widths[3 * i + 1], widths[3 * i + 3], 1,
                              se=se and i == count - 1)
                for i in range(count)
            )
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """The MiniFASNet classifier; ``conv6_kernel`` is the input size / 16 (5 for 80x80)."""

    def __init__(
        self, widths: Sequence[int], se: bool = False, num_classes: int = 3,
        embedding_size: int = 128, conv6_kernel: int = 5, dropout: float = 0.2,
    ) -> None:  # fmt: skip
        super().__init__()
        w = widths
        self.conv1 = ConvBN(3, w[0], 3, 2)
        self.conv2_dw = ConvBN(w[0], w[1], 3, 1, groups=w[1])
        self.conv_23 = InvertedBlock(w[1], w[2], w[4], 2)
        self.conv_3 = Stage(w[4:17], se)
        self.conv_34 = InvertedBlock(w[16], w[17], w[19], 2)
        self.conv_4 = Stage(w[19:38], se)
        self.conv_45 = InvertedBlock(w[37], w[38], w[40], 2)
        self.conv_5 = Stage(w[40:47], se)
        self.conv_6_sep = ConvBN(w[46], w[47])
        self.conv_6_dw = ConvBN(w[47], w[48], conv6_kernel, groups=w[48], linear=True, padding=0)
        self.linear = nn.Linear(w[48], embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)
        self.drop = nn.Dropout(dropout)
        self.prob = nn.Linear(embedding_size, num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mid-level (N, 128, H/8, W/8) features, the input of the Fourier branch."""
        return self.conv_4(self.conv_34(self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from :meth:`features`."""
        out = self.conv_6_dw(self.conv_6_sep(self.conv_5(self.conv_45(features)))).flatten(1)
        return self.prob(self.drop(self.bn(self.linear(out))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class FourierNet(nn.Module):
    """MiniFASNet plus the training-only branch mapping its features to a 1-channel spectrum map;
    ``forward`` returns ``(logits, spectrum)`` in training mode and logits in eval mode."""

    def __init__(self, model: MiniFASNet) -> None:
        super().__init__()
        self.model = model
        self.ft_generator = nn.Sequential(
            ConvBN(128, 128, 3), ConvBN(128, 64, 3), nn.Conv2d(64, 1, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features(x)
        logits = self.model.classify(features)
        if not self.training:
            return logits
        return logits, self.ft_generator(features)


def network_input(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB images -> the networks' input, (N, 3, H, W) float BGR pixels in 0-255
    (the published models' convention, kept for training too)."""
    bgr = np.asarray(images)[..., ::-1].astype(np.float32)  # one copy, also of a batch
    return torch.from_numpy(bgr).permute(0, 3, 1, 2).contiguous()


def fourier_target(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The Fourier branch's target: grey image -> centred log(1 + |FFT|) -> min-max to [0, 1],
    resized to ``size`` (the feature map)."""
    grey = images.mean(1, keepdim=True)
    spectrum = torch.fft.fftshift(torch.fft.fft2(grey).abs(), dim=(-2, -1)).log1p()
    low = spectrum.amin((2, 3), keepdim=True)
    high = spectrum.amax((2, 3), keepdim=True)
    scaled = (spectrum - low) / (high - low).clamp_min(1e-6)
    return nn.functional.interpolate(scaled, size=size, mode="bilinear", align_corners=False)


def _builder(widths: Sequence[int], se: bool, dropout: float):
    def build(num_classes: int = 3, conv6_kernel: int = 5, **kwargs) -> MiniFASNet:
        kwargs.setdefault("dropout", dropout)
        return MiniFASNet(widths, se, num_classes, conv6_kernel=conv6_kernel, **kwargs)

    return build


minifasnet_v1 = _builder(WIDTHS_V1, se=False, dropout=0.2)
minifasnet_v2 = _builder(WIDTHS_V2, se=False, dropout=0.2)
minifasnet_v1se = _builder(WIDTHS_V1, se=True, dropout=0.75)
minifasnet_v2se = _builder(WIDTHS_V2, se=True, dropout=0.75)
