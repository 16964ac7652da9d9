"""Every registered backbone through one parametrised test, plus the figures that matter:
exact parameter counts, insightface state-dict compatibility, MACs, ONNX and bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faceforge.core.preprocess import Preprocess
from faceforge.models import backbone_names, build_backbone, count_macs
from faceforge.models.complexity import count_parameters

#: 512-d embeddings. iresnet18/50/100 are insightface's published arcface_torch figures.
EXPECTED_PARAMETERS = {
    "mobilefacenet": 1_200_512,
    "iresnet18": 24_025_600,
    "iresnet34": 34_139_328,
    "iresnet50": 43_590_848,
    "iresnet100": 65_156_160,
    "iresnet200": 118_833_920,
    "se_iresnet50": 43_813_568,
    # recomputed layer by layer from the papers' tables in tests/models/test_zoo.py
    "mobilenetv1_1_0": 3_784_512,
    "mobilenetv1_0_5": 1_107_872,
    "mobilenetv1_0_25": 358_224,
    "resnet50": 74_886_208,
    # timm 1.0.15's skresnext50_32x4d (the paper's SKNet-50) without its ImageNet stem and
    # classifier, plus our 3x3 stem and E output (run locally); also in test_zoo.py
    "sknet50": 76_808_960,
    # facenet-pytorch's InceptionResnetV1 without logits: the same 23,482,624 (run locally)
    "inception_resnet_v1": 23_482_624,
    "sphereface20": 24_505_664,
    "sphereface36": 34_613_824,
    "sphereface64": 50_035_520,
    # otroshi/edgeface's get_model on timm 1.0.15 (run locally); the paper's 1.77M / 3.65M
    "edgeface_xxs": 1_244_744,
    "edgeface_xs_gamma_06": 1_770_492,
    "edgeface_s_gamma_05": 3_652_520,
    "edgeface_base": 18_225_812,
    # arcface_torch's VisionTransformer with vit_t/s/b/l_dp005_mask_005's settings (run locally)
    "vit_t": 19_137_792,
    "vit_s": 76_023_296,
    "vit_b": 113_833_472,
    "vit_l": 255_684_352,
}
IRESNET_STAGES = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
#: the families with tests of their own below; every backbone goes through test_zoo.py
RUNNABLE = ["iresnet18", "iresnet50", "mobilefacenet", "se_iresnet50"]


def images(batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 112, 112, generator=generator) * 2 - 1


def calibrated(model: nn.Module) -> nn.Module:
    """Eval-mode model whose batch-norm statistics come from real activations, so outputs
    have a realistic O(1) scale instead of shrinking through freshly initialised layers."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.momentum = None  # cumulative average: one batch sets the statistics
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(images(8, seed=1))
    return model.eval()


def test_registry_lists_every_backbone() -> None:
    assert backbone_names() == sorted(EXPECTED_PARAMETERS)


def test_unknown_name_lists_available_backbones() -> None:
    with pytest.raises(KeyError, match=r"resnet9.*valid choices: edgeface_base.*iresnet100"):
        build_backbone("resnet9")


def test_preprocess_is_reexported() -> None:
    assert Preprocess().input_size == (112, 112)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameter_count(name: str) -> None:
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        model = build_backbone(name)
    assert count_parameters(model) == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", RUNNABLE)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, dropout=0.2)
    model.train()
    out = model(images(2))
    assert out.shape == (2, 512)
    out.square().mean().backward()
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, param_name
            assert torch.isfinite(param.grad).all(), param_name

    assert model.dropout.p == 0.2

    with torch.no_grad():
        out = model.eval()(images(2))
    assert out.shape == (2, 512)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", RUNNABLE)
def test_embedding_size_sets_output_width(name: str) -> None:
    model = build_backbone(name, embedding_size=128).eval()
    with torch.no_grad():
        assert model(images(2)).shape == (2, 128)
    # only the last layer(s) depend on the width: their parameter count per output unit
    per_unit = (EXPECTED_PARAMETERS[name] - count_parameters(model)) / (512 - 128)
    last_layer_inputs = 512 if name == "mobilefacenet" else 512 * 7 * 7 + 1
    assert per_unit == last_layer_inputs + 2  # weight row (+ bias) and a BN scale/shift


def conv(kernel: int, c_in: int, c_out: int, groups: int = 1) -> int:
    return kernel * kernel * c_in // groups * c_out


def test_mobilefacenet_parameters_from_paper_table() -> None:
    """Parameter count recomputed from Table 1 of https://arxiv.org/abs/1804.07573 (every
    conv is bias-free and followed by a BN; all but the linear ones by a PReLU)."""

    def conv_bn(kernel: int, c_in: int, c_out: int, groups: int = 1, act: bool = True) -> int:
        return conv(kernel, c_in, c_out, groups) + 2 * c_out + (c_out if act else 0)

    def bottleneck(c_in: int, c_out: int, t: int) -> int:
        hidden = c_in * t
        return (
            conv_bn(1, c_in, hidden)
            + conv_bn(3, hidden, hidden, groups=hidden)
            + conv_bn(1, hidden, c_out, act=False)
        )

    def total(embedding: int) -> int:
        count = conv_bn(3, 3, 64) + conv_bn(3, 64, 64, groups=64)
        count += bottleneck(64, 64, 2) * 5
        count += bottleneck(64, 128, 4) + bottleneck(128, 128, 2) * 6
        count += bottleneck(128, 128, 4) + bottleneck(128, 128, 2) * 2
        count += conv_bn(1, 128, 512) + conv_bn(7, 512, 512, groups=512, act=False)
        return count + conv_bn(1, 512, embedding, act=False)

    assert total(512) == EXPECTED_PARAMETERS["mobilefacenet"]
    small = count_parameters(build_backbone("mobilefacenet", embedding_size=128))
    assert small == total(128) == 1_003_136
    assert small == pytest.approx(0.99e6, rel=0.02)  # "0.99M" in the paper


