"""``faceforge extract-faces``: aligned face crops from videos, grouped by person.

For every sampled frame (:mod:`~faceforge.prepare.video_frames`: container rotation applied)
the detector runs at the frame's remembered turn. A face counts when its score reaches
``min_score`` and its landmarks are upright (eyes above the nose, the nose above the mouth,
left eye left); rotated faces often give confident detections with scrambled landmarks.
When the best face scores below ``search_below`` (or none is found) the other quarter turns
are tried, upright first, until one finds a face that reaches it (else the turn with the
best face wins); that turn is remembered and tried first on the next frames.

Faces are aligned (:func:`~faceforge.data.alignment.norm_crop`), grouped per person
(:mod:`~faceforge.prepare.face_tracks`: box overlap, plus embedding similarity when a model
is given) and near-duplicates dropped. Output, a folder dataset usable for training or
``faceforge pairs``::

    OUT/<video>/person_001/<video>_f000120_0.jpg     frame 120, face 0 of that frame
    OUT/manifest.csv                                 one row per face found, kept or not

Each video's folder is written under a temporary name and renamed when the video is done,
and the manifest is rewritten (atomically) after each video: an interrupted run leaves
finished videos only. A video that ends early (truncated, corrupt) keeps the faces found
before the damage and reports the error in one line.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceforge.data.alignment import norm_crop, template_points
from faceforge.data.image_io import encode_image
from faceforge.errors import ConfigError, DataError
from faceforge.files import atomic_write_bytes
from faceforge.inference.detection.base import Detection, Detector
from faceforge.prepare.face_tracks import FaceTracker, TrackOptions
from faceforge.prepare.video_frames import VideoFrames, turn

MANIFEST = "manifest.csv"
COLUMNS = (
    "video",
    "frame",
    "seconds",
    "face",
    "person",
    "turn",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
    "file",
    "status",
)
QUARTER_TURNS = (0, 90, 180, 270)


@dataclass(frozen=True)
class ExtractOptions:
    """What is sampled, which faces count, and how they are cropped and grouped."""

    #: one of the two; neither set means every second
    every_frames: int | None = None
    every_seconds: float | None = None
    min_score: float = 0.9
    search_below: float = 0.99
    size: tuple[int, int] = (112, 112)
    template: str = "arcface"
    tracks: TrackOptions = field(default_factory=TrackOptions)

    def __post_init__(self) -> None:
        if self.every_frames is None and self.every_seconds is None:
            object.__setattr__(self, "every_seconds", 1.0)
        if self.every_frames is not None and self.every_seconds is not None:
            raise ConfigError("give one of --every-frames and --every-seconds, not both")
        if not 0 <= self.min_score <= self.search_below <= 1:
            raise ConfigError("need 0 <= --min-score <= --search-below <= 1")
        try:
            template_points(self.size, self.template)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def is_upright(landmarks: np.ndarray) -> bool:
    """Whether five landmarks look like an upright face: eyes left to right above the nose,
    the nose between the eyes and above the mouth, the face tilted less than 45 degrees."""
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, np.float64)
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    down = mouth - eyes
    return bool(
        left_eye[0] < right_eye[0]
        and mouth_left[0] < mouth_right[0]
        and left_eye[0] < nose[0] < right_eye[0]
        and eyes[1] < nose[1] < mouth[1]
        and abs(down[0]) < down[1]
    )


class TurnSearch:
    """Faces of a frame at the quarter turn that shows them upright (see the module docs)."""

    def __init__(self, detector: Detector, min_score: float, search_below: float) -> None:
        self.detector = detector
        self.min_score, self.search_below = min_score, search_below
        self.turn = 0

    def _faces(self, image: np.ndarray, degrees: int) -> tuple[np.ndarray, list[Detection]]:
        turned = turn(image, degrees)
        faces = [
            d
            for d in self.detector.detect(turned)
            if d.score >= self.min_score and is_upright(d.landmarks)
        ]
        return turned, sorted(faces, key=lambda d: -d.score)

    def find(self, image: np.ndarray) -> tuple[int, np.ndarray, list[Detection]]:
        """``(turn, turned image, upright faces best first)``: the remembered turn first,
        then the others until one finds a face scoring ``search_below``; failing that the
        turn with the best face (remembered from now on)."""
        start = self.turn
        best: tuple[int, np.ndarray, list[Detection]] | None = None
        for degrees in (start, *(d for d in QUARTER_TURNS if d != start)):
            turned, faces = self._faces(image, degrees)
            if faces and (best is None or faces[0].score > best[2][0].score):
                best = (degrees, turned, faces)
            if faces and faces[0].score >= self.search_below:
                break
        if best is None:
            return start, turn(image, start), []
        self.turn = best[0]
        return best


@dataclass
class VideoReport:
    """What one video gave: faces found, kept and dropped as near-duplicates, people."""

    video: Path
    frames: int = 0
    faces: int = 0
    kept: int = 0
    duplicates: int = 0
    people: int = 0
    rotation: int = 0
    turns: dict[int, int] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "video": str(self.video),
            "frames": self.frames,
            "faces": self.faces,
            "kept": self.kept,
            "duplicates": self.duplicates,
            "people": self.people,
            "rotation": self.rotation,
            "turns": {str(k): v for k, v in sorted(self.turns.items())},
            "error": self.error,
        }

    def summary(self) -> str:
        turned = ", ".join(f"{k} deg: {v} frames" for k, v in sorted(self.turns.items()) if k)
        return (
            f"{self.video.name}: {self.frames} frames, {self.faces} faces of {self.people} "
            f"people, kept {self.kept} ({self.duplicates} near-duplicates dropped)"
            + (f"; turned {turned}" if turned else "")
            + (f"; container rotation {self.rotation} deg" if self.rotation else "")
        )


def _video_names(videos: Sequence[Path]) -> list[str]:
    names = [video.stem for video in videos]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"several videos are named {', '.join(repeated)}: their outputs would clash"
        )
    return names


def _crop_name(video: str, frame: int, face: int) -> str:
    return f"{video}_f{frame:06d}_{face}.jpg"


class _VideoJob:
    """Extracts one video into a temporary folder; ``finish`` renames it into place."""

    def __init__(self, video: Path, name: str, out: Path, options: ExtractOptions) -> None:
        self.video, self.name, self.out, self.options = video, name, out, options
        out.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out))
        self.tmp.chmod(0o755)
        self.rows: list[dict[str, object]] = []
        self.report = VideoReport(video)
        self.tracker = FaceTracker(options.tracks)

    def add_frame(
        self,
        index: int,
        seconds: float,
        degrees: int,
        image: np.ndarray,
        faces: list[Detection],
        embed: Callable[[np.ndarray], np.ndarray] | None,
    ) -> None:
        """Align, group, deduplicate and write the faces of one frame."""
        self.report.frames += 1
        self.report.turns[degrees] = self.report.turns.get(degrees, 0) + 1
        crops = [
            norm_crop(image, f.landmarks, self.options.size, self.options.template) for f in faces
        ]
        embeddings = list(embed(np.stack(crops))) if embed is not None and crops else None
        tracks = self.tracker.assign([f.box for f in faces], embeddings)
        for number, (face, crop, track) in enumerate(zip(faces, crops, tracks, strict=True)):
            duplicate = self.tracker.is_duplicate(track, crop)
            relative = f"person_{track.number:03d}/{_crop_name(self.name, index, number)}"
            if not duplicate:
                (self.tmp / relative).parent.mkdir(exist_ok=True)
                (self.tmp / relative).write_bytes(encode_image(crop, ".jpg"))
            self.report.faces += 1
            self.report.kept += not duplicate
            self.report.duplicates += duplicate
            x1, y1, x2, y2 = (round(float(v), 1) for v in face.box)
            self.rows.append(
                dict(
                    video=self.name,
                    frame=index,
                    seconds=round(seconds, 3),
                    face=number,
                    person=track.number,
                    turn=degrees,
                    score=round(face.score, 4),
                    x1=x1,
                    y1=y1,
                    x2=x2,
                    y2=y2,
                    file="" if duplicate else f"{self.name}/{relative}",
                    status="duplicate" if duplicate else "kept",
                )
            )

    def finish(self) -> None:
        target = self.out / self.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(self.tmp, target)
        self.report.people = len(self.tracker.tracks)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _read_manifest(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_manifest(path: Path, rows: Sequence[dict[str, object]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode())


def extract_faces(
    videos: Sequence[str | Path],
    out: str | Path,
    detector: Detector,
    options: ExtractOptions | None = None,
    *,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[VideoReport]:
    """Extract the faces of every video into ``out`` (see the module docs); ``embed`` maps
    aligned crops to unit embeddings (e.g. :meth:`Embedder.embed`) for grouping. A video
    that fails reports its error in its :class:`VideoReport`; the others go on."""
    from tqdm import tqdm

    options = options or ExtractOptions()
    out, videos = Path(out), [Path(v) for v in videos]
    names = _video_names(videos)
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise DataError(f"{out}: already holds {', '.join(existing)}; add --overwrite to replace")
    manifest = out / MANIFEST
    # a video's old rows go when its new folder replaces the old one, not before: an
    # interrupted or failed video keeps its old folder, and so its rows
    rows: list[dict[str, object]] = list(_read_manifest(manifest))
    reports = []
    for video, name in zip(videos, names, strict=True):
        job = _VideoJob(video, name, out, options)
        try:
            frames = VideoFrames(video, options.every_frames, options.every_seconds)
            job.report.rotation = frames.rotation
            search = TurnSearch(detector, options.min_score, options.search_below)
            for frame in tqdm(
                frames, total=len(frames), desc=name, unit="frame", disable=not progress
            ):
                job.add_frame(frame.index, frame.seconds, *search.find(frame.image), embed)
        except DataError as exc:
            job.report.error = str(exc)
        except BaseException:
            job.abort()
            raise
        if not job.report.frames and not job.report.error:
            job.report.error = f"{video}: no frame could be read (an empty video)"
        if job.report.error and not job.rows:
            job.abort()  # nothing came out of it: no empty folder
        else:
            job.finish()
            rows = [row for row in rows if row.get("video") != name] + job.rows
        _write_manifest(manifest, rows)
        reports.append(job.report)
    return reports
