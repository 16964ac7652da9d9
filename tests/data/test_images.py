"""Fitting images of other sizes to the model input, and parallel decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceforge.data.images import RESIZE_MODES, fit_image, load_images
from faceforge.errors import DataError, UnknownChoiceError


def _wide() -> np.ndarray:
    return np.full((50, 100, 3), 200, np.uint8)  # 100 wide, 50 high


def test_letterbox_keeps_aspect_and_pads():
    out = fit_image(_wide(), (112, 112), "letterbox", "w")
    assert out.shape == (112, 112, 3)
    assert (out[:28] == 0).all() and (out[-28:] == 0).all()  # 112 * 50 / 100 = 56 rows of image
    assert (out[28:84] == 200).all()


def test_stretch_and_center_crop():
    image = np.zeros((50, 100, 3), np.uint8)
    image[:, :20] = 255  # left fifth white
    stretched = fit_image(image, (112, 112), "stretch", "w")
    assert stretched.shape == (112, 112, 3) and stretched[:, :18].min() == 255
    cropped = fit_image(image, (112, 112), "center-crop", "w")
    # scaled to 224x112 the white part ends near x=45; the central 112 columns start at x=56
    assert cropped.shape == (112, 112, 3) and cropped.max() == 0


def test_exact_size_passes_and_others_need_a_mode():
    image = np.zeros((112, 112, 3), np.uint8)
    assert fit_image(image, (112, 112), None, "x") is image
    message = r"x: image is 100x50 .* resize mode \(center-crop, letterbox, stretch\)"
    with pytest.raises(DataError, match=message):
        fit_image(_wide(), (112, 112), None, "x")


def test_resize_modes_are_a_registry():
    assert RESIZE_MODES.names() == ["center-crop", "letterbox", "stretch"]
    for name in RESIZE_MODES.names():
        fitted = fit_image(_wide(), (40, 60), name, "w")
        assert fitted.shape == (40, 60, 3) and fitted.dtype == np.uint8
        np.testing.assert_array_equal(fitted, RESIZE_MODES.get(name)(_wide(), 40, 60))
    message = "unknown resize mode 'zoom'; valid choices: center-crop, letterbox, stretch"
    with pytest.raises(UnknownChoiceError, match=message):
        fit_image(_wide(), (112, 112), "zoom", "x")
    with pytest.raises(UnknownChoiceError, match="zoom"):  # even when no resizing is needed
        fit_image(np.zeros((112, 112, 3), np.uint8), (112, 112), "zoom", "x")
    with pytest.raises(UnknownChoiceError, match="zoom"):  # before anything is decoded
        load_images([b"not decoded"], ["a"], resize="zoom")


def test_load_images_in_threads_matches_serial():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (80, 112, 112, 3), np.uint8)
    encoded = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images]
    names = [f"#{i}" for i in range(80)]
    np.testing.assert_array_equal(load_images(encoded, names, workers=2), images)
    np.testing.assert_array_equal(load_images(encoded, names, workers=1), images)
    encoded[70] = b"broken"
    with pytest.raises(DataError, match="#70"):
        load_images(encoded, names, workers=2)
