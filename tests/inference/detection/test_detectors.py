"""Detectors by name: spec parsing, the errors of bad specs, face selection policies, and the
real SCRFD model against MTCNN on LFW photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scrfd_stub import scrfd_outputs, write_graph

from faceforge.core.onnx_model import onnx_providers
from faceforge.data.image_io import read_image
from faceforge.errors import CheckpointError, ConfigError, UnknownChoiceError
from faceforge.inference.detection import (
    DETECTORS,
    SELECTION_POLICIES,
    Detection,
    build_detector,
    parse_detector_spec,
    select_face,
)
from faceforge.inference.detection.mtcnn import MTCNN
from faceforge.inference.detection.scrfd import SCRFD


@pytest.fixture()
def stub_model(tmp_path: Path) -> Path:
    path = tmp_path / "det_stub.onnx"
    write_graph(path, scrfd_outputs())
    return path


def test_registered_detectors() -> None:
    assert DETECTORS.names() == ["mtcnn", "scrfd"]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("mtcnn", ("mtcnn", None)),
        ("mtcnn:", ("mtcnn", None)),
        ("mtcnn:/opt/weights", ("mtcnn", "/opt/weights")),
        ("scrfd:models/det_10g.onnx", ("scrfd", "models/det_10g.onnx")),
        ("scrfd:C:/models/a:b.onnx", ("scrfd", "C:/models/a:b.onnx")),  # first colon only
    ],
)
def test_spec_parsing(spec: str, parsed: tuple[str, str | None]) -> None:
    assert parse_detector_spec(spec) == parsed


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("retinaface", ""),
        ("", ""),
        (":mtcnn", ""),
        ("MTCNN", " (did you mean mtcnn?)"),
        ("mtcnn_v2:dir", " (did you mean mtcnn?)"),
    ],
)
def test_unknown_detector_lists_the_choices(spec: str, hint: str) -> None:
    name = spec.partition(":")[0]
    message = f"unknown detector --detector='{name}'{hint}; valid choices: mtcnn, scrfd"
    with pytest.raises(UnknownChoiceError) as info:
        build_detector(spec)
    assert str(info.value) == message


@pytest.mark.parametrize("spec", ["scrfd", "scrfd:"])
def test_scrfd_without_a_model_says_how_to_write_it(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"write scrfd:PATH\.onnx"):
        build_detector(spec)


def test_scrfd_spec_builds_the_model_it_names(stub_model: Path, tmp_path: Path) -> None:
    detector = build_detector(f"scrfd:{stub_model}", device="cpu", min_face_size=0)
    assert isinstance(detector, SCRFD)
    assert detector.session.get_providers() == ["CPUExecutionProvider"]
    # the stub's face is a 128x128 box in a 128x256 image (see test_scrfd.py)
    image = np.zeros((128, 256, 3), np.uint8)
    assert len(detector.detect(image)) == 1
    strict = build_detector(f"scrfd:{stub_model}", device="cpu", min_face_size=129)
    assert strict.detect(image) == []
    with pytest.raises(CheckpointError, match="does not exist"):
        build_detector(f"scrfd:{tmp_path / 'missing.onnx'}", device="cpu")


def test_onnx_providers_follow_the_device() -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_mtcnn_specs(mtcnn, mtcnn_folder: Path, tmp_path: Path) -> None:
    default = build_detector("mtcnn", device="cpu", min_face_size=40)
    assert isinstance(default, MTCNN) and default.min_face_size == 40
    named = build_detector(f"mtcnn:{mtcnn_folder}", device="cpu")
    weights = default.onet.dense6_3.weight
    assert named.min_face_size == 20 and named.onet.dense6_3.weight.equal(weights)
    with pytest.raises(CheckpointError, match="not found in"):
        build_detector(f"mtcnn:{tmp_path}", device="cpu")


def _face(box: tuple[float, float, float, float], score: float) -> Detection:
    return Detection(box, score, np.zeros((5, 2), np.float32))


def test_selection_policies() -> None:
    small_sure = _face((0, 0, 20, 20), 0.99)
    big = _face((100, 0, 180, 80), 0.90)
    central = _face((90, 90, 110, 110), 0.80)
    faces = [small_sure, big, central]
    assert SELECTION_POLICIES.names() == ["best", "central", "largest"]
    shape = (200, 200, 3)
    assert select_face(faces, shape, "best") is small_sure
    assert select_face(faces, shape, "largest") is big
    assert select_face(faces, shape, "central") is central
    assert all(select_face([], shape, name) is None for name in SELECTION_POLICIES.names())
    with pytest.raises(UnknownChoiceError, match="valid choices: best, central, largest"):
        select_face(faces, shape, "biggest")


def test_scrfd_landmarks_agree_with_mtcnn(scrfd_model: Path, mtcnn, lfw_images: list[Path]) -> None:
    """Two independently trained detectors put the five points within a few pixels of each
    other (the eyes are about 44 pixels apart in these 250x250 photos)."""
    scrfd = build_detector(f"scrfd:{scrfd_model}", device="cpu")
    for path in lfw_images:
        image = read_image(path)
        (found,) = scrfd.detect(image)
        reference = mtcnn.detect(image)[0]
        distances = np.linalg.norm(found.landmarks - reference.landmarks, axis=1)
        assert distances.max() < 6 and distances.mean() < 3, (path, distances)
        assert found.landmarks[2, 1] > found.landmarks[:2, 1].max()  # nose below the eyes
