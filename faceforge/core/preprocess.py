"""Preprocessing that travels with a model: what the backbone expects as input."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Preprocess:
    """Input contract of an embedding model (stored in checkpoints and ONNX metadata).

    Images are aligned to ``template`` at ``input_size`` (height, width), converted to
    ``color`` order, then ``(pixel / 255 - mean) / std`` per channel: the default maps uint8
    to [-1, 1] exactly as insightface's ``(x - 127.5) / 127.5``.
    """

    input_size: tuple[int, int] = (112, 112)
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    template: str = "arcface"

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        return cls(
            input_size=tuple(values["input_size"]),
            color=str(values["color"]),
            mean=tuple(float(x) for x in values["mean"]),
            std=tuple(float(x) for x in values["std"]),
            template=str(values["template"]),
        )

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) in ``color`` order -> float32 (N, 3, H, W) model input."""
        x = images.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def affine(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` of shape (1, 3, 1, 1) with ``pixel * scale - shift`` equal to
        :meth:`normalize` for uint8 pixels: one multiply-add per pixel on any device."""
        std = torch.tensor(self.std, dtype=torch.float32, device=device) * 255
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device) * 255
        return (1 / std).view(1, 3, 1, 1), (mean / std).view(1, 3, 1, 1)
