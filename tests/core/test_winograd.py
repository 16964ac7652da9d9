"""Winograd F(4x4, 3x3): the convolution it replaces, to fp32 rounding amplified by its
transforms; which layers it takes; the embedder uses it for fp32 on CPU only."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from faceforge.core.embedder import Embedder
from faceforge.core.precision import EmulatedPrecisionWarning
from faceforge.core.winograd import MIN_CHANNELS, WinogradConv2d, eligible, use_winograd
from faceforge.models import build_backbone

#: the error bound relative to the output's largest value: fp32's 1.2e-7 grown by the
#: transforms' entries (up to 8 in A^T, 5 in B^T, 1/24 in G) over 36 positions and the
#: channel sums, about 100-fold; measured 1e-6..1e-5
RELATIVE_ERROR = 1e-4


@pytest.mark.parametrize(
    ("channels", "out_channels", "size", "batch", "bias"),
    [(8, 8, 8, 1, True), (16, 24, 7, 3, False), (4, 4, 13, 2, True), (32, 16, 14, 2, True)],
)
def test_the_convolution_of_any_size_and_layout(channels, out_channels, size, batch, bias):
    """Sizes that are multiples of the 4x4 tile and ones that are not (7, 13, 14: padded
    tiles cropped), NCHW and channels-last inputs, with and without bias."""
    torch.manual_seed(size)
    conv = nn.Conv2d(channels, out_channels, 3, padding=1, bias=bias)
    x = torch.randn(batch, channels, size, size + 1)
    reference = nn.functional.conv2d(
        x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(), 1, 1
    )
    winograd = WinogradConv2d(conv)
    for layout in (torch.contiguous_format, torch.channels_last):
        y = winograd(x.contiguous(memory_format=layout))
        assert y.shape == reference.shape and y.dtype == torch.float32
        error = (y.double() - reference).abs().max() / reference.abs().max()
        assert error < RELATIVE_ERROR, (layout, float(error))


def test_only_3x3_stride_1_ungrouped_convolutions_of_enough_channels_are_taken() -> None:
    taken = nn.Conv2d(MIN_CHANNELS, 8, 3, padding=1)
    assert eligible(taken)
    assert not eligible(nn.Conv2d(MIN_CHANNELS - 1, 8, 3, padding=1))
    for other in (
        nn.Conv2d(MIN_CHANNELS, 8, 3, stride=2, padding=1),
        nn.Conv2d(MIN_CHANNELS, 8, 1),
        nn.Conv2d(MIN_CHANNELS, MIN_CHANNELS, 3, padding=1, groups=MIN_CHANNELS),
        nn.Conv2d(MIN_CHANNELS, 8, 3, padding=2, dilation=2),
        nn.Conv2d(MIN_CHANNELS, 8, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(MIN_CHANNELS, 8, 3, padding=0),
    ):
        assert not eligible(other), other
    with pytest.raises(ValueError, match="3x3 stride-1"):
        WinogradConv2d(nn.Conv2d(8, 8, 3, stride=2, padding=1))


def test_iresnet_embeddings_keep_their_direction() -> None:
    """IResNet-18's 3x3 convolutions of 128 channels and more (its last three stages) run
    as Winograd; its embeddings stay within cosine 1e-6 of the direct convolutions'."""
    torch.manual_seed(0)
    net = build_backbone("iresnet18", embedding_size=64).eval()
    direct = Embedder.from_backbone(net, device="cpu", precision="fp32")
    assert direct.backend.winograd  # the default for fp32 on CPU
    plain = Embedder(direct.model, type(direct.backend)(net, _options(winograd=False)))
    assert not plain.backend.winograd
    assert "Winograd 3x3" in repr(direct) and "Winograd" not in repr(plain)
    replaced = [m for m in direct.backend.model.modules() if isinstance(m, WinogradConv2d)]
    # stage 2: its second block's two; stages 3 and 4: also the first block's first (its
    # input has 128 / 256 channels); first blocks' second convolutions have stride 2
    assert len(replaced) == 8
    faces = torch.randint(0, 256, (5, 112, 112, 3), dtype=torch.uint8).numpy()
    cosines = (direct.embed(faces) * plain.embed(faces)).sum(axis=1)
    assert cosines.min() > 1 - 1e-6


def test_reduced_precision_and_compiled_networks_keep_direct_convolutions() -> None:
    net = build_backbone("iresnet18", embedding_size=64).eval()
    backend_type = type(Embedder.from_backbone(net, device="cpu", precision="fp32").backend)
    with warnings.catch_warnings():  # bf16 is emulated on some CPUs: no matter here
        warnings.simplefilter("ignore", EmulatedPrecisionWarning)
        assert not backend_type(net, _options(precision="bf16")).winograd
        assert backend_type(net, _options(precision="bf16", winograd=True)).winograd  # asked
    assert not backend_type(net, _options(compile=True)).winograd


def test_an_in_memory_backbone_takes_the_same_switch() -> None:
    """``Embedder.from_backbone`` (training's evaluation, benchmarks) takes ``winograd`` as
    ``load_embedder`` does: default on for fp32 on CPU, and either way when asked."""
    net = build_backbone("iresnet18", embedding_size=64).eval()
    for asked, expected in ((None, True), (False, False), (True, True)):
        embedder = Embedder.from_backbone(net, device="cpu", precision="fp32", winograd=asked)
        assert embedder.backend.winograd is expected
    assert type(net.layer2[0].conv1) is nn.Conv2d  # the backbone itself is left alone


def _options(**options):
    from faceforge.core.torch_backend import RuntimeOptions

    return RuntimeOptions(device=torch.device("cpu"), **{"precision": "fp32", **options})


def test_use_winograd_counts_what_it_replaced() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, MIN_CHANNELS, 3, padding=1), nn.Conv2d(MIN_CHANNELS, 8, 3, padding=1)
    )
    assert use_winograd(model) == 1
    assert type(model[0]) is nn.Conv2d and isinstance(model[1], WinogradConv2d)


def test_the_command_line_and_the_pipeline_turn_it_off(tmp_path) -> None:
    """``--no-winograd`` reaches the embedder through FacePipeline.load, as the CLI builds it."""
    from faceforge.cli import parse_args
    from faceforge.cli.model_commands import runtime_kwargs
    from faceforge.config import Config, ModelConfig
    from faceforge.core.checkpoint import Checkpoint
    from faceforge.inference.pipeline import FacePipeline

    net = build_backbone("iresnet18", embedding_size=64)
    config = Config(model=ModelConfig(backbone="iresnet18", embedding_size=64))
    Checkpoint(config=config, backbone=net.state_dict()).save(tmp_path / "r18.pt")
    argv = ["eval", "--checkpoint", str(tmp_path / "r18.pt"), "--precision", "fp32"]
    for flag, expected in ((None, True), ("--winograd", True), ("--no-winograd", False)):
        options = runtime_kwargs(parse_args(argv + ([flag] if flag else [])))
        assert options["winograd"] == (None if flag is None else expected)
        pipeline = FacePipeline.load(tmp_path / "r18.pt", detector=None, **options)
        assert pipeline.embedder.backend.winograd is expected
