"""Mixed precision for the training loop (never inside models): autocast and loss scaling."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch

from faceforge.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: ``dtype`` None means plain fp32."""

    device_type: str
    dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only; a disabled scaler is a no-op pass-through."""
        enabled = self.dtype == torch.float16
        return torch.amp.GradScaler(self.device_type, enabled=enabled)


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """Map ``train.amp`` (none | bf16 | fp16) to a :class:`Precision` for ``device``.

    fp16 autocast with loss scaling is a CUDA feature; on CPU it falls back to bf16 with a
    warning, so a GPU recipe still runs on a laptop.
    """
    if amp == "none":
        return Precision(device.type, None)
    if amp == "bf16":
        return Precision(device.type, torch.bfloat16)
    if amp == "fp16":
        if device.type == "cuda":
            return Precision("cuda", torch.float16)
        warnings.warn("train.amp=fp16 needs CUDA; using bf16 autocast on CPU", stacklevel=2)
        return Precision(device.type, torch.bfloat16)
    raise ConfigError(f"unknown train.amp {amp!r}; use none, bf16 or fp16")
