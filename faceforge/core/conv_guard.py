"""A guard around oneDNN's AMX bf16 convolution where a stride leaves one output column.

On CPUs with AMX (Intel Sapphire Rapids and later) oneDNN 3.12, the one in PyTorch 2.13's
CPU build, computes a bf16 convolution wrongly when its horizontal stride is above 1 and its
output is one column wide (and at least two rows high): NaN or values around 1e37 where the
input holds neither. It is the AMX kernel (``brg_conv_fwd:avx10_1_512_amx``): the same shapes
are right in fp32 and with AMX switched off (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``), and
oneDNN has fixed kernels of that family since (uxlfoundation/oneDNN#5494). Measured on such a
CPU: every failing shape of a scan over 6,624 (kernel 1-3, stride 2-4, 1-512 channels,
grouped and not) had one output column; Inception-ResNet-v1 at 112x96 (Mixed_7a's stride-2
convolutions of a 5x4 map) embedded NaN. AMX runs bf16 about 6x faster than the same CPU
without it (IResNet-50), so switching AMX off is no cure.

The single column of such a convolution is the first column of the same convolution with
horizontal stride 1, which the kernel computes right: :class:`OneColumnConvolutionGuard`
runs those convolutions that way inside reduced-precision regions on AMX CPUs (the same
maths; a few columns more work, on layers a few pixels wide).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode


def needs_convolution_guard(device_type: str, dtype: torch.dtype | None) -> bool:
    """Whether bf16 convolutions on ``device_type`` run on AMX, where one-column outputs
    need :class:`OneColumnConvolutionGuard`."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return device_type == "cpu" and dtype is torch.bfloat16 and amx()


def one_column_output(
    input: torch.Tensor, weight: torch.Tensor, stride: Any, padding: Any, dilation: Any
) -> bool:
    """Whether ``conv2d`` with these arguments strides horizontally into one output column."""
    if padding == "valid":
        padding = 0
    if isinstance(padding, str) or input.dim() != 4:
        return False  # "same" padding needs stride 1
    stride_w = _pair(stride)[1]
    pad_w, dilation_w = _pair(padding)[1], _pair(dilation)[1]
    span = dilation_w * (weight.shape[-1] - 1) + 1
    return stride_w > 1 and (input.shape[-1] + 2 * pad_w - span) // stride_w == 0


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


#: ``torch.conv2d``'s parameters and their defaults
CONV2D_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
CONV2D_PARAMETERS = ("input", "weight", *CONV2D_DEFAULTS)


class OneColumnConvolutionGuard(TorchFunctionMode):
    """Runs each 2-D convolution that strides horizontally into one output column with
    horizontal stride 1 and keeps its first column (see the module docstring); every other
    function runs as called."""

    def __torch_function__(
        self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is not torch.conv2d:
            return func(*args, **kwargs)
        call = CONV2D_DEFAULTS | dict(zip(CONV2D_PARAMETERS, args, strict=False)) | kwargs
        if not one_column_output(
            call["input"], call["weight"], call["stride"], call["padding"], call["dilation"]
        ):
            return func(*args, **kwargs)
        call["stride"] = (_pair(call["stride"])[0], 1)
        return func(**call)[..., :1]
