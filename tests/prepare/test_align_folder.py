"""Aligning a folder dataset: outputs, policies for zero/several faces, report, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceforge.data.image_io import encode_image, read_image
from faceforge.errors import DataError
from faceforge.prepare.align_folder import REPORT_FILE, AlignOptions, align_dataset


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
    skipped = read_report(dst)
    assert set(skipped) == {"person_b/blank.png", "person_b/corrupt.jpg"}
    assert skipped["person_b/blank.png"] == "no face found"
    assert "not a readable image" in skipped["person_b/corrupt.jpg"]
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.*"))
    assert outputs == [
        REPORT_FILE,
        *(f"person_a/{p.name}" for p in sorted((dataset / "person_a").iterdir())),
        "person_b/group.jpg",
    ]
    for path in dst.rglob("*.jpg"):
        assert read_image(path).shape == (112, 112, 3)

    again = align_dataset(dataset, dst, progress=False)  # resumes: nothing left to align
    assert (again.aligned, again.existing, len(again.skipped)) == (0, 3, 2)


def test_skip_ambiguous_and_fallback_for_no_face(dataset: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    options = AlignOptions(size=(112, 96), multiple="skip", no_face="center-crop")
    report = align_dataset(dataset, dst, options, progress=False)
    assert (report.aligned, report.fallback) == (3, 1)
    skipped = read_report(dst)
    assert skipped["person_b/group.jpg"].endswith("faces found")
    assert read_image(dst / "person_b" / "blank.png").shape == (112, 96, 3)


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
    with pytest.raises(DataError, match="--multiple"):
        AlignOptions(multiple="random")
    with pytest.raises(DataError, match="no arcface template"):
        AlignOptions(size=(100, 100))
