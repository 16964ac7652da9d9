"""Aligning a folder dataset: outputs, policies for zero/several faces, report, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceforge.data.image_io import encode_image, read_image
from faceforge.errors import CheckpointError, ConfigError, DataError, UnknownChoiceError
from faceforge.prepare.align_folder import (
    MULTIPLE_FACE_POLICIES,
    NO_FACE_POLICIES,
    REPORT_FILE,
    AlignOptions,
    align_dataset,
)
from faceforge.prepare.align_settings import SETTINGS_FILE


@pytest.fixture()
def dataset(tmp_path: Path, lfw_images: list[Path], group_photo: Path, mtcnn) -> Path:
    """person_a: 2 LFW photos; person_b: the group photo, a blank image, a corrupt file."""
    src = tmp_path / "src"
    (src / "person_a").mkdir(parents=True)
    (src / "person_b").mkdir()
    for path in lfw_images[:2]:
        shutil.copy(path, src / "person_a")
    shutil.copy(group_photo, src / "person_b" / "group.jpg")
    blank = np.full((200, 160, 3), 200, np.uint8)
    (src / "person_b" / "blank.png").write_bytes(encode_image(blank, ".png"))
    (src / "person_b" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "person_b" / "notes.txt").write_text("not an image")
    return src


def read_report(dst: Path) -> dict[str, str]:
    lines = (dst / REPORT_FILE).read_text().splitlines()
    assert lines[0] == "path\treason"
    return dict(line.split("\t") for line in lines[1:])


def test_default_policies(dataset: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    report = align_dataset(dataset, dst, progress=False)
    assert (report.aligned, report.chose_among_several, report.fallback) == (3, 1, 0)
    assert len(report.qualities) == 3 and all(0 <= q <= 1 for q in report.qualities)
    assert "face quality median" in report.summary()  # every crop is new
    skipped = read_report(dst)
    assert set(skipped) == {"person_b/blank.png", "person_b/corrupt.jpg"}
    assert skipped["person_b/blank.png"] == "no face found"
    assert "not a readable image" in skipped["person_b/corrupt.jpg"]
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.*"))
    assert outputs == [
        REPORT_FILE,
        SETTINGS_FILE,
        *(f"person_a/{p.name}" for p in sorted((dataset / "person_a").iterdir())),
        "person_b/group.jpg",
    ]
    for path in dst.rglob("*.jpg"):
        assert read_image(path).shape == (112, 112, 3)

    again = align_dataset(dataset, dst, progress=False)  # resumes: nothing left to align
    assert (again.aligned, again.existing, len(again.skipped)) == (0, 3, 2)
    (dst / "person_b" / "group.jpg").unlink()
    partial = align_dataset(dataset, dst, progress=False)
    assert (partial.aligned, partial.existing, len(partial.qualities)) == (1, 2, 1)
    assert "face quality (new crops only) median" in partial.summary()


def test_skip_ambiguous_and_fallback_for_no_face(dataset: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    options = AlignOptions(size=(112, 96), multiple="skip", no_face="center-crop")
    report = align_dataset(dataset, dst, options, progress=False)
    assert (report.aligned, report.fallback) == (3, 1)
    skipped = read_report(dst)
    assert skipped["person_b/group.jpg"].endswith("faces found")
    assert read_image(dst / "person_b" / "blank.png").shape == (112, 96, 3)


def test_a_resume_with_other_options_is_refused_and_overwrite_redoes_every_crop(
    dataset: Path, tmp_path: Path
) -> None:
    """A resume used to keep 112x112 crops beside new 160x160 ones without a word; an
    overwrite that now skips an image left its old crop behind."""
    dst = tmp_path / "dst"
    align_dataset(dataset, dst, AlignOptions(no_face="stretch"), progress=False)
    assert read_image(dst / "person_b" / "blank.png").shape == (112, 112, 3)
    other = AlignOptions(size=(160, 160), template="facenet")
    differ = (
        r"dst: its crops were made with size 112x112 \(asked now: 160x160\), template "
        r"'arcface' \(asked now: 'facenet'\), no_face 'stretch' \(asked now: 'skip'\); align "
        "with the same options, into another folder, or pass --overwrite"
    )
    with pytest.raises(DataError, match=differ):
        align_dataset(dataset, dst, other, progress=False)
    report = align_dataset(dataset, dst, other, overwrite=True, progress=False)
    assert (report.aligned, report.existing) == (3, 0)
    assert not (dst / "person_b" / "blank.png").exists()  # skipped now: its old crop is gone
    assert {read_image(p).shape for p in dst.rglob("*.jpg")} == {(160, 160, 3)}
    (dst / SETTINGS_FILE).unlink()  # as a folder aligned by faceforge 0.3
    with pytest.raises(DataError, match=r"its crops were made with size 160x160; align"):
        align_dataset(dataset, dst, progress=False)
    assert align_dataset(dataset, dst, other, progress=False).existing == 3


def test_two_sources_of_one_output_and_an_output_inside_the_source(tmp_path: Path) -> None:
    """a.tif and a.png both crop to a.png: the second is reported, not written over the
    first. An output folder inside the source is not aligned again on the next run."""
    src = tmp_path / "src"
    (src / "p").mkdir(parents=True)
    gray = np.full((120, 120, 3), 90, np.uint8)
    for name in ("a.png", "a.tif"):
        (src / "p" / name).write_bytes(encode_image(gray, Path(name).suffix))
    options = AlignOptions(no_face="center-crop")
    for _ in range(2):  # the second run finds the first's crops under src/aligned
        report = align_dataset(src, src / "aligned", options, progress=False)
    assert (report.existing, report.fallback) == (1, 0)
    assert read_report(src / "aligned") == {
        "p/a.tif": "its crop would replace p/a.png's: rename one"
    }
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png")) == [
        "aligned/p/a.png",
        "p/a.png",
    ]


def test_worker_processes_give_the_same_crops(dataset: Path, tmp_path: Path) -> None:
    single, multi = tmp_path / "single", tmp_path / "multi"
    align_dataset(dataset / "person_a", single, progress=False)
    report = align_dataset(dataset / "person_a", multi, workers=2, progress=False)
    assert report.aligned == 2
    for path in single.rglob("*.jpg"):
        np.testing.assert_array_equal(read_image(path), read_image(multi / path.name))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        align_dataset(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        align_dataset(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="must differ"):
        align_dataset(tmp_path / "empty", tmp_path / "empty", progress=False)
    with pytest.raises(DataError, match="no arcface template"):
        AlignOptions(size=(100, 100))
    for size in ((0, 0), (112, 0), (-112, 112)):
        with pytest.raises(ConfigError, match="size must be positive"):
            AlignOptions(size=size)


def test_an_unwritable_output_fails_before_any_work(tmp_path: Path) -> None:
    """The detector named here does not exist: reaching it would be a CheckpointError."""
    (tmp_path / "src" / "p").mkdir(parents=True)
    (tmp_path / "src" / "p" / "a.png").write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8)))
    (tmp_path / "file").write_text("")
    options = AlignOptions(detector=f"scrfd:{tmp_path / 'missing.onnx'}")
    with pytest.raises(DataError, match="the output folder is a file"):
        align_dataset(tmp_path / "src", tmp_path / "file", options, progress=False)
    with pytest.raises(DataError, match="cannot write to the output folder .Not a directory"):
        align_dataset(tmp_path / "src", tmp_path / "file" / "dst", options, progress=False)


def test_policies_and_detectors_are_registered_names() -> None:
    assert MULTIPLE_FACE_POLICIES.names() == ["best", "central", "largest", "skip"]
    assert NO_FACE_POLICIES.names() == ["center-crop", "letterbox", "skip", "stretch"]
    expected = {
        "multiple": "unknown multiple-face policy --selection='random'; valid choices: "
        "best, central, largest, skip",
        "no_face": "unknown no-face policy --fallback='random'; valid choices: "
        "center-crop, letterbox, skip, stretch",
        "detector": "unknown detector --detector='random'; valid choices: mtcnn, scrfd",
    }
    for field, message in expected.items():
        with pytest.raises(UnknownChoiceError) as info:
            AlignOptions(**{field: "random"})
        assert str(info.value) == message
    assert AlignOptions(detector="scrfd:det.onnx").detector == "scrfd:det.onnx"  # built later


@pytest.mark.parametrize("workers", [1, 2])
def test_a_detector_that_cannot_be_built_fails_the_run(tmp_path: Path, workers: int) -> None:
    """Worker processes report the error instead of being restarted forever."""
    (tmp_path / "src" / "p").mkdir(parents=True)
    image = encode_image(np.zeros((64, 64, 3), np.uint8), ".png")
    for name in ("a.png", "b.png"):
        (tmp_path / "src" / "p" / name).write_bytes(image)
    options = AlignOptions(detector=f"scrfd:{tmp_path / 'missing.onnx'}")
    with pytest.raises(CheckpointError, match="missing.onnx' does not exist"):
        align_dataset(tmp_path / "src", tmp_path / "dst", options, workers=workers, progress=False)
