"""Crash-safe file writes for everything faceforge produces (checkpoints, galleries, models,
datasets), and per-process file reads for the dataset readers."""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

from faceforge.errors import FileChangedError


class Temporary:
    """A temporary file (or folder) beside ``target``, named ``.<target name>.<8 hex>.tmp`` and
    locked with ``flock`` for as long as it is open.

    The lock is what tells a temporary being written from one a killed writer left behind:
    the kernel drops it when its process ends, whatever the signal (kill -9 included). So
    every new temporary first deletes the temporaries of the same target that no process
    holds (:func:`remove_stale_temporaries`), and an interrupted run's leftovers go at the
    next write of the same output. Finish with :meth:`commit` (renamed over ``target``) or
    :meth:`discard` (deleted); both release the lock.
    """

    def __init__(self, target: str | Path, *, folder: bool = False) -> None:
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.target)
        self.path, self._fd = _create_locked(self.target, folder)

    def commit(self) -> None:
        """Rename the temporary over ``target`` (still locked, so no cleaner can take it
        first) and release it."""
        try:
            os.replace(self.path, self.target)
        finally:
            self.release()

    def discard(self) -> None:
        """Delete the temporary and release it."""
        try:
            remove_path(self.path, ignore_errors=True)
        finally:
            self.release()

    def release(self) -> None:
        """Drop the lock (the temporary is then fair game for cleaners)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _create_locked(target: Path, folder: bool) -> tuple[Path, int]:
    """A new temporary of ``target``, created with the usual permissions (0666 / 0777 less
    the umask) and locked, with the descriptor holding the lock."""
    for _ in range(100):
        path = _temporary_name(target)
        try:
            if folder:
                os.mkdir(path, 0o777)
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except (FileExistsError, FileNotFoundError):  # a name taken, or a folder just cleaned
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner that saw it unlocked acts
        if _same_file(fd, path):
            return path, fd
        os.close(fd)  # that cleaner deleted it before it was locked: take another name
    raise FileExistsError(f"{target}: cannot create a temporary file beside it")


def remove_stale_temporaries(target: str | Path) -> int:
    """Delete the temporaries of ``target`` (see :class:`Temporary`; the ``mkstemp`` names of
    faceforge 0.2 too) that no live process holds; returns how many. Best effort: entries it
    cannot lock or delete (another user's, a symlink) are left alone."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        with os.scandir(target.parent) as entries:
            names = [entry.name for entry in entries if pattern.fullmatch(entry.name)]
    except OSError:
        return 0
    return sum(_remove_if_unheld(target.parent / name) for name in names)


def _remove_if_unheld(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone already, a symlink, or not ours to read
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(fd, path):
            return False
        remove_path(path, ignore_errors=True)
        return True
    except OSError:  # BlockingIOError: a live writer holds it
        return False
    finally:
        os.close(fd)


#: hex digits of the random tag in the name of a copy set aside while its replacement is written
ASIDE_TAG = 8


def aside_path(target: Path) -> Path:
    """Where ``target`` waits while its replacement is written: a hidden sibling."""
    return target.with_name(f".{target.name}.{secrets.token_hex(ASIDE_TAG // 2)}.old")


def copies_set_aside(target: Path) -> list[Path]:
    """Every copy of ``target`` that :func:`aside_path` named and that is still there (this
    run's, and those of runs killed before they could remove or restore theirs), the most
    recently written last."""
    name = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{{ASIDE_TAG}}}\.old")
    written = {}
    for path in target.parent.glob(".*.old"):
        if name.fullmatch(path.name):
            with contextlib.suppress(FileNotFoundError):  # another run's cleanup was faster
                written[path] = path.stat().st_mtime_ns
    return sorted(written, key=lambda path: (written[path], path.name))


def set_aside_note(*missing: str | Path) -> str:
    """What to add to the error that the ``missing`` paths (one dataset's) do not exist when
    an interrupted overwrite, killed between setting the old copies aside and writing the new
    ones, hid them (the most recently written copy of each); else ''."""
    renames = [
        f"{copies[-1]} to {Path(path).name}"
        for path in missing
        if (copies := copies_set_aside(Path(path)))
    ]
    if not renames:
        return ""
    return f"; an interrupted overwrite set the old one aside: rename {', '.join(renames)}"


def remove_path(path: Path, *, ignore_errors: bool = False) -> None:
    """Delete a file, link or folder tree at ``path`` (nothing there is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only when the ``with`` block succeeds.

    It writes to a :class:`Temporary` in the same folder, fsyncs and renames: readers see the
    old file or the new one, never a partial write, and a failure leaves the old file
    untouched. The file gets the permissions of any new file (0666 less the umask).
    """
    temporary = Temporary(path)
    try:
        with open(temporary.path, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        temporary.commit()
    except BaseException:
        temporary.discard()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, shared: bool = False) -> Iterator[None]:
    """An advisory lock on ``folder`` itself (no lock file is left behind), held for the
    block: writers replacing several files of one dataset together take it exclusively,
    readers opening them together take it shared, so a reader never pairs one writer's file
    with another's and two writers' commits never interleave. Where the file system cannot
    lock (some network mounts), the block runs unlocked."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a file from its replacement or a rewrite of it."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


OutputT = TypeVar("OutputT", bound="AtomicOutput")


class AtomicOutput(abc.ABC):
    """An output written under a temporary name: leaving a ``with`` block normally
    :meth:`close` s it (renamed into place), leaving it on an error :meth:`abort` s it
    (removed), so an interrupted writer never leaves a half-written file behind."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def abort(self) -> None: ...

    def __enter__(self: OutputT) -> OutputT:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class ProcessFile:
    """A file read with ``pread`` through a descriptor each process opens on first use: safe
    to share with DataLoader workers (a forked child does not reuse its parent's descriptor,
    a pickled copy opens its own), and a read past the end returns short instead of
    faulting as a memory map would.

    Every process checks that the file it opens is the one the first saw (FileChangedError
    otherwise): a dataset replaced while training reads it would pair the index read at
    start with the new file's bytes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = -1
        self._identity = _identity(self.path.stat())

    @property
    def size(self) -> int:
        """The file's size when it was first opened (it cannot change: see above)."""
        return self._identity[2]

    def read(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        if self._pid != os.getpid():  # first use in this process, or a forked worker
            self.close()  # a forked child's copy of the parent's descriptor
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
            if _identity(os.fstat(self._fd)) != self._identity:
                self.close()
                raise FileChangedError(
                    f"{self.path}: changed since it was opened (replaced or rewritten by "
                    "another program); start again to read it as it is now"
                )
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        """Close this process's descriptor (the next read opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._pid = None, -1

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_fd": None, "_pid": -1}
