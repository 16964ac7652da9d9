"""Concurrent edits of one gallery: every enrolled person is kept."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faceforge.errors import CheckpointError
from faceforge.inference.matching.gallery import Gallery, edit_gallery
from faceforge.inference.matching.lock import LOCK_FILE, gallery_lock

DIM = 8

# One enrollment run: load (or create) the gallery, add 20 people, pause so that the other
# run overlaps, save. Without the lock both runs load the same gallery and one loses 20.
ENROLL = """
import sys, time
import numpy as np
from faceforge.inference.matching.gallery import edit_gallery

folder, prefix = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(sum(map(ord, prefix)))
with edit_gallery(folder, 8, "fp") as gallery:
    for i in range(20):
        gallery.add(f"{prefix}{i:02d}", rng.normal(size=(2, 8)))
    time.sleep(1.0)
"""


def test_two_processes_enrolling_into_one_gallery_keep_everyone(tmp_path: Path) -> None:
    folder = tmp_path / "gallery"
    runs = [
        subprocess.Popen([sys.executable, "-c", ENROLL, str(folder), prefix])
        for prefix in ("a", "b")
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    gallery = Gallery.load(folder)
    assert gallery.names == [f"{p}{i:02d}" for p in "ab" for i in range(20)]
    assert all(gallery.num_images(name) == 2 for name in gallery.names)


def test_an_editor_waits_for_the_lock_holder(tmp_path: Path) -> None:
    events: list[str] = []

    def second_editor() -> None:
        with edit_gallery(tmp_path, DIM, "fp") as gallery:
            events.append(f"second sees {gallery.names}")
            gallery.add("bo", np.ones(DIM))

    with edit_gallery(tmp_path, DIM, "fp") as gallery:
        thread = threading.Thread(target=second_editor)
        thread.start()
        time.sleep(0.3)
        events.append("first saves")
        gallery.add("ann", np.ones(DIM))
    thread.join(timeout=30)
    assert events == ["first saves", "second sees ['ann']"]
    assert Gallery.load(tmp_path).names == ["ann", "bo"]
    assert (tmp_path / LOCK_FILE).is_file()


def test_a_failed_edit_saves_nothing(tmp_path: Path) -> None:
    with edit_gallery(tmp_path, DIM, "fp") as gallery:
        gallery.add("ann", np.ones(DIM))
    with pytest.raises(RuntimeError), edit_gallery(tmp_path, DIM, "fp") as gallery:
        gallery.remove("ann")
        raise RuntimeError("embedding failed half way")
    assert Gallery.load(tmp_path).names == ["ann"]
    with pytest.raises(CheckpointError, match="fingerprint"), edit_gallery(tmp_path, DIM, "x"):
        pass
    with gallery_lock(tmp_path):  # the lock was released each time
        pass
