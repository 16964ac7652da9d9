"""Concurrent edits of one gallery: every enrolled person is kept."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from faceforge.errors import CheckpointError, Interrupted
from faceforge.inference.matching import lock
from faceforge.inference.matching.gallery import Gallery, edit_gallery
from faceforge.inference.matching.lock import LOCK_FILE, gallery_lock
from faceforge.interrupts import StopRequests
from tests.inference.matching.flock_probe import ReportingFlock

DIM = 8

# One enrollment run: load (or create) the gallery, add 20 people, save. The run that gets the
# lock first saves only once the other run is waiting for it (each run says so by a file when
# its flock has to wait), so the two always overlap. Without the lock both would load the same
# gallery and one would lose 20; here neither waits, and the first holder gives up.
ENROLL = """
import sys, time
from pathlib import Path
import numpy as np
from faceforge.inference.matching import lock
from faceforge.inference.matching.gallery import edit_gallery
from faceforge.interrupts import StopRequests
from tests.inference.matching.flock_probe import ReportingFlock

folder, prefix, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
probe = lock.fcntl = ReportingFlock((folder.parent / f"{prefix}.waiting").touch)
rng = np.random.default_rng(sum(map(ord, prefix)))
with edit_gallery(folder, 8, "fp") as gallery:
    for i in range(20):
        gallery.add(f"{prefix}{i:02d}", rng.normal(size=(2, 8)))
    deadline = time.monotonic() + 60
    while not probe.waited and not (folder.parent / f"{other}.waiting").exists():
        assert time.monotonic() < deadline, "the other run never waited for the lock"
        time.sleep(0.01)
"""
#: the repository root, from which the enrollment runs import the test helper
ROOT = Path(__file__).resolve().parents[3]


def test_two_processes_enrolling_into_one_gallery_keep_everyone(tmp_path: Path) -> None:
    folder = tmp_path / "gallery"
    runs = [
        subprocess.Popen([sys.executable, "-c", ENROLL, str(folder), prefix, other], cwd=ROOT)
        for prefix, other in (("a", "b"), ("b", "a"))
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    gallery = Gallery.load(folder)
    assert gallery.names == [f"{p}{i:02d}" for p in "ab" for i in range(20)]
    assert all(gallery.num_images(name) == 2 for name in gallery.names)


def test_an_editor_waits_for_the_lock_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = threading.Event()
    monkeypatch.setattr(lock, "fcntl", ReportingFlock(waiting.set))
    events: list[str] = []

    def second_editor() -> None:
        with edit_gallery(tmp_path, DIM, "fp") as gallery:
            events.append(f"second sees {gallery.names}")
            gallery.add("bo", np.ones(DIM))

    with edit_gallery(tmp_path, DIM, "fp") as gallery:
        thread = threading.Thread(target=second_editor)
        thread.start()
        assert waiting.wait(timeout=30), "the second editor did not wait for the lock"
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


def test_a_signal_while_waiting_for_the_lock_stops_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while enroll waited for another enroll's lock was only noted: Python resumed
    the wait, and docker stop or systemd had to kill the process."""
    holder = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    stopped = threading.Event()

    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        if not stopped.wait(30):  # without the fix the wait goes on: end it, and fail
            fcntl.flock(holder, fcntl.LOCK_UN)

    waits = ReportingFlock(lambda: threading.Thread(target=terminate).start())
    monkeypatch.setattr(lock, "fcntl", waits)
    try:
        refused = pytest.raises(Interrupted, match="interrupted while waiting; nothing was changed")
        with refused, StopRequests() as stop, stop.at_once("waiting"), gallery_lock(tmp_path):
            pass
        assert waits.waited
    finally:
        stopped.set()
        os.close(holder)
