"""Faces of one person across the frames of a video, and near-duplicates among them.

A face continues the track of the previous sampled frame whose box it overlaps most
(intersection over union at least ``min_iou``); with embeddings it must also look alike
(cosine similarity at least ``min_similarity``), so two people passing each other, or a cut
to another person at the same place, start a new track. Each face is matched at most once,
best pairs first. A track not seen for ``max_gap`` sampled frames ends.

A face is a near-duplicate when its aligned crop barely differs from the last crop kept for
its track (mean absolute difference of 32x32 grey thumbnails below ``duplicate_below`` grey
levels): a still scene or a repeated frame adds nothing to a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

THUMBNAIL = 32


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """The grey 32x32 float thumbnail near-duplicates are compared by."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class Track:
    """One person's faces so far: where it was last seen and what was last kept."""

    number: int
    box: tuple[float, float, float, float]
    seen: int
    embedding: np.ndarray | None = None
    kept: np.ndarray | None = None
    faces: int = 0


@dataclass(frozen=True)
class TrackOptions:
    """How faces are linked and deduplicated (see the module docs)."""

    min_iou: float = 0.3
    min_similarity: float = 0.4
    max_gap: int = 2
    duplicate_below: float = 12.0


@dataclass
class FaceTracker:
    """Assigns the faces of successive sampled frames to tracks (people)."""

    options: TrackOptions = field(default_factory=TrackOptions)
    tracks: list[Track] = field(default_factory=list)
    frame: int = 0

    def _score(
        self, track: Track, box: Sequence[float], embedding: np.ndarray | None
    ) -> float | None:
        """How well a face continues ``track``; ``None`` when it cannot (a score may be
        negative: a similarity threshold below 0 admits negative similarities)."""
        overlap = box_iou(track.box, box)
        missed = self.frame - track.seen - 1
        if missed > self.options.max_gap or overlap < self.options.min_iou:
            return None
        if embedding is None or track.embedding is None:
            return overlap
        similarity = float(embedding @ track.embedding)
        return overlap + similarity if similarity >= self.options.min_similarity else None

    def assign(
        self,
        boxes: Sequence[Sequence[float]],
        embeddings: Sequence[np.ndarray] | None = None,
    ) -> list[Track]:
        """The track of every face of the next sampled frame (new tracks for new people)."""
        self.frame += 1
        found = embeddings if embeddings is not None else [None] * len(boxes)
        candidates = sorted(
            (
                (score, f, t)
                for f, (box, embedding) in enumerate(zip(boxes, found, strict=True))
                for t, track in enumerate(self.tracks)
                if (score := self._score(track, box, embedding)) is not None
            ),
            reverse=True,
        )
        chosen: dict[int, Track] = {}
        taken: set[int] = set()
        for _, f, t in candidates:
            if f not in chosen and t not in taken:
                chosen[f] = self.tracks[t]
                taken.add(t)
        result = []
        for f, box in enumerate(boxes):
            track = chosen.get(f)
            if track is None:
                track = Track(len(self.tracks) + 1, tuple(box), self.frame)  # type: ignore[arg-type]
                self.tracks.append(track)
            track.box, track.seen, track.embedding = tuple(box), self.frame, found[f]  # type: ignore[assignment]
            track.faces += 1
            result.append(track)
        return result

    def is_duplicate(self, track: Track, crop: np.ndarray) -> bool:
        """Whether ``crop`` barely differs from ``track``'s last kept crop; if not, it
        becomes the one later crops are compared with."""
        small = thumbnail(crop)
        near = (
            track.kept is not None
            and np.abs(small - track.kept).mean() < self.options.duplicate_below
        )
        if near:
            return True
        track.kept = small
        return False
