"""Compute precision, one vocabulary for training and inference: ``fp32 | bf16 | fp16 | auto``.

Mixed precision is applied by the caller (the training step, the batch embedder), never
inside models. ``auto`` (every shipped recipe's choice) picks fp16 on CUDA, bf16 on a CPU
that computes it natively (AVX512-BF16 / AMX) and fp32 otherwise. Where bfloat16 is only
emulated (AVX2 CPUs: most laptops and many cloud machines) it is several times slower than
fp32 (3.5x for a MobileFaceNet training step), so an explicit ``bf16`` there warns, and
``fp16``, which needs CUDA, falls back to what ``auto`` picks.

>>> resolve_precision("fp32", torch.device("cpu")).dtype is None
True
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch

from faceforge.core.conv_guard import OneColumnConvolutionGuard, needs_convolution_guard
from faceforge.errors import ConfigError
from faceforge.registry import Registry


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (else bf16 is emulated and slow)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _fp32(device: torch.device) -> torch.dtype | None:
    return None


class EmulatedPrecisionWarning(UserWarning):
    """A precision was asked for that this device does not compute natively."""


def _bf16(device: torch.device) -> torch.dtype | None:
    if device.type == "cpu" and not native_bf16(device):
        warnings.warn(
            "bf16 is emulated on this CPU (no AVX512-BF16 or AMX): expect it to run several "
            "times slower than fp32 (3.5x for a MobileFaceNet training step); use auto, which "
            "picks fp32 here",
            EmulatedPrecisionWarning,
            stacklevel=3,
        )
    return torch.bfloat16


def _fp16(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.float16
    fallback = _auto(device)
    name = "fp32" if fallback is None else "bf16"
    warnings.warn(
        f"fp16 autocast needs CUDA; using {name} on this device (what auto picks)",
        EmulatedPrecisionWarning,
        stacklevel=3,
    )
    return fallback


def _auto(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if native_bf16(device) else None


def _int8(device: torch.device) -> torch.dtype | None:
    raise ConfigError(
        "int8 is an inference precision for ONNX models (the onnxruntime-int8 embedder "
        "backend); PyTorch runs fp32, bf16 or fp16"
    )


#: precision name -> autocast dtype on a device (``None``: plain fp32)
PRECISIONS: Registry[torch.dtype | None] = Registry.of(
    "precision", {"fp32": _fp32, "bf16": _bf16, "fp16": _fp16, "auto": _auto, "int8": _int8}
)


@dataclass(frozen=True)
class Precision:
    """How a forward pass runs on ``device_type``: ``dtype`` None means plain fp32."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        """What runs: ``fp32``, ``bf16`` or ``fp16`` (what ``auto`` resolved to)."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The region that runs in this precision: autocast to ``dtype`` (nothing for fp32),
        with :class:`~faceforge.core.conv_guard.OneColumnConvolutionGuard` where bf16
        convolutions run on AMX."""
        region = contextlib.ExitStack()
        if self.dtype is not None:
            region.enter_context(torch.autocast(self.device_type, dtype=self.dtype))
        if needs_convolution_guard(self.device_type, self.dtype):
            region.enter_context(OneColumnConvolutionGuard())
        return region

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only; a disabled scaler is a no-op pass-through."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """The :class:`Precision` that ``name`` (see :data:`PRECISIONS`) means on ``device``."""
    return Precision(device.type, PRECISIONS.get(name)(device))
