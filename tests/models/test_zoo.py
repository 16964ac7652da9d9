"""Every registered backbone through one parametrised test (shapes, fp32 and bf16 outputs,
backward, channels-last, ONNX parity, 112x96 and 112x112), and the parameter counts of the
zoo families recomputed layer by layer from their papers' tables."""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from faceforge.core.precision import Precision
from faceforge.models import backbone_names, build_backbone, count_macs, count_parameters
from faceforge.models.resnet import ResNet
from faceforge.models.sknet import SK_BOTTLENECK

#: built and counted only (test_backbones.py): they run the same code as a smaller sibling
SAME_CODE_AS_SMALLER = {
    "iresnet34",
    "iresnet100",
    "iresnet200",
    "sphereface36",
    "sphereface64",
    "mobilenetv1_1_0",
    "iresnet50",
    "se_iresnet50",
    "edgeface_s_gamma_05",
    "edgeface_base",
    "sknet50",  # see test_selective_kernel_resnet_contract
    "vit_s",
    "vit_b",
    "vit_l",
}
#: too big for a forward pass in the suite (over 100M parameters; same code as a sibling)
TOO_BIG_TO_RUN = {"iresnet100", "iresnet200", "vit_b", "vit_l"}
#: ReLU networks (no PReLU): at random initialisation every input maps to nearly the same
#: activations, the embedding is the small difference that the batch norms blow up, and
#: bf16's 8-bit mantissa cannot hold it (cosine to fp32 ~0.8); only finiteness is checked
ILL_CONDITIONED_AT_INIT = {"mobilenetv1_0_5", "mobilenetv1_0_25", "resnet50"}
RUN = sorted(set(backbone_names()) - SAME_CODE_AS_SMALLER)
SPHERE_SIZE = (112, 96)


def faces(batch: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *size, generator=generator) * 2 - 1


