"""Grouping faces into people across frames (overlap, then embedding agreement) and dropping
near-duplicate crops."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.prepare.face_tracks import FaceTracker, TrackOptions, box_iou

LEFT, RIGHT = (10, 10, 50, 60), (100, 10, 140, 60)


def test_box_iou_by_hand() -> None:
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert box_iou(LEFT, LEFT) == 1.0


def numbers(tracks) -> list[int]:
    return [t.number for t in tracks]


def test_faces_follow_their_boxes_whatever_the_order() -> None:
    tracker = FaceTracker()
    assert numbers(tracker.assign([LEFT, RIGHT])) == [1, 2]
    moved_left = (14, 12, 54, 62)
    assert numbers(tracker.assign([RIGHT, moved_left])) == [2, 1]
    assert numbers(tracker.assign([(200, 10, 240, 60)])) == [3]  # somewhere new: a new person


def test_a_track_ends_after_max_gap_missed_frames() -> None:
    tracker = FaceTracker(TrackOptions(max_gap=1))
    tracker.assign([LEFT])
    tracker.assign([])
    assert numbers(tracker.assign([LEFT])) == [1]  # missed once: still the same person
    tracker.assign([])
    tracker.assign([])
    assert numbers(tracker.assign([LEFT])) == [2]


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def test_embeddings_split_two_people_at_the_same_place() -> None:
    tracker = FaceTracker(TrackOptions(min_similarity=0.5))
    tracker.assign([LEFT], [unit(1, 0)])
    assert numbers(tracker.assign([LEFT], [unit(1, 0.2)])) == [1]  # cos 0.98
    assert numbers(tracker.assign([LEFT], [unit(0, 1)])) == [2]  # a cut to someone else
    crossing = FaceTracker(TrackOptions(min_similarity=0.5))
    crossing.assign([LEFT, RIGHT], [unit(1, 0), unit(0, 1)])
    near = (40, 10, 80, 60)  # overlaps LEFT best, but looks like the person on the right
    assert numbers(crossing.assign([near], [unit(0.1, 1)])) == [3]


def test_a_negative_similarity_threshold_admits_what_it_says() -> None:
    """With --min-similarity -1 a face passing both thresholds scored below 0 and started a
    new track."""
    tracker = FaceTracker(TrackOptions(min_iou=0.3, min_similarity=-1.0))
    up, down = np.array([1.0, 0.0]), np.array([-1.0, 0.0])
    first = tracker.assign([(0, 0, 10, 10)], [up])
    assert numbers(tracker.assign([(2, 2, 12, 12)], [down])) == numbers(first) == [1]


def test_near_duplicates_compare_with_the_last_kept_crop() -> None:
    tracker = FaceTracker(TrackOptions(duplicate_below=5))
    (track,) = tracker.assign([LEFT])
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (112, 112, 3), np.uint8)
    assert not tracker.is_duplicate(track, face)
    noisy = np.clip(face.astype(int) + rng.integers(-3, 4, face.shape), 0, 255).astype(np.uint8)
    assert tracker.is_duplicate(track, noisy)
    brighter = np.clip(face.astype(int) + 8, 0, 255).astype(np.uint8)
    assert not tracker.is_duplicate(track, brighter)  # kept: the new reference
    assert tracker.is_duplicate(track, brighter)
