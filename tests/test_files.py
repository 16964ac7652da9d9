"""Temporaries: a live writer's is never touched, a dead writer's is deleted by the next
write of the same target (and only of that target), commits and discards leave nothing; what
a killed overwrite set aside is found again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceforge.files import (
    Temporary,
    aside_path,
    atomic_open,
    copies_set_aside,
    remove_stale_temporaries,
    set_aside_note,
)

#: a writer in another process: creates a temporary of argv[1], reports it, waits for its
#: stdin to close, then dies without cleaning up (as a kill -9 would)
_WRITER = (
    "import os, sys\n"
    "from faceforge.files import Temporary\n"
    "temporary = Temporary(sys.argv[1], folder=sys.argv[2] == 'folder')\n"
    "print(temporary.path, flush=True)\n"
    "sys.stdin.read()\n"
    "os._exit(0)\n"
)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_live_writers_temporary_is_kept_and_a_dead_ones_removed(tmp_path: Path, kind) -> None:
    target = tmp_path / "train.rec"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    theirs = Path(writer.stdout.readline().strip())
    assert theirs.parent == tmp_path and theirs.name.startswith(".train.rec.")
    ours = Temporary(target)  # while the writer lives
    assert theirs.exists()
    ours.discard()
    writer.communicate("")  # the writer exits without removing its temporary
    assert writer.returncode == 0 and theirs.exists()
    again = Temporary(target)
    assert not theirs.exists() and again.path.exists()
    again.discard()
    assert not list(tmp_path.iterdir())


def test_only_the_targets_own_temporaries_are_removed(tmp_path: Path) -> None:
    left = [
        ".train.rec.abcd1234.tmp",  # a temporary of train.rec (faceforge 0.2 style too:)
        ".train.rec.x_9y8z7w.tmp",
    ]
    kept = [
        ".train.idx.abcd1234.tmp",  # another target's
        ".train.rec.old.abcd1234.tmp",  # the temporary of "train.rec.old"
        ".train.rec.abcd12345.tmp",  # not a temporary name
        "train.rec.abcd1234.tmp",
    ]
    for name in left + kept:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".train.rec.dir12345.tmp").mkdir()  # a folder target's temporary
    (tmp_path / ".train.rec.dir12345.tmp" / "0.jpg").write_bytes(b"")
    os.symlink(tmp_path / kept[0], tmp_path / ".train.rec.link1234.tmp")  # never followed
    assert remove_stale_temporaries(tmp_path / "train.rec") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".train.rec.link1234.tmp"])


def test_atomic_open_commits_or_discards(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_open(target) as f:
        f.write(b"new")
        temporary = Path(f.name)
        assert temporary.name.startswith(".out.bin.") and temporary.suffix == ".tmp"
    assert target.read_bytes() == b"new" and not temporary.exists()
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_the_restore_hint_names_the_newest_copy_a_killed_overwrite_hid(tmp_path: Path) -> None:
    """Two killed overwrites of one dataset leave two copies: the hint names the one written
    last (what the user had before the second run), whatever their random names."""
    target = tmp_path / "train.rec"
    assert set_aside_note(target) == ""
    older, newer = aside_path(target), aside_path(target)
    for copy, written in ((newer, 2_000_000), (older, 1_000_000)):
        copy.write_bytes(b"")
        os.utime(copy, (written, written))
    (tmp_path / ".train.rec.notatag.old").write_bytes(b"")  # not one of ours
    assert copies_set_aside(target) == [older, newer]
    assert (
        set_aside_note(target)
        == f"; an interrupted overwrite set the old one aside: rename {newer} to train.rec"
    )
