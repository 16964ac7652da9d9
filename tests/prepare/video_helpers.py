"""Test videos written with OpenCV: plain AVI (MJPG) files, and MP4s whose container says
"rotate by 90 degrees" (the track matrix of ``tkhd``, as phones write portrait videos)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """RGB frames of one size into an AVI (MJPG) or MP4 (mp4v) file, by suffix."""
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


def set_mp4_rotation(path: Path, degrees: int) -> None:
    """Rewrite the track matrix of an MP4 (ISO/IEC 14496-12 ``tkhd``, version 0) to a
    clockwise rotation: the display matrix FFmpeg reports as the video's rotation."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    assert box > 0 and data[box + 4] == 0, "expected a version-0 tkhd box"
    # version+flags 4, creation 4, modification 4, track id 4, reserved 4, duration 4,
    # reserved 8, layer 2, alternate group 2, volume 2, reserved 2: the matrix follows
    matrix_at = box + 4 + 4 + 4 + 4 + 4 + 4 + 4 + 8 + 8
    one, w = 1 << 16, 1 << 30
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data[matrix_at : matrix_at + 36] = struct.pack(
        ">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, w
    )
    path.write_bytes(bytes(data))


def numbered_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frames whose brightness is 20 x their index, with a white block in the top-left
    corner that shows which way up a frame is."""
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 20 * index % 250, np.uint8)
        frame[: height // 3, : width // 3] = 255
        frames.append(frame)
    return frames
