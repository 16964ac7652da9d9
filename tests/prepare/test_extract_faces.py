"""``faceforge extract-faces``: the turn search, grouping and deduplication with a stand-in
detector, consistency after a truncated video, and the acceptance test on real faces: a video
whose frames are turned by 90 and 180 degrees, grouped per person."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_helpers import numbered_frames, write_video

from faceforge.cli import main
from faceforge.data.face_template import template_points
from faceforge.inference.detection.base import Detection
from faceforge.prepare.extract_faces import (
    MANIFEST,
    ExtractOptions,
    TurnSearch,
    extract_faces,
    is_upright,
)
from faceforge.prepare.video_frames import turn

EVERY_FRAME = ExtractOptions(every_frames=1, every_seconds=None)


class MarkerDetector:
    """Finds one face, its landmarks the template's in the middle of the image, when the
    white block of :func:`numbered_frames` is in the top-left corner (the image is upright);
    on a turned image it reports a confident face with landmarks turned too."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        points = template_points() * (min(height, width) / 112)
        box = (
            float(points[:, 0].min() - 5),
            float(points[:, 1].min() - 10),
            float(points[:, 0].max() + 5),
            float(points[:, 1].max() + 10),
        )
        if image[: height // 6, : width // 6].mean() > 200:
            return [Detection(box, 0.999, points.astype(np.float32))]
        return [Detection(box, 0.995, points[::-1].astype(np.float32))]  # scrambled

    def detect_batch(self, images):
        return [self.detect(image) for image in images]


def test_upright_landmarks() -> None:
    points = template_points()
    assert is_upright(points)
    for degrees in (90, 180, 270):  # the same face turned: its landmarks turn with it
        angle = np.radians(degrees)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        assert not is_upright((points - 56) @ rotation.T + 56)
    assert not is_upright(points[[1, 0, 2, 4, 3]])  # eyes swapped: a mirror, not a face


def test_turn_search_finds_and_remembers_the_turn() -> None:
    upright = numbered_frames(1, 96, 96)[0]
    search = TurnSearch(MarkerDetector(), min_score=0.9, search_below=0.99)
    for degrees in (90, 90, 180, 0):  # the frame as stored: turned clockwise by degrees
        found, image, faces = search.find(turn(upright, degrees))
        assert (found + degrees) % 360 == 0 and len(faces) == 1
        np.testing.assert_array_equal(image, upright)
        assert search.turn == found
    assert search.find(np.zeros((96, 96, 3), np.uint8))[2] == []  # no face at any turn
    assert search.turn == 0  # the last turn that found one


def read_manifest(out: Path) -> list[dict[str, str]]:
    with (out / MANIFEST).open() as f:
        return list(csv.DictReader(f))


def test_faces_are_grouped_deduplicated_and_written_with_a_manifest(tmp_path: Path) -> None:
    frames = numbered_frames(6, 96, 96)
    frames[3] = frames[2]  # a repeated frame: its face is a near-duplicate
    stored = [turn(f, d) for f, d in zip(frames, (0, 90, 90, 90, 180, 0), strict=True)]
    video = write_video(tmp_path / "clip.avi", stored)
    (report,) = extract_faces([video], tmp_path / "out", MarkerDetector(), EVERY_FRAME)
    assert (report.frames, report.faces, report.kept, report.duplicates) == (6, 6, 5, 1)
    assert report.people == 1 and report.turns == {0: 2, 180: 1, 270: 3}
    rows = read_manifest(tmp_path / "out")
    assert [r["turn"] for r in rows] == ["0", "270", "270", "270", "180", "0"]
    assert [r["status"] for r in rows].count("duplicate") == 1 and rows[3]["file"] == ""
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.jpg")
    )
    assert written == sorted(r["file"] for r in rows if r["file"])
    assert written[0] == "clip/person_001/clip_f000000_0.jpg"
    assert cv2.imread(str(tmp_path / "out" / written[0])).shape == (112, 112, 3)