def test_count_macs_matches_hand_formula() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Flatten(),
        nn.Linear(8 * 56 * 56, 10),
    ).train()
    outputs = 8 * 56 * 56
    assert count_macs(model) == outputs * 27 + outputs * 9 + 10 * outputs
    assert model.training  # mode restored


def test_mobilefacenet_macs_match_paper() -> None:
    macs = count_macs(build_backbone("mobilefacenet", embedding_size=128))
    assert macs == 220_965_376
    assert macs == pytest.approx(221e6, rel=0.01)  # "221M MAdds" in the paper


def batchnorm_entries(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    shapes = dict.fromkeys(("weight", "bias", "running_mean", "running_var"), (channels,))
    return {f"{prefix}.{key}": shape for key, shape in shapes.items()} | {
        f"{prefix}.num_batches_tracked": ()
    }


def insightface_iresnet_entries(
    stages: tuple[int, ...], embedding: int = 512
) -> dict[str, tuple[int, ...]]:
    """State-dict names and shapes of insightface arcface_torch ``backbones/iresnet.py``
    (LResNetE-IR, https://arxiv.org/abs/1801.07698), written down from its architecture."""
    entries = {"conv1.weight": (64, 3, 3, 3)} | batchnorm_entries("bn1", 64)
    entries["prelu.weight"] = (64,)
    widths = [64, 64, 128, 256, 512]  # stem, then one width per stage
    for stage in range(1, 5):
        c_in, c_out = widths[stage - 1], widths[stage]
        for block in range(stages[stage - 1]):
            prefix = f"layer{stage}.{block}"
            block_in = c_in if block == 0 else c_out
            entries |= batchnorm_entries(f"{prefix}.bn1", block_in)
            entries[f"{prefix}.conv1.weight"] = (c_out, block_in, 3, 3)
            entries |= batchnorm_entries(f"{prefix}.bn2", c_out)
            entries[f"{prefix}.prelu.weight"] = (c_out,)
            entries[f"{prefix}.conv2.weight"] = (c_out, c_out, 3, 3)
            entries |= batchnorm_entries(f"{prefix}.bn3", c_out)
            if block == 0:  # every stage opens with stride 2, hence a projected shortcut
                entries[f"{prefix}.downsample.0.weight"] = (c_out, block_in, 1, 1)
                entries |= batchnorm_entries(f"{prefix}.downsample.1", c_out)
    entries |= batchnorm_entries("bn2", 512)
    entries |= {"fc.weight": (embedding, 512 * 7 * 7), "fc.bias": (embedding,)}
    return entries | batchnorm_entries("features", embedding)


@pytest.mark.parametrize("name", sorted(IRESNET_STAGES))
def test_iresnet_parameter_count_from_insightface_layout(name: str) -> None:
    entries = insightface_iresnet_entries(IRESNET_STAGES[name])
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    count = sum(int(np.prod(shape)) for key, shape in entries.items() if not key.endswith(buffers))
    assert count == EXPECTED_PARAMETERS[name]


def test_se_iresnet50_adds_squeeze_excitation_parameters() -> None:
    def se(channels: int) -> int:  # two biasless 1x1 convs through a channels/16 bottleneck
        return 2 * channels * (channels // 16)

    stages = zip((64, 128, 256, 512), IRESNET_STAGES["iresnet50"], strict=True)
    extra = sum(blocks * se(width) for width, blocks in stages)
    assert EXPECTED_PARAMETERS["se_iresnet50"] == EXPECTED_PARAMETERS["iresnet50"] + extra


def random_state(entries: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in entries.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith("weight") and len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=generator) * (2 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1 + key.endswith("weight")
    return state


def test_iresnet18_loads_insightface_state_dict_strictly() -> None:
    entries = insightface_iresnet_entries(IRESNET_STAGES["iresnet18"])
    model = build_backbone("iresnet18")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == entries
    assert not model.features.weight.requires_grad
    assert torch.equal(model.features.weight, torch.ones(512))

    state = random_state(entries, seed=3)
    first, second = build_backbone("iresnet18"), build_backbone("iresnet18")
    first.load_state_dict(state, strict=True)
    second.load_state_dict(state, strict=True)
    with torch.no_grad():
        a, b = first.eval()(images(2)), second.eval()(images(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.std() > 0.1  # a real, non-degenerate embedding


def test_mobilefacenet_channels_last_bf16_matches_fp32() -> None:
    torch.manual_seed(0)
    model = calibrated(build_backbone("mobilefacenet"))
    x = images(4, seed=6)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x.contiguous(memory_format=torch.channels_last))
    assert low.dtype == torch.bfloat16
    similarity = nn.functional.cosine_similarity(low.float(), reference)
    assert similarity.min() > 0.99
