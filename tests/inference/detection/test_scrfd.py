"""SCRFD decoding against hand-computed boxes, using a tiny ONNX graph that emits fixed
tensors in SCRFD's output layout (scores x3, boxes x3, keypoints x3 for strides 8/16/32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scrfd_stub import scrfd_outputs, write_graph

from faceforge.errors import CheckpointError
from faceforge.inference.detection.base import Detector
from faceforge.inference.detection.scrfd import SCRFD


@pytest.fixture()
def detector(tmp_path: Path) -> SCRFD:
    path = tmp_path / "det_stub.onnx"
    write_graph(path, scrfd_outputs())
    return SCRFD(path)


def test_decodes_boxes_and_points_in_image_pixels(detector: SCRFD) -> None:
    assert isinstance(detector, Detector)
    image = np.zeros((128, 256, 3), np.uint8)  # letterboxed at scale 0.25 into 64x32 + pad
    faces = detector.detect(image)
    assert len(faces) == 1  # the 0.8 box overlaps the 0.9 one and is suppressed
    face = faces[0]
    assert face.score == pytest.approx(0.9)
    # centre (32, 16), edges 16/8/16/24 pixels away at the input, x4 back to the image
    np.testing.assert_allclose(face.box, np.array([16, 8, 48, 40]) * 4.0)
    expected = np.array([[24, 12], [40, 12], [32, 20], [28, 28], [36, 28]], np.float32) * 4
    np.testing.assert_allclose(face.landmarks, expected)
    assert detector.detect_batch([image, image])[1][0].box == face.box


def test_x_and_y_are_scaled_back_by_their_own_letterbox_scales(detector: SCRFD) -> None:
    """A 100x30 photo fills 64x19 of the 64x64 input: x scales by 64/100, y by 19/30 (the
    19 rows rounded down). Dividing x by the y scale too put faces up to 17 px off."""
    face = detector.detect(np.zeros((30, 100, 3), np.uint8))[0]
    scale = np.array([64 / 100, 19 / 30] * 2)
    np.testing.assert_allclose(face.box, np.array([16, 8, 48, 40]) / scale, rtol=1e-6)
    expected = np.array([[24, 12], [40, 12], [32, 20], [28, 28], [36, 28]]) / scale[:2]
    np.testing.assert_allclose(face.landmarks, expected, rtol=1e-6)


def test_lower_nms_threshold_keeps_both(detector: SCRFD) -> None:
    detector.nms_threshold = 0.99
    faces = detector.detect(np.zeros((64, 64, 3), np.uint8))
    assert [round(f.score, 2) for f in faces] == [0.9, 0.8]
    np.testing.assert_allclose(faces[1].box, [16, 8, 48, 32])


def test_models_without_keypoints_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "det_nokps.onnx"
    write_graph(path, scrfd_outputs()[:6])
    with pytest.raises(CheckpointError, match="keypoints"):
        SCRFD(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        SCRFD(tmp_path / "missing.onnx")


def test_an_input_size_off_the_strides_is_rounded_up(scrfd_model: Path, lfw_images) -> None:
    """At 600x600 the graph's stride-16 map has 38 cells, the anchor grid assumed 37: an
    IndexError at the first photo."""
    from faceforge.data.image_io import read_image

    detector = SCRFD(scrfd_model, input_size=(600, 650))
    assert detector.input_size == (608, 672)
    image = read_image(lfw_images[0])
    expected = SCRFD(scrfd_model, input_size=(608, 672)).detect(image)
    found = detector.detect(image)
    assert found and [f.box for f in found] == [f.box for f in expected]
