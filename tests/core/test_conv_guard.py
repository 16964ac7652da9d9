"""The one-column convolution guard: exact maths, entered by every bf16 region on AMX CPUs,
and bf16 convolutions that equal fp32 on any CPU (on AMX ones through the guard)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from faceforge.core.conv_guard import (
    OneColumnConvolutionGuard,
    needs_convolution_guard,
    one_column_output,
)
from faceforge.core.precision import Precision, resolve_precision

CPU = torch.device("cpu")
#: the library's bf16 region on the CPU, whether or not this CPU computes bf16 natively
BF16 = Precision("cpu", torch.bfloat16)

#: (batch, channels, height, width) of stride-2 3x3 inputs that oneDNN 3.12's AMX kernel got
#: wrong (NaN, ~1e37 or cosine 0.7 to fp32): Inception-ResNet-v1's Mixed_7a at 112x96 first
ONE_COLUMN_INPUTS = [(16, 256, 5, 4), (3, 128, 7, 3), (16, 384, 9, 4), (4, 96, 6, 3)]


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return ((output.float() - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize(
    ("width", "kernel", "stride", "padding", "dilation", "one_column"),
    [
        (4, 3, 2, 0, 1, True),  # (4 - 3) // 2 + 1 = 1
        (5, 3, 2, 0, 1, False),  # two columns
        (3, 3, 1, 0, 1, False),  # one column without a stride: computed right
        (2, 3, 2, 1, 1, True),  # padded: (2 + 2 - 3) // 2 + 1 = 1
        (6, 3, 2, 0, 2, True),  # dilated span 5: (6 - 5) // 2 + 1 = 1
        (4, 3, 2, "valid", 1, True),
        (4, 3, 1, "same", 1, False),
    ],
)
def test_one_column_output_follows_the_output_size_formula(
    width, kernel, stride, padding, dilation, one_column
):
    x, w = torch.zeros(1, 2, 6, width), torch.zeros(2, 2, kernel, kernel)
    assert one_column_output(x, w, (1, stride), padding, dilation) is one_column
    expected_width = F.conv2d(x, w, None, (1, stride), padding, dilation).shape[-1]
    assert (expected_width == 1 and stride > 1) is one_column


@pytest.mark.parametrize("shape", ONE_COLUMN_INPUTS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_guard_computes_the_same_convolution_in_fp32(shape, channels_last):
    """Stride 1 then the first column is the strided convolution: equal to fp32 rounding
    (the same products, summed in the same kernel order or another)."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(shape[1], 64, 3, stride=2, bias=True)
    with torch.no_grad():
        reference = conv(x)
        with OneColumnConvolutionGuard():
            guarded = conv(x)
            by_keyword = F.conv2d(input=x, weight=conv.weight, bias=conv.bias, stride=2)
    assert guarded.shape == reference.shape == by_keyword.shape
    # fp32 sums of 9 * 384 products of O(1) terms: ~6e-8 * sqrt(3456) relative, far below
    assert relative_error(guarded, reference) < 1e-5
    assert relative_error(by_keyword, reference) < 1e-5


@pytest.mark.parametrize("shape", ONE_COLUMN_INPUTS)
def test_bf16_one_column_convolutions_agree_with_fp32_on_this_cpu(shape):
    """What users get: the library's bf16 region (the guard where the CPU has AMX) gives the
    fp32 result to bf16 rounding (inputs, weights and output each 2^-9 relative: ~0.4 %
    measured; without the guard on an AMX CPU, NaN or 1e36). Its backward was never wrong."""
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    weight = (torch.randn(shape[1], shape[1], 3, 3) / (9 * shape[1]) ** 0.5).requires_grad_()
    reference = F.conv2d(x, weight, None, 2)
    grad = torch.randn_like(reference)
    reference_grads = torch.autograd.grad(reference, (x, weight), grad)
    with BF16.autocast():  # emulated where the CPU lacks bf16: slow, still right
        low = F.conv2d(x, weight, None, 2)
    assert relative_error(low, reference) < 2e-2
    low_grads = torch.autograd.grad(low.float(), (x, weight), grad)
    for low_grad, reference_grad in zip(low_grads, reference_grads, strict=True):
        assert relative_error(low_grad, reference_grad) < 2e-2


@pytest.mark.parametrize("amx", [False, True])
def test_bf16_regions_enter_the_guard_only_on_amx_cpus(monkeypatch, amx):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert needs_convolution_guard("cpu", torch.bfloat16) is amx
    assert not needs_convolution_guard("cpu", None)
    assert not needs_convolution_guard("cuda", torch.bfloat16)
    with BF16.autocast():
        modes = _get_current_function_mode_stack()
        assert any(isinstance(mode, OneColumnConvolutionGuard) for mode in modes) is amx
        assert torch.is_autocast_enabled("cpu")
    with resolve_precision("fp32", CPU).autocast():
        assert not _get_current_function_mode_stack()
        assert not torch.is_autocast_enabled("cpu")
