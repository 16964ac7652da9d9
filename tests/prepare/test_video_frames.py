"""Sampled, upright video frames: every N frames or seconds, the container's rotation applied
as OpenCV's own automatic rotation does it, and one-line errors for broken files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from video_helpers import numbered_frames, set_mp4_rotation, write_video

from faceforge.errors import ConfigError, DataError
from faceforge.prepare.video_frames import VideoFrames, turn


def brightness(frame: np.ndarray) -> int:
    """The index-coded brightness, read away from the white corner block."""
    return round(float(frame[-8:, -8:].mean()) / 20)


def test_every_n_frames_and_every_n_seconds(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", numbered_frames(12), fps=10)
    frames = list(VideoFrames(video, every_frames=5))
    assert [f.index for f in frames] == [0, 5, 10]
    assert [brightness(f.image) for f in frames] == [0, 5, 10]
    assert [f.seconds for f in frames] == [0.0, 0.5, 1.0]
    by_time = VideoFrames(video, every_seconds=0.4)
    assert len(by_time) == 3
    assert [f.index for f in by_time] == [0, 4, 8]
    uneven = VideoFrames(video, every_seconds=0.25)  # the first frame at or after each 0.25 s
    assert [f.seconds for f in uneven] == pytest.approx([0.0, 0.3, 0.5, 0.8, 1.0])


def test_a_variable_frame_rate_video_is_timed_and_sampled_by_its_timestamps() -> None:
    """10 frames 0.1 s apart, then 10 frames 0.5 s apart, as phones record: frame 19 was
    said to be at 4.56 s (index / average rate); it is at 5.5 s."""
    video = Path(__file__).parent / "fixtures" / "vfr.mp4"
    seconds = [f.seconds for f in VideoFrames(video, every_frames=1)]
    assert seconds == pytest.approx([i / 10 for i in range(10)] + [1 + i / 2 for i in range(10)])
    by_time = [f.seconds for f in VideoFrames(video, every_seconds=1.0)]
    assert by_time == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_container_rotation_is_applied_as_opencv_applies_it(tmp_path: Path, degrees: int) -> None:
    video = write_video(tmp_path / "v.mp4", numbered_frames(3))
    set_mp4_rotation(video, degrees)
    frames = VideoFrames(video, every_frames=1)
    assert frames.rotation == degrees
    ours = [f.image for f in frames]
    capture = cv2.VideoCapture(str(video))
    assert capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    for image in ours:  # the reference: OpenCV's own automatic rotation
        ok, bgr = capture.read()
        assert ok
        np.testing.assert_array_equal(image, bgr[:, :, ::-1])
    assert ours[0].shape[:2] == ((48, 64) if degrees == 180 else (64, 48))
    corner = {90: (0, -1), 180: (-1, -1), 270: (-1, 0)}[degrees]  # where the block went
    assert ours[0][corner[0], corner[1]].min() > 200


def test_turn_is_clockwise() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = 255
    assert turn(image, 90)[0, -1].max() == 255 and turn(image, 90).shape == (3, 2, 3)
    assert turn(image, 270)[-1, 0].max() == 255
    assert turn(image, 360) is image


def test_truncated_video_is_one_line_after_its_good_frames(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.avi", numbered_frames(30, 96, 128))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    frames = VideoFrames(cut, every_frames=1)
    seen = []
    with pytest.raises(DataError, match=r"cut.avi: ends at frame \d+ of the 30 its header") as info:
        for frame in frames:
            seen.append(frame.index)
    assert 0 < len(seen) < 30 and "\n" not in str(info.value)


def test_unreadable_files_and_bad_options(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    with pytest.raises(DataError, match="junk.mp4: cannot be opened as a video"):
        VideoFrames(tmp_path / "junk.mp4", every_frames=1)
    with pytest.raises(DataError, match="none.mp4: does not exist"):
        VideoFrames(tmp_path / "none.mp4", every_frames=1)
    with pytest.raises(ConfigError, match="exactly one of"):
        VideoFrames(tmp_path / "junk.mp4", every_frames=2, every_seconds=1.0)
    with pytest.raises(ConfigError, match="--every-frames must be >= 1"):
        VideoFrames(tmp_path / "junk.mp4", every_frames=0)
