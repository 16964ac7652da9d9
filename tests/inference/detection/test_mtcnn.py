"""MTCNN with the shipped pretrained weights on real photos: face counts, landmark plausibility,
batching, huge images and the weight-loading failure modes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceforge.data.image_io import read_image
from faceforge.errors import CheckpointError, DataError
from faceforge.inference.detection.base import Detection, Detector, select_face
from faceforge.inference.detection.mtcnn import (
    MTCNN,
    folder_weights,
    packaged_weights,
    pyramid_scales,
)


def assert_plausible(face: Detection) -> None:
    """Eyes above the nose above the mouth, left/right in order, all inside the box."""
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert max(ley, rey) < ny < min(mly, mry)
    assert lex < nx < rex and mlx < mrx and lex < rex
    x1, y1, x2, y2 = face.box
    margin = 0.05 * (x2 - x1)
    inside = (face.landmarks[:, 0] > x1 - margin) & (face.landmarks[:, 0] < x2 + margin)
    inside &= (face.landmarks[:, 1] > y1 - margin) & (face.landmarks[:, 1] < y2 + margin)
    assert inside.all(), (face.box, face.landmarks)


def test_is_a_detector(mtcnn: MTCNN) -> None:
    assert isinstance(mtcnn, Detector)


def test_lfw_photos_have_one_dominant_centred_face(mtcnn: MTCNN, lfw_images: list[Path]) -> None:
    for path in lfw_images:
        faces = mtcnn.detect(read_image(path))
        assert faces, path
        main = faces[0]
        assert main.score > 0.99
        assert np.hypot(main.center[0] - 125, main.center[1] - 125) < 30, (path, main.box)
        assert all(main.area > 4 * other.area for other in faces[1:]), path
        assert_plausible(main)


def test_face_chips_have_exactly_one_face(mtcnn: MTCNN, chip_images: list[Path]) -> None:
    for path in chip_images:
        faces = mtcnn.detect(read_image(path))
        assert len(faces) == 1, (path, [f.box for f in faces])
        assert_plausible(faces[0])
        # a chip is mostly face: the eyes are at least a quarter of the width apart
        assert faces[0].landmarks[1, 0] - faces[0].landmarks[0, 0] > 150 / 4


def test_group_photo_has_several_faces(mtcnn: MTCNN, group_photo: Path) -> None:
    image = read_image(group_photo)
    faces = mtcnn.detect(image)
    confident = [f for f in faces if f.score > 0.9]
    assert len(confident) >= 2
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    main = select_face(faces, image.shape, "largest")
    assert select_face(faces, image.shape, "central") is main
    assert main.area > 1.5 * max(f.area for f in faces if f is not main)
    assert_plausible(main)


def test_batch_equals_single_images(
    mtcnn: MTCNN, lfw_images: list[Path], chip_images: list[Path]
) -> None:
    images = [read_image(p) for p in (lfw_images[0], chip_images[0], lfw_images[1])]
    batched = mtcnn.detect_batch(images)
    for image, found in zip(images, batched, strict=True):
        single = mtcnn.detect(image)
        assert len(single) == len(found)
        for a, b in zip(single, found, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)


def test_a_photo_shrunk_to_anothers_shape_keeps_its_own_pyramid(
    mtcnn: MTCNN, group_photo: Path
) -> None:
    """Images were grouped by their shape after downscaling, and the group took the first
    image's smallest face: a photo's faces depended on what was batched before it (landmarks
    moved by 20 px on a 4352x2903 photo batched after a 1600x1067 one)."""
    photo = read_image(group_photo)
    small = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), cv2.INTER_AREA)
    original, mtcnn.max_image_size = mtcnn.max_image_size, max(small.shape[:2])
    try:  # the photo is shrunk to the small one's shape
        for pair in ([photo, small], [small, photo]):
            for image, found in zip(pair, mtcnn.detect_batch(pair), strict=True):
                single = mtcnn.detect(image)
                assert len(single) == len(found)
                for a, b in zip(single, found, strict=True):
                    np.testing.assert_allclose(a.box, b.box, atol=1e-3)
    finally:
        mtcnn.max_image_size = original


def test_a_face_is_found_alike_whatever_is_beside_it(mtcnn: MTCNN, shared_data: Path) -> None:
    """Sixteen LFW photos of one size share every stage of the cascade: each must get the
    boxes and landmarks it gets alone. Suppressing all images' candidates in one pass (groups
    shifted apart) rounded their coordinates differently with every batch and moved a
    quarter of these faces by up to 3 pixels."""
    paths = sorted((shared_data / "lfw-view1" / "images").glob("A*/*.jpg"))[:16]
    if len(paths) < 16:
        pytest.skip("LFW View 1 photos missing")
    images = [read_image(p) for p in paths]
    for path, image, found in zip(paths, images, mtcnn.detect_batch(images), strict=True):
        single = mtcnn.detect(image)
        assert len(single) == len(found), path.name
        for a, b in zip(single, found, strict=True):  # fp32 noise of batched kernels: ~1e-5 px
            np.testing.assert_allclose(a.box, b.box, atol=1e-3, err_msg=path.name)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3, err_msg=path.name)


def test_huge_image_is_downscaled_and_mapped_back(mtcnn: MTCNN, lfw_images: list[Path]) -> None:
    image = read_image(lfw_images[0])
    reference = mtcnn.detect(image)[0]
    factor = 8.0
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    small_limit = MTCNN.from_weights(max_image_size=640)
    face = small_limit.detect(big)[0]
    # the eyes of the big image's face are where the small image's eyes are, times 8
    np.testing.assert_allclose(face.landmarks / factor, reference.landmarks, atol=4.0)


def test_no_face_and_bad_input(mtcnn: MTCNN) -> None:
    assert mtcnn.detect(np.full((200, 300, 3), 128, np.uint8)) == []
    assert mtcnn.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than any face
    assert mtcnn.detect_batch([]) == []
    with pytest.raises(DataError, match="uint8"):
        mtcnn.detect(np.zeros((100, 100), np.uint8))


def test_pyramid_scales() -> None:
    scales = pyramid_scales(250, 250, 20, 0.709)
    assert scales[0] == pytest.approx(0.6)
    assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 250 * scales[-1] >= 12 > 250 * scales[-1] * 0.709


def test_missing_weights_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="pnet.pt, rnet.pt, onet.pt not found in"):
        folder_weights(tmp_path)


def test_weights_of_another_network_are_one_line_naming_the_keys(tmp_path: Path) -> None:
    """PyTorch's own message ran to 12 lines for an rnet.pt holding P-Net's weights."""
    states = packaged_weights()
    for name, state in (
        ("pnet", states["pnet"]),
        ("rnet", states["pnet"]),
        ("onet", states["onet"]),
    ):
        torch.save(state, tmp_path / f"{name}.pt")
    with pytest.raises(CheckpointError) as error:
        MTCNN.from_weights(tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        f"{tmp_path} (rnet): weights do not fit RNet: "
    )
    assert "wrongly shaped (conv1.weight (10, 3, 3, 3) for conv1.weight (28, 3, 3, 3)" in message


def test_shipped_weights_are_the_published_files() -> None:
    """The .npz in the package holds facenet-pytorch's pnet.pt / rnet.pt / onet.pt exactly
    (checked where facenet-pytorch is installed; the archive needs no unpickling)."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        pytest.skip("facenet-pytorch is not installed: nothing to compare with")
    published = folder_weights(Path(next(iter(spec.submodule_search_locations))) / "data")
    shipped = packaged_weights()
    assert shipped.keys() == published.keys()
    for net, state in published.items():
        assert shipped[net].keys() == state.keys()
        for key, tensor in state.items():
            assert torch.equal(shipped[net][key], tensor), (net, key)


@pytest.mark.parametrize(
    "content, message",
    [({"conv1.weight": torch.zeros(1)}, "do not fit"), ({"conv1": "x"}, "state dict")],
)
def test_bad_weight_files_are_refused(tmp_path: Path, content: dict, message: str) -> None:
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        torch.save(content, tmp_path / name)
    with pytest.raises(CheckpointError, match=message):
        MTCNN.from_weights(tmp_path)


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        torch.save({"conv1.weight": Path("not allowed")}, tmp_path / name)
    with pytest.raises(CheckpointError, match="safely"):
        MTCNN.from_weights(tmp_path)
