"""Preprocess: the one normalisation agrees with the formula in any layout and colour order,
and a contract that cannot work is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError


def test_default_maps_uint8_to_minus_one_one() -> None:
    pixels = np.array([[[[0, 127.5, 255]]]]).astype(np.uint8)  # 0, 127, 255
    out = Preprocess().normalize(pixels)
    assert out.shape == (1, 3, 1, 1)
    # float32 multiply-add: a few units in the last place of values near 1
    np.testing.assert_allclose(out.ravel(), (np.array([0, 127, 255]) - 127.5) / 127.5, atol=1e-6)


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_apply_is_the_formula_in_the_model_colour_order(color: str) -> None:
    pre = Preprocess(color=color, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    ordered = images[..., ::-1] if color == "BGR" else images
    expected = (ordered / 255.0 - np.array(pre.mean)) / np.array(pre.std)
    expected = expected.transpose(0, 3, 1, 2)
    # an NHWC buffer viewed as NCHW (the embedder's channels-last input) and a contiguous one
    channels_last = pre.apply(torch.from_numpy(images).permute(0, 3, 1, 2))
    contiguous = pre.apply(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    for out in (channels_last, contiguous):
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pre.normalize(images), contiguous.numpy())


def test_dict_round_trip() -> None:
    pre = Preprocess(input_size=(112, 96), color="BGR")
    assert Preprocess.from_dict(pre.to_dict()) == pre


@pytest.mark.parametrize(
    "preprocess, message",
    [
        (Preprocess(color="YUV"), "unknown colour order 'YUV'"),
        (Preprocess(std=(0.5, 0.0, 0.5)), "preprocessing std must be positive"),
        (Preprocess(std=(0.5, float("nan"), 0.5)), "preprocessing mean and std must be finite"),
        (Preprocess(mean=(float("inf"), 0.5, 0.5)), "preprocessing mean and std must be finite"),
        (Preprocess(input_size=(100, 100)), "no arcface template for a 100x100 crop"),
        (Preprocess(template="dlib"), "unknown alignment template 'dlib'"),
    ],
)
def test_an_unusable_contract_is_refused(preprocess: Preprocess, message: str) -> None:
    with pytest.raises(CheckpointError, match=f"^model.pt: {message}"):
        preprocess.check("model.pt")
    Preprocess(input_size=(112, 96)).check("model.pt")  # SphereFace crops are fine


def test_only_uint8_pixels_are_taken_and_the_callers_memory_is_left_alone() -> None:
    """A float32 tensor was normalised in place, in the caller's memory."""
    from faceforge.errors import DataError

    pixels = torch.ones(1, 3, 2, 2)
    with pytest.raises(DataError, match="face pixels must be uint8 \\(0-255\\), got torch.float32"):
        Preprocess().apply(pixels)
    assert torch.equal(pixels, torch.ones(1, 3, 2, 2))
