"""Preprocess: the numpy and torch normalisations agree with the formula."""

from __future__ import annotations

import numpy as np
import torch

from faceforge.core.preprocess import Preprocess


def test_default_maps_uint8_to_minus_one_one() -> None:
    pixels = np.array([[[[0, 127.5, 255]]]]).astype(np.uint8)  # 0, 127, 255
    out = Preprocess().normalize(pixels)
    assert out.shape == (1, 3, 1, 1)
    assert np.allclose(out.ravel(), (np.array([0, 127, 255]) - 127.5) / 127.5)


def test_affine_equals_normalize() -> None:
    pre = Preprocess(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    scale, shift = pre.affine()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() * scale - shift
    assert torch.allclose(x, torch.from_numpy(pre.normalize(images)), atol=1e-5)


def test_dict_round_trip() -> None:
    pre = Preprocess(input_size=(112, 96), color="BGR")
    assert Preprocess.from_dict(pre.to_dict()) == pre
