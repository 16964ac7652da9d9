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

Databases are read by :class:`~faceforge.data.lmdb.pages.LmdbFile` (checked ``pread`` s,
never a memory map: a damaged size in a mapped file kills the process with SIGBUS) and
written with py-lmdb (:mod:`faceforge.data.lmdb.writer`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from faceforge.data.lmdb.pages import LmdbFile
from faceforge.errors import DataError, FormatError
from faceforge.files import set_aside_note

META_KEY = b"__meta__"
LABELS_KEY = b"__labels__"
FORMAT = "faceforge-lmdb"
VERSION = 1
#: the most bytes ``__meta__`` may take
MAX_META = 4096


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
            fields = json.loads(data.decode())
            if fields["format"] != FORMAT or fields["version"] > VERSION:
                raise ValueError(f"format {fields['format']!r} version {fields['version']}")
            meta = cls(int(fields["images"]), int(fields["classes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"{source}: unreadable {META_KEY.decode()} ({exc})") from None
        if meta.images < 0 or meta.classes < 0:
            raise FormatError(f"{source}: negative counts in {META_KEY.decode()}")
        return meta


def open_database(path: Path) -> LmdbFile:
    """The database at ``path`` (a file, or a folder holding ``data.mdb``), opened for
    checked reading; DataError when there is none, FormatError when it is damaged."""
    data = path / "data.mdb" if path.is_dir() else path
    if not data.is_file():
        raise DataError(f"{path}: no such LMDB database{set_aside_note(path)}")
    return LmdbFile(data, source=path)
