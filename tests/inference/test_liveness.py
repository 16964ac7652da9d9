"""MiniFASNet: the published anti-spoofing files load strictly and our network computes what an
independent functional evaluation of the same state dict computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforge.inference.liveness import (
    LivenessChecker,
    liveness_crop,
    load_liveness_model,
    scaled_box,
)
from faceforge.models.minifasnet import FourierNet, fourier_target, network_input
from faceforge.models.registry import ANTISPOOF_MODELS, build_antispoof_model

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "anti-spoofing"
PUBLISHED = ["2.7_80x80_MiniFASNetV2.pth", "4_0_0_80x80_MiniFASNetV1SE.pth"]


def _published(name: str) -> Path:
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"published MiniFASNet weights not found at {path} (needs ../shared/models)")
    return path


def _bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x, sd[prefix + "running_mean"], sd[prefix + "running_var"],
        sd[prefix + "weight"], sd[prefix + "bias"], eps=1e-5,
    )  # fmt: skip


def _conv(x: torch.Tensor, sd: dict, prefix: str, stride: int = 1, act: bool = True):
    """Conv (groups and padding read off the weight shape) + BN (+ PReLU)."""
    weight = sd[prefix + "conv.weight"]
    groups = x.shape[1] // weight.shape[1]
    x = F.conv2d(x, weight, stride=stride, padding=weight.shape[-1] // 2, groups=groups)
    x = _bn(x, sd, prefix + "bn.")
    return F.prelu(x, sd[prefix + "prelu.weight"]) if act else x


def _block(x: torch.Tensor, sd: dict, prefix: str, stride: int) -> torch.Tensor:
    out = _conv(x, sd, prefix + "conv.")
    out = _conv(out, sd, prefix + "conv_dw.", stride)
    out = _conv(out, sd, prefix + "project.", act=False)
    if stride == 2:
        return out
    if prefix + "se_module.fc1.weight" in sd:
        gate = F.conv2d(out.mean((2, 3), keepdim=True), sd[prefix + "se_module.fc1.weight"])
        gate = F.relu(_bn(gate, sd, prefix + "se_module.bn1."))
        gate = F.conv2d(gate, sd[prefix + "se_module.fc2.weight"])
        out = out * torch.sigmoid(_bn(gate, sd, prefix + "se_module.bn2."))
    return x + out


def _reference_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """MiniFASNet in eval mode written from the published layer layout over the raw tensors."""
    x = _conv(x, sd, "conv1.", stride=2)
    x = _conv(x, sd, "conv2_dw.")
    for stage in ("conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5"):
        if f"{stage}.conv.conv.weight" in sd:
            x = _block(x, sd, f"{stage}.", stride=2)
            continue
        index = 0
        while f"{stage}.model.{index}.conv.conv.weight" in sd:
            x = _block(x, sd, f"{stage}.model.{index}.", stride=1)
            index += 1
    x = _conv(x, sd, "conv_6_sep.")
    weight = sd["conv_6_dw.conv.weight"]
    x = _bn(F.conv2d(x, weight, groups=weight.shape[0]), sd, "conv_6_dw.bn.").flatten(1)
    x = _bn(x @ sd["linear.weight"].T, sd, "bn.")
    return x @ sd["prob.weight"].T


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_weights_match_independent_forward(name: str) -> None:
    path = _published(name)
    model = load_liveness_model(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert any(key.startswith("module.") for key in raw)
    state = {key.removeprefix("module."): value.double() for key, value in raw.items()}
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 80, 80, generator=generator, dtype=torch.float64) * 255
    expected = _reference_forward(state, x)
    got = model.network.double()(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert model.size == (80, 80)
    assert model.scale == pytest.approx(2.7 if "V2" in name else 4.0)


def test_published_ensemble_scores_a_probability() -> None:
    checker = LivenessChecker.load([_published(name) for name in PUBLISHED])
    image = np.random.default_rng(0).integers(0, 256, (240, 200, 3), dtype=np.uint8)
    result = checker.check(image, (60.0, 70.0, 140.0, 170.0))
    assert 0.0 <= result.score <= 1.0
    assert result.live == (result.score >= 0.5)
    assert result.crop.shape == (80, 80, 3)


@pytest.mark.parametrize("name", sorted(ANTISPOOF_MODELS.names()))
def test_every_variant_trains_with_the_fourier_branch(name: str) -> None:
    net = FourierNet(build_antispoof_model(name, num_classes=2))
    x = torch.rand(2, 3, 80, 80) * 255
    logits, spectrum = net.train()(x)
    assert logits.shape == (2, 2) and spectrum.shape == (2, 1, 10, 10)
    assert net.eval()(x).shape == (2, 2)


def test_fourier_target_is_scaled_spectrum() -> None:
    target = fourier_target(torch.rand(3, 3, 80, 80), (10, 10))
    assert target.shape == (3, 1, 10, 10)
    assert float(target.min()) >= 0.0 and float(target.max()) <= 1.0


def test_network_input_is_bgr_pixels_in_0_255_nchw() -> None:
    rgb = np.zeros((2, 4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 255
    x = network_input(rgb)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert [x[:, c].unique().item() for c in range(3)] == [255.0, 20.0, 10.0]
    assert torch.equal(network_input(list(rgb)), x)  # a list of crops reads the same


def test_crop_window_follows_published_rule() -> None:
    # box 100x100 at centre (150, 150) in a 300x400 (HxW) image, scale 2.7 -> limited to
    # (300 - 1) / 100 = 2.99 is not binding; width 270 centred -> 15..285, height 15..285
    assert scaled_box((100, 100, 200, 200), 2.7, (300, 400, 3)) == (15, 15, 285, 285)
    # scale 4 is reduced to 2.99 (height) and the window shifted inside the image
    x1, y1, x2, y2 = scaled_box((0, 0, 100, 100), 4.0, (300, 400, 3))
    assert (x1, y1) == (0, 0) and x2 == pytest.approx(299, abs=1) and y2 == 299
    image = np.zeros((300, 400, 3), np.uint8)
    assert liveness_crop(image, (100, 100, 200, 200), 2.7).shape == (80, 80, 3)
