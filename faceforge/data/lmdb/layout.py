"""The LMDB dataset layout, one database file (``subdir=False``; a folder holding
``data.mdb`` reads too):

=============== =================================================================
key             value
=============== =================================================================
``__meta__``    UTF-8 JSON ``{"format": "faceforge-lmdb", "version": 1,
                "images": N, "classes": C}``
``__labels__``  the N class ids, little-endian int64, in image order
``0000000000``  image 0's encoded bytes (JPEG/PNG as written); keys are the image
...             index as 10 zero-padded decimal digits, so they sort in image order
=============== =================================================================

Opening checks that the file is as long as the database's last page says: LMDB maps the
file into memory, and reading a page past the end of a truncated copy would kill the
process with SIGBUS instead of raising.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import lmdb

from faceforge.errors import DataError, FormatError

META_KEY = b"__meta__"
LABELS_KEY = b"__labels__"
FORMAT = "faceforge-lmdb"
VERSION = 1
_MAX_META = 4096
#: (pid, environment) of each database file (device, inode) opened for reading: LMDB allows
#: one environment per process and file (py-lmdb refuses a second open, also in a forked
#: child that inherited the parent's), so every reader of a file shares it
_OPEN: dict[tuple[int, int], tuple[int, lmdb.Environment]] = {}


def image_key(index: int) -> bytes:
    """The key of image ``index``."""
    return b"%010d" % index


@dataclass(frozen=True)
class Meta:
    """What ``__meta__`` records: image and class counts."""

    images: int
    classes: int

    def to_bytes(self) -> bytes:
        fields = {"format": FORMAT, "version": VERSION, "images": self.images}
        return json.dumps({**fields, "classes": self.classes}).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None, source: Path) -> Meta:
        if data is None:
            raise FormatError(f"{source}: no {META_KEY.decode()} key: not a faceforge LMDB")
        try:
            fields = json.loads(bytes(data[:_MAX_META]).decode())
            if fields["format"] != FORMAT or fields["version"] > VERSION:
                raise ValueError(f"format {fields['format']!r} version {fields['version']}")
            meta = cls(int(fields["images"]), int(fields["classes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"{source}: unreadable {META_KEY.decode()} ({exc})") from None
        if meta.images < 0 or meta.classes < 0:
            raise FormatError(f"{source}: negative counts in {META_KEY.decode()}")
        return meta


def data_file(path: Path) -> Path:
    return path / "data.mdb" if path.is_dir() else path


def open_readonly(path: Path) -> lmdb.Environment:
    """The database at ``path``, opened for reading without a lock file, after checking
    that it is not truncated."""
    if not data_file(path).is_file():
        raise DataError(f"{path}: no such LMDB database")
    try:
        env = lmdb.open(
            str(path),
            subdir=path.is_dir(),
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
        )
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    except lmdb.Error as exc:
        raise FormatError(f"{path}: not a readable LMDB database ({exc})") from None
    size = data_file(path).stat().st_size
    if size < needed:
        env.close()
        raise FormatError(f"{path}: truncated: the database needs {needed} bytes, has {size}")
    return env


def shared_readonly(path: Path) -> lmdb.Environment:
    """This process's read-only environment of the database at ``path`` (opened, and
    checked, on first use; a forked process opens its own)."""
    try:
        stat = data_file(path).stat()
    except OSError:
        raise DataError(f"{path}: no such LMDB database") from None
    key, pid = (stat.st_dev, stat.st_ino), os.getpid()
    owner, env = _OPEN.get(key, (pid, None))
    if owner != pid:  # inherited through a fork: let go of the parent's copy first
        env.close()
        env = None
    if env is None:
        env = open_readonly(path)
        _OPEN[key] = (pid, env)
    return env
