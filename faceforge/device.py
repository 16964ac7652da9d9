"""Device selection shared by training, evaluation and inference."""

from __future__ import annotations

import torch

from faceforge.errors import ConfigError, shorten


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when available, else CPU; asking for CUDA on a
    machine without it is an error that says so (instead of a deep CUDA traceback)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"unknown device {shorten(device)}; use auto, cpu, cuda or cuda:<index>"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} requested but no CUDA device is available")
    return resolved
