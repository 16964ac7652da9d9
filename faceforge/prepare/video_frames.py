"""The frames of a video file, upright and sampled every N frames or every N seconds.

Times are the frames' own timestamps: phones record at a variable frame rate, where frame
index / average rate is seconds off. ``every_seconds`` takes the first frame at or after
each multiple of N seconds.

Phones store portrait videos as landscape frames plus a rotation in the container (MP4's
track matrix). OpenCV reports it as ``CAP_PROP_ORIENTATION_META``; its automatic rotation
(``CAP_PROP_ORIENTATION_AUTO``) is switched off and the rotation applied here, so every
backend gives the same upright frames. Skipped frames are only grabbed, not decoded.

A file that cannot be opened, or that ends before the frame count its header announces
(truncated or corrupt), raises one :class:`~faceforge.errors.DataError` line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceforge.errors import ConfigError, DataError

#: clockwise quarter turns -> OpenCV's rotation code
TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
#: frames a container's announced count may exceed the frames really there (an estimate from
#: the duration for some formats) before the file counts as truncated
COUNT_SLACK = 2


def turn(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` turned clockwise by 0, 90, 180 or 270 degrees."""
    return image if degrees % 360 == 0 else cv2.rotate(image, TURNS[degrees % 360])


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its index in the video, its time in seconds, the RGB image."""

    index: int
    seconds: float
    image: np.ndarray


class VideoFrames:
    """Iterate over the upright frames of ``path`` taken every ``every_frames`` frames, or
    every ``every_seconds`` seconds of the frames' timestamps."""

    def __init__(
        self, path: str | Path, every_frames: int | None = None, every_seconds: float | None = None
    ) -> None:
        if (every_frames is None) == (every_seconds is None):
            raise ConfigError("give exactly one of --every-frames and --every-seconds")
        if (every_frames is not None and every_frames < 1) or (every_seconds or 1) <= 0:
            raise ConfigError("--every-frames must be >= 1 and --every-seconds > 0")
        self.path = Path(path)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # errors are ours, one line each
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            what = "does not exist" if not self.path.exists() else "cannot be opened as a video"
            raise DataError(f"{self.path}: {what} (truncated, corrupt or an unknown format)")
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        #: the container's rotation (clockwise degrees), applied to every frame
        self.rotation = round(float(self._capture.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.announced = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        if every_seconds is not None and self.fps <= 0:
            raise DataError(f"{self.path}: no frame rate in the file; use --every-frames")
        self.every_frames, self.every_seconds = every_frames, every_seconds

    def __len__(self) -> int:
        """Frames that will be sampled, by the announced frame count (and, for
        ``every_seconds``, the average frame rate)."""
        step = self.every_frames or max(1, round(self.every_seconds * self.fps))  # type: ignore[operator]
        return -(-self.announced // step)

    def _seconds(self, index: int) -> float:
        """The time of the frame just grabbed: its timestamp, or index / rate where the
        backend gives none."""
        stamp = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        if stamp > 0 or index == 0 or not self.fps:
            return max(stamp, 0.0)
        return index / self.fps

    def __iter__(self) -> Iterator[Frame]:
        index, next_at = 0, 0.0
        try:
            while self._capture.grab():
                seconds = self._seconds(index)
                if self.every_frames:
                    taken = index % self.every_frames == 0
                else:
                    taken = seconds >= next_at - 1e-6  # a millisecond clock: no float drift
                    if taken:
                        passed = math.floor(seconds / self.every_seconds + 1e-9)
                        next_at = (passed + 1) * self.every_seconds
                if taken:
                    ok, bgr = self._capture.retrieve()
                    if not ok:
                        raise DataError(f"{self.path}: frame {index} cannot be decoded (corrupt)")
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    yield Frame(index, seconds, turn(rgb, self.rotation))
                index += 1
        finally:
            self._capture.release()
        if index + COUNT_SLACK < self.announced:
            raise DataError(
                f"{self.path}: ends at frame {index} of the {self.announced} its header "
                "announces (truncated or corrupt)"
            )