def test_a_truncated_video_keeps_what_came_before_it(tmp_path: Path, capsys) -> None:
    good = write_video(tmp_path / "good.avi", numbered_frames(3, 96, 96))
    full = write_video(tmp_path / "full.avi", numbered_frames(30, 96, 96))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    out = tmp_path / "out"
    reports = extract_faces([good, cut], out, MarkerDetector(), EVERY_FRAME)
    assert reports[0].error is None and "ends at frame" in reports[1].error
    assert 0 < reports[1].kept < 30
    rows = read_manifest(out)
    assert {r["video"] for r in rows} == {"good", "cut"}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert on_disk == {r["file"] for r in rows if r["file"]}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folders
    again = extract_faces([good], out, MarkerDetector(), EVERY_FRAME, overwrite=True)
    assert again[0].kept == 3 and {r["video"] for r in read_manifest(out)} == {"good", "cut"}
    argv = [str(good), str(cut), str(tmp_path / "cli"), "--every-frames", "1", "--no-progress"]
    assert main(["extract-faces", *argv, "--device", "cpu"]) == 1  # partly failed, as enroll
    assert "ends at frame" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_people_video(tmp_path_factory, shared_data: Path) -> Path:
    """Two LFW people side by side, a new photo of each in most frames; frame 2 is stored
    turned by 90 degrees, frame 3 by 180 (as a phone's sideways or upside-down frames)."""
    root = shared_data / "lfw-view1" / "images"
    people = [sorted((root / name).glob("*.jpg"))[:3] for name in ("Abdullah_Gul", "Aaron_Peirsol")]
    if any(len(photos) < 3 for photos in people):
        pytest.skip("the LFW photos of the test are missing")
    side = 112
    frames = []
    for photo, degrees in zip((0, 0, 1, 2, 1), (0, 0, 90, 180, 0), strict=True):
        canvas = np.full((2 * side, 2 * side, 3), 90, np.uint8)
        for k, photos in enumerate(people):
            face = cv2.imread(str(photos[photo]))[:, :, ::-1]
            canvas[side // 2 : side // 2 + side, k * side : (k + 1) * side] = cv2.resize(
                face, (side, side), interpolation=cv2.INTER_AREA
            )
        frames.append(turn(canvas, degrees))
    return write_video(tmp_path_factory.mktemp("video") / "two.avi", frames, fps=5)


def test_turned_frames_find_their_faces_grouped_per_person(
    two_people_video, mtcnn, tmp_path
) -> None:
    """The acceptance test: faces in frames turned by 90 and 180 degrees are found, and the
    faces of each person across the frames end in one folder."""
    out, summary = tmp_path / "faces", tmp_path / "s.json"
    argv = ["extract-faces", str(two_people_video), str(out), "--every-frames", "1"]
    assert main([*argv, "--json", str(summary), "--no-progress", "--device", "cpu"]) == 0
    rows = read_manifest(out)
    assert [r["turn"] for r in rows[::2]] == ["0", "0", "270", "180", "0"]
    assert [r["frame"] for r in rows] == [str(k) for k in range(5) for _ in range(2)]
    side_of = {}  # person -> which half of the upright frame its face is in
    for row in rows:
        side = "left" if (float(row["x1"]) + float(row["x2"])) / 2 < 112 else "right"
        assert side_of.setdefault(row["person"], side) == side
    assert sorted(side_of.values()) == ["left", "right"]
    assert {p.name for p in (out / "two").iterdir()} == {"person_001", "person_002"}
    (video,) = json.loads(summary.read_text())["videos"]
    assert (video["frames"], video["faces"], video["people"], video["error"]) == (5, 10, 2, None)


def test_missing_videos_fail_before_any_work(tmp_path: Path, capsys) -> None:
    assert main(["extract-faces", str(tmp_path / "none.mp4"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    missing = tmp_path / "none.mp4"
    assert err == f"faceforge extract-faces: error: video file(s) not found: {missing}"
    assert not (tmp_path / "out").exists()


def test_the_manifest_keeps_a_videos_rows_while_its_folder_stays(tmp_path: Path) -> None:
    """An --overwrite run whose video now fails (or is interrupted) keeps the video's old
    folder: its old rows used to be dropped all the same. A video of no frames is an error,
    not an empty folder that refuses the next run."""
    good = write_video(tmp_path / "good.avi", numbered_frames(3, 96, 96))
    flaky = write_video(tmp_path / "flaky.avi", numbered_frames(4, 96, 96))
    out = tmp_path / "out"
    extract_faces([good, flaky], out, MarkerDetector(), ExtractOptions(every_frames=2))
    before = [r for r in read_manifest(out) if r["video"] == "flaky"]
    flaky.write_bytes(b"not a video any more")
    reports = extract_faces([good, flaky], out, MarkerDetector(), EVERY_FRAME, overwrite=True)
    assert reports[0].kept == 3 and "cannot be opened" in reports[1].error
    rows = read_manifest(out)
    assert [r for r in rows if r["video"] == "flaky"] == before and len(before) == 2
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert on_disk == {r["file"] for r in rows if r["file"]}

    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    writer.release()
    (report,) = extract_faces([empty], out, MarkerDetector(), EVERY_FRAME)
    assert "no frame could be read" in report.error and not (out / "empty").exists()
