"""Preprocessing that travels with a model: what the backbone expects as input.

:meth:`Preprocess.apply` is the one place where uint8 pixels become model input: training
batches, every embedder backend (PyTorch and ONNX Runtime), ONNX export checks and the
benchmarks all go through it, so colour order and normalisation cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from faceforge.data.alignment import template_points
from faceforge.errors import CheckpointError, DataError

COLOR_ORDERS = ("RGB", "BGR")


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

    def check(self, where: str) -> None:
        """Raise CheckpointError (naming ``where``) when this contract cannot describe a
        usable model input: unknown colour order, a non-finite mean or std, a non-positive
        std, or no alignment template for the input size."""
        if self.color not in COLOR_ORDERS:
            raise CheckpointError(
                f"{where}: unknown colour order {self.color!r}; expected one of {COLOR_ORDERS}"
            )
        if not all(math.isfinite(float(v)) for v in (*self.mean, *self.std)):
            raise CheckpointError(
                f"{where}: preprocessing mean and std must be finite, got mean {self.mean} "
                f"and std {self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise CheckpointError(f"{where}: preprocessing std must be positive, got {self.std}")
        try:
            template_points(tuple(self.input_size), self.template)
        except ValueError as exc:
            raise CheckpointError(f"{where}: {exc}") from None

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) RGB pixels -> float32 model input in ``color`` order.

        Any memory layout (an NHWC buffer viewed as NCHW stays channels-last) and any device;
        one multiply-add per pixel, ``pixel * (1 / (255 std)) - mean / std``. Other dtypes
        are refused: float pixels have no one scale (0-1 or 0-255), and a float32 tensor
        would be normalised in place, in the caller's memory.
        """
        if pixels.dtype != torch.uint8:
            raise DataError(f"face pixels must be uint8 (0-255), got {pixels.dtype}")
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device) * 255
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device) * 255
        if self.color == "BGR":
            pixels = pixels.flip(1)
        scale, shift = (1 / std).view(1, 3, 1, 1), (mean / std).view(1, 3, 1, 1)
        return pixels.float().mul_(scale).sub_(shift)

    def normalize(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB faces -> contiguous float32 (N, 3, H, W) model input
        (:meth:`apply` on the CPU)."""
        pixels = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2)
        return self.apply(pixels).contiguous().numpy()
