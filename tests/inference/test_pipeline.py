"""FacePipeline on real photos: detection + alignment end to end, odd inputs, decisions."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.core.embedder import load_embedder
from faceforge.data.alignment import ARCFACE_TEMPLATE, estimate_norm
from faceforge.data.image_io import read_image
from faceforge.errors import CheckpointError, ConfigError, DataError, UnknownChoiceError
from faceforge.inference.answers import UNKNOWN
from faceforge.inference.detection.mtcnn import MTCNN
from faceforge.inference.detection.scrfd import SCRFD
from faceforge.inference.matching.gallery import Gallery
from faceforge.inference.pipeline import FacePipeline


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint: Path, mtcnn) -> FacePipeline:
    return FacePipeline(load_embedder(tiny_checkpoint, device="cpu"), mtcnn)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment holding only the orientation tag (TIFF 6.0 / EXIF 2.3)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    return jpeg[:2] + app1 + jpeg[2:]


def test_aligned_crop_has_its_landmarks_where_the_transform_sends_them(
    pipeline: FacePipeline, mtcnn, lfw_images: list[Path]
) -> None:
    for path in lfw_images[:2]:
        crop = pipeline.align(path)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        landmarks = pipeline.detect(path)[0].landmarks
        matrix = estimate_norm(landmarks)
        sent = landmarks @ matrix[:, :2].T + matrix[:, 2]
        assert np.abs(sent - ARCFACE_TEMPLATE).max() < 8  # a similarity fits a face roughly
        # detecting again inside the aligned crop finds the landmarks where they were sent
        again = mtcnn.detect(crop)
        assert again, path
        assert np.abs(again[0].landmarks - sent).max() < 2.5, (path, again[0].landmarks, sent)


def test_exif_rotated_photo_is_upright(
    pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path
) -> None:
    upright = read_image(lfw_images[0])
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # the camera stored it sideways
    _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(stored, cv2.COLOR_RGB2BGR))
    path = tmp_path / "sideways.jpg"
    path.write_bytes(with_exif_orientation(jpeg.tobytes(), 6))  # 6: rotate 90 CW to view
    decoded = read_image(path)
    assert decoded.shape == upright.shape
    assert np.abs(decoded.astype(int) - upright).mean() < 3  # only JPEG loss
    face = pipeline.detect(path)[0]
    assert face.landmarks[2, 1] > face.landmarks[:2, 1].max()  # nose below the eyes


def test_grayscale_rgba_and_16_bit_inputs(
    pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path
) -> None:
    image = read_image(lfw_images[0])
    reference = pipeline.detect(image)[0].landmarks
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    assert pipeline.align(gray).shape == (112, 112, 3)
    bgra = cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)
    bgra[:20, :, 3] = 0  # a transparent band: alpha is dropped, not composited
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    deep = cv2.cvtColor(image, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    for name in ("rgba.png", "deep.png"):
        landmarks = pipeline.detect(tmp_path / name)[0].landmarks
        np.testing.assert_allclose(landmarks, reference, atol=0.5)
    rgba_array = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(pipeline.align(rgba_array), pipeline.align(image))
    with pytest.raises(DataError, match="uint8"):
        pipeline.align(image.astype(np.float32))


def test_same_photo_verifies_and_decisions_use_the_stored_threshold(
    pipeline: FacePipeline, lfw_images: list[Path]
) -> None:
    result = pipeline.verify(lfw_images[0], lfw_images[0])
    assert result.similarity == pytest.approx(1.0, abs=1e-5) and result.same
    assert result.threshold.cosine == 0.5  # squared distance 1.0 -> cosine 1 - 1/2
    results = pipeline.verify_pairs(
        [(lfw_images[0], lfw_images[1]), (lfw_images[1], lfw_images[2])]
    )
    embeddings = pipeline.embed(lfw_images[:3])
    assert results[0].similarity == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-5)
    assert results[1].similarity == pytest.approx(float(embeddings[1] @ embeddings[2]), abs=1e-5)
    assert [r.same for r in results] == [r.similarity > 0.5 for r in results]


def test_no_face_and_broken_files(
    tiny_checkpoint: Path, mtcnn, pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path
) -> None:
    blank = np.full((120, 100, 3), 90, np.uint8)
    with pytest.raises(DataError, match="no face found"):
        pipeline.embed([blank])
    lenient = FacePipeline(pipeline.embedder, mtcnn, fallback="center-crop")
    assert lenient.align(blank).shape == (112, 112, 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    embeddings, errors = pipeline.try_embed([lfw_images[0], broken, blank])
    assert errors[0] is None and "broken.jpg" in errors[1] and "no face" in errors[2]
    assert np.isfinite(embeddings[0]).all() and np.isnan(embeddings[1:]).all()
    np.testing.assert_allclose(embeddings[0], pipeline.embed([lfw_images[0]])[0], atol=1e-6)


def test_pre_cropped_faces_without_detector(pipeline: FacePipeline) -> None:
    chips = FacePipeline(pipeline.embedder, None)
    with pytest.raises(DataError, match="resize mode"):
        chips.align(np.zeros((150, 150, 3), np.uint8))
    assert chips.align(np.zeros((112, 112, 3), np.uint8)).shape == (112, 112, 3)
    with pytest.raises(DataError, match="no face detector"):
        chips.detect(np.zeros((112, 112, 3), np.uint8))


def test_enroll_and_search(pipeline: FacePipeline, lfw_images: list[Path]) -> None:
    embedder = pipeline.embedder
    gallery = Gallery(embedder.embedding_size, embedder.fingerprint, mode="all")
    pipeline.enroll(gallery, "first", lfw_images[:1])
    pipeline.enroll(gallery, "second", lfw_images[1:2])
    found = pipeline.search(lfw_images[1], gallery, top_k=2)
    assert found.identity == "second" and [m.name for m in found.matches] == ["second", "first"]
    strict = FacePipeline(embedder, pipeline.detector, threshold=0.999)
    assert strict.search(lfw_images[2], gallery).identity == UNKNOWN
    other = Gallery(embedder.embedding_size, "another-model")
    with pytest.raises(CheckpointError, match="fingerprint"):
        pipeline.search(lfw_images[0], other)


def test_search_images_answers_each_photo_or_says_why_not(
    pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path
) -> None:
    embedder = pipeline.embedder
    gallery = Gallery(embedder.embedding_size, embedder.fingerprint)
    pipeline.enroll(gallery, "first", lfw_images[:1])
    pipeline.enroll(gallery, "second", lfw_images[1:2])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    photos = [lfw_images[1], broken, lfw_images[0]]
    with pytest.raises(DataError, match="broken.jpg"):
        pipeline.search_images(photos, gallery)
    found = pipeline.search_images(photos, gallery, top_k=1, report_errors=True)
    assert [f.identity for f in found] == ["second", UNKNOWN, "first"]
    assert found[0].error is None and found[2].error is None
    assert "broken.jpg" in found[1].error and found[1].matches == []
    alone = pipeline.search(lfw_images[0], gallery, top_k=1)  # the same answer one at a time
    assert alone.identity == "first"  # score to bf16 rounding (auto's precision on some CPUs):
    assert alone.matches[0].score == pytest.approx(found[2].matches[0].score, abs=1e-2)


def test_load_builds_the_detector_its_spec_names(
    tiny_checkpoint: Path, scrfd_model: Path, lfw_images: list[Path]
) -> None:
    scrfd = FacePipeline.load(tiny_checkpoint, detector=f"scrfd:{scrfd_model}", device="cpu")
    assert isinstance(scrfd.detector, SCRFD)
    assert scrfd.verify(lfw_images[0], lfw_images[0]).similarity == pytest.approx(1.0, abs=1e-5)
    assert isinstance(FacePipeline.load(tiny_checkpoint, device="cpu").detector, MTCNN)
    crops = FacePipeline.load(tiny_checkpoint, detector=None, device="cpu")
    assert crops.detector is None
    # flip as the stored thresholds were calibrated (eval.flip), unless asked otherwise
    assert crops.embedder.flip is crops.embedder.config.eval.flip is True
    no_flip = FacePipeline.load(tiny_checkpoint, detector=None, device="cpu", flip=False)
    assert no_flip.embedder.flip is False
    with pytest.raises(UnknownChoiceError, match="valid choices: mtcnn, scrfd"):
        FacePipeline.load(tiny_checkpoint, detector="dlib", device="cpu")
    with pytest.raises(ConfigError, match="scrfd:PATH.onnx"):
        FacePipeline.load(tiny_checkpoint, detector="scrfd", device="cpu")


def test_unknown_policies_list_the_choices(pipeline: FacePipeline) -> None:
    with pytest.raises(UnknownChoiceError, match="selection='biggest'; valid choices: best,"):
        FacePipeline(pipeline.embedder, selection="biggest")
    with pytest.raises(UnknownChoiceError, match="fallback='pad'; valid choices: center-crop,"):
        FacePipeline(pipeline.embedder, fallback="pad")


def test_verify_pairs_reports_failures_when_asked(
    pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    pairs = [(lfw_images[0], lfw_images[1]), (broken, lfw_images[0]), (lfw_images[1], broken)]
    with pytest.raises(DataError, match="broken.jpg"):
        pipeline.verify_pairs(pairs)
    good, *failed = pipeline.verify_pairs(pairs, report_errors=True)
    expected = pipeline.verify(lfw_images[0], lfw_images[1])
    assert good.error is None and good.similarity == pytest.approx(expected.similarity, abs=1e-6)
    assert good.same == expected.same
    for result in failed:
        assert "broken.jpg: not a readable image" in result.error
        assert np.isnan(result.similarity) and not result.same


def test_try_embed_reports_progress_chunk_by_chunk(pipeline: FacePipeline) -> None:
    from faceforge.inference.export import synthetic_faces
    from faceforge.inference.pipeline import CHUNK

    faces = list(synthetic_faces(CHUNK + 6))
    faces[CHUNK + 1] = np.zeros((50, 50, 3), np.uint8)  # wrong size: fails alone
    chips = FacePipeline(pipeline.embedder, None)
    done: list[int] = []
    embeddings, errors = chips.try_embed(faces, done.append)
    assert done == [CHUNK, 6]
    assert [i for i, e in enumerate(errors) if e] == [CHUNK + 1] and "50x50" in errors[CHUNK + 1]
    assert np.isnan(embeddings[CHUNK + 1]).all()
    good = [i for i in range(len(faces)) if i != CHUNK + 1]
    whole = pipeline.embedder.embed(np.stack([faces[i] for i in good]))
    np.testing.assert_allclose(embeddings[good], whole, atol=1e-5)


def test_enroll_people_skips_bad_photos_and_empty_people(
    pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    embedder = pipeline.embedder
    gallery = Gallery(embedder.embedding_size, embedder.fingerprint, mode="all")
    people = [("cook", [lfw_images[0], broken]), ("ghost", [broken]), ("guiel", lfw_images[1:2])]
    done: list[int] = []
    report = pipeline.enroll_people(gallery, people, done.append)
    assert (report.added, report.left_out, gallery.names) == (2, ["ghost"], ["cook", "guiel"])
    assert len(report.skipped) == 2 and all("broken.jpg" in s for s in report.skipped)
    assert sum(done) == 4 and gallery.num_images("cook") == 1
    assert gallery.search(pipeline.embed(lfw_images[:1]), top_k=1)[0][0].score > 0.9999
    with pytest.raises(CheckpointError, match="fingerprint"):
        pipeline.enroll_people(Gallery(embedder.embedding_size, "other"), people)