def calibrated(model: nn.Module, size: tuple[int, int]) -> nn.Module:
    """Eval-mode model whose batch norms hold the statistics of one real batch, so outputs
    have an O(1) scale and absolute tolerances mean something."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None  # cumulative average: one batch sets the statistics
        norm.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(faces(4, size, seed=1))
    return model.eval()


def onnx_output(model: nn.Module, x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy TorchScript exporter
        torch.onnx.export(
            model,
            (faces(1, size),),
            buffer,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            dynamo=False,
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("name", sorted(set(backbone_names()) - TOO_BIG_TO_RUN))
def test_backbone_takes_112x112(name: str) -> None:
    with torch.no_grad():
        out = build_backbone(name, embedding_size=32).eval()(faces(1, (112, 112)))
    assert out.shape == (1, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", RUN)
def test_backbone_contract(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, embedding_size=64, dropout=0.1, input_size=SPHERE_SIZE)
    check_contract(model, ill_conditioned=name in ILL_CONDITIONED_AT_INIT)


def test_selective_kernel_resnet_contract() -> None:
    """sknet50's code (ResNet with SK bottlenecks) with one block per stage: a quarter of the
    time of the 16-block network, every layer kind still there."""
    torch.manual_seed(0)
    model = ResNet((1, 1, 1, 1), 64, 0.1, SPHERE_SIZE, block=SK_BOTTLENECK)
    check_contract(model, ill_conditioned=True)


def check_contract(model: nn.Module, ill_conditioned: bool) -> None:
    """Shapes, backward, fp32/bf16/channels-last outputs and ONNX parity on 112x96 crops for a
    model built with embedding_size=64, dropout=0.1 and input_size=SPHERE_SIZE."""
    size = SPHERE_SIZE
    out = model.train()(faces(2, size))
    assert out.shape == (2, 64)
    out.square().mean().backward()
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), param_name

    model = calibrated(model, size)
    x = faces(3, size, seed=2)  # a batch size other than the exported one
    with torch.no_grad():
        reference = model(x)
        scale = reference.abs().max().item()
        assert torch.isfinite(reference).all() and reference.std() > 1e-3 * scale > 0
        # channels-last and ONNX Runtime compute the same sums in another order: fp32 rounding
        # (eps 6e-8) times sqrt(terms) (up to ~300 for a 86,016-input FC) over ~50 layers
        tolerance = 1e-3 * scale
        model_cl = model.to(memory_format=torch.channels_last)
        channels_last = model_cl(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(channels_last, reference, rtol=0, atol=tolerance)
        # bf16 keeps 8 mantissa bits: ~2^-9 relative rounding per layer, a few percent after
        # ~50 layers in quadrature, so the direction of the embedding holds to cosine > 0.99;
        # run in the library's bf16 region (with its guard on AMX CPUs, core.conv_guard)
        with Precision("cpu", torch.bfloat16).autocast():
            low = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.isfinite(low).all()
    if not ill_conditioned:
        assert nn.functional.cosine_similarity(low.float(), reference).min() > 0.99
    np.testing.assert_allclose(
        onnx_output(model.to(memory_format=torch.contiguous_format), x, size),
        reference.numpy(),
        rtol=0,
        atol=tolerance,
    )


def conv(kernel: int | tuple[int, int], c_in: int, c_out: int, groups: int = 1) -> int:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return kh * kw * c_in // groups * c_out


def bn(channels: int) -> int:
    return 2 * channels


@pytest.mark.parametrize(
    ("name", "width"),
    [("mobilenetv1_1_0", 1.0), ("mobilenetv1_0_5", 0.5), ("mobilenetv1_0_25", 0.25)],
)
def test_mobilenetv1_parameters_from_paper_table(name: str, width: float) -> None:
    """Table 1 of https://arxiv.org/abs/1704.04861 (widths scaled by ``width``), the 7x7 GDC
    and a 512-d linear 1x1 embedding, every conv bias-free with a batch norm."""
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    c = [int(w * width) for w in widths]
    total = conv(3, 3, c[0]) + bn(c[0])
    for c_in, c_out in itertools.pairwise(c):
        total += conv(3, c_in, c_in, c_in) + bn(c_in) + conv(1, c_in, c_out) + bn(c_out)
    total += conv(7, c[-1], c[-1], c[-1]) + bn(c[-1]) + conv(1, c[-1], 512) + bn(512)
    assert count_parameters(build_backbone(name)) == total


def bottleneck_stages(mid_ratio: int, middle: Callable[[int], int]) -> int:
    """Parameters of the four bottleneck stages [3, 4, 6, 3] of a 50-layer network whose
    blocks work on ``mid_ratio`` x (64, 128, 256, 512) channels through ``middle``."""
    total, c_in = 0, 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True):
        for _ in range(blocks):
            mid, out = mid_ratio * width, 4 * width
            total += conv(1, c_in, mid) + bn(mid) + middle(mid) + conv(1, mid, out) + bn(out)
            if c_in != out:
                total += conv(1, c_in, out) + bn(out)
            c_in = out
    return total


#: our 3x3 stem and the BN-FC-BN output on the 7x7x2048 map
FACE_STEM_AND_OUTPUT = conv(3, 3, 64) + bn(64) + bn(2048) + 2048 * 7 * 7 * 512 + 512 + bn(512)


def test_resnet50_parameters_from_paper_table() -> None:
    """Table 1 of https://arxiv.org/abs/1512.03385 (bottlenecks [3, 4, 6, 3]) with a 3x3
    stem and the BN-FC-BN output on the 7x7x2048 map."""
    total = bottleneck_stages(1, lambda width: conv(3, width, width) + bn(width))
    assert count_parameters(build_backbone("resnet50")) == total + FACE_STEM_AND_OUTPUT


def test_sknet50_parameters_from_paper_table() -> None:
    """Table 1 of https://arxiv.org/abs/1903.06586: ResNeXt-50 widths around SK[M=2, G=32,
    r=16, L=32] units (two grouped 3x3 paths with batch norm; fuse FC to d = max(C/16, 32)
    with batch norm; one FC per path to select). With the ImageNet stem and 1000-way
    classifier that is the paper's 27.5M, and timm 1.0.15's skresnext50_32x4d (run locally)."""

    def sk_unit(channels: int) -> int:
        hidden = max(channels // 16, 32)
        paths = 2 * (conv(3, channels, channels, 32) + bn(channels))
        return paths + channels * hidden + bn(hidden) + hidden * 2 * channels

    body = bottleneck_stages(2, sk_unit)
    assert conv(7, 3, 64) + bn(64) + body + 2048 * 1000 + 1000 == 27_479_784
    assert count_parameters(build_backbone("sknet50")) == body + FACE_STEM_AND_OUTPUT


@pytest.mark.parametrize(
    ("name", "units"),
    [
        ("sphereface20", (1, 2, 4, 1)),
        ("sphereface36", (2, 4, 8, 2)),
        ("sphereface64", (3, 8, 16, 3)),
    ],
)
def test_sphereface_parameters_from_paper_table(name: str, units: tuple[int, ...]) -> None:
    """Table 2 of https://arxiv.org/abs/1704.08063: biased 3x3 convs with PReLU, no batch
    norm, and fc5 on the 7x6x512 map of a 112x96 crop."""
    total, c_in = 0, 3
    for width, count in zip((64, 128, 256, 512), units, strict=True):
        total += conv(3, c_in, width) + 2 * width  # bias and PReLU slopes
        total += count * 2 * (conv(3, width, width) + 2 * width)
        c_in = width
    total += 512 * 7 * 6 * 512 + 512
    assert count_parameters(build_backbone(name, input_size=SPHERE_SIZE)) == total


def test_mobilenetv1_macs_from_paper_table() -> None:
    """Per-layer multiply-accumulates (kernel volume x output positions) of Table 1 of
    https://arxiv.org/abs/1704.04861 on a 112x112 face: 56x56 after the stem, 28, 14 and 7
    after the stride-2 blocks, the 1024-wide blocks kept at 7x7, then GDC and embedding."""
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    sides = [56, 28, 28, 14, 14, 7, 7, 7, 7, 7, 7, 7, 7]  # output side of each block
    total = conv(3, 3, 32) * 56 * 56
    for (c_in, c_out), side in zip(itertools.pairwise(widths), sides, strict=True):
        total += (conv(3, c_in, c_in, c_in) + conv(1, c_in, c_out)) * side * side
    total += conv(7, 1024, 1024, 1024) + conv(1, 1024, 512)
    assert count_macs(build_backbone("mobilenetv1_1_0")) == total
