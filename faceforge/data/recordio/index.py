"""The files of a RecordIO dataset: ``train.rec``, its ``.idx`` text index (``key<TAB>offset``
lines, as ``mx.recordio.MXIndexedRecordIO`` writes them) and insightface's ``property`` file
(``num_classes,height,width``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import DataError, FormatError
from faceforge.files import atomic_write_bytes, set_aside_note


@dataclass(frozen=True)
class RecordFiles:
    """Paths of one RecordIO dataset; ``labels`` is faceforge's label cache beside them."""

    rec: Path
    idx: Path
    prop: Path

    @classmethod
    def at(cls, path: str | Path) -> RecordFiles:
        """The files of a folder holding ``train.rec`` (insightface's layout) or of a
        ``.rec`` file (``.idx`` beside it with the same stem, ``property`` in its folder)."""
        path = Path(path)
        rec = path / "train.rec" if path.is_dir() else path
        return cls(rec, rec.with_suffix(".idx"), rec.parent / "property")

    @property
    def labels(self) -> Path:
        return self.rec.with_suffix(".labels.npz")

    def check(self) -> None:
        """DataError naming whichever of the ``.rec`` and ``.idx`` is missing."""
        for path in (self.rec, self.idx):
            if not path.is_file():
                raise DataError(
                    f"{path}: no such file (a RecordIO dataset is train.rec + train.idx, "
                    f"and optionally property, in one folder){set_aside_note(self.rec, self.idx)}"
                )


def read_idx(path: Path, rec_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys and byte offsets (int64) of every ``key<TAB>offset`` line of an ``.idx``.

    Keys must be unique and >= 0, offsets unique and inside the ``rec_size``-byte ``.rec``;
    FormatError names the line otherwise. Whole-file numpy parsing keeps 5M lines to about a
    second; a file that does not parse that way is read line by line to find (or forgive)
    the fault.
    """
    data = path.read_bytes()
    tokens = data.split()
    lines = data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    try:
        pairs = np.array(tokens, dtype=np.int64).reshape(-1, 2)
        if len(pairs) != lines:
            raise ValueError("blank or ragged lines")
    except (ValueError, OverflowError):
        pairs = _parse_lines(path, data)
    keys, offsets = pairs[:, 0].copy(), pairs[:, 1].copy()
    _check_entries(path, keys, offsets, rec_size)
    return keys, offsets


def _parse_lines(path: Path, data: bytes) -> np.ndarray:
    pairs = []
    for number, line in enumerate(data.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not all(f.isdigit() and len(f) < 19 for f in fields):
            raise FormatError(f"{path}:{number}: expected 'key<TAB>offset', got {line[:80]!r}")
        pairs.append((int(fields[0]), int(fields[1])))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _check_entries(path: Path, keys: np.ndarray, offsets: np.ndarray, rec_size: int) -> None:
    if not len(keys):
        raise FormatError(f"{path}: the index lists no records")
    bad = np.flatnonzero((keys < 0) | (offsets < 0) | (offsets >= rec_size))
    if len(bad):
        line = int(bad[0]) + 1
        raise FormatError(
            f"{path}:{line}: record {keys[bad[0]]} at byte {offsets[bad[0]]} points past the "
            f"end of the .rec ({rec_size} bytes): truncated .rec or wrong index"
        )
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) != len(keys):
        raise FormatError(f"{path}: key {unique[counts > 1][0]} is listed more than once")
    _check_distinct_offsets(path, keys, offsets)


def _check_distinct_offsets(path: Path, keys: np.ndarray, offsets: np.ndarray) -> None:
    """Every record starts at its own byte: a writer appends records one after another, so
    keys sharing an offset are a damaged or crafted index, and would make one image count
    as many (refused rather than warned about: training would silently oversample it)."""
    order = np.argsort(offsets, kind="stable")
    repeats = np.flatnonzero(offsets[order][1:] == offsets[order][:-1])
    if len(repeats):
        first, second = order[repeats[0]], order[repeats[0] + 1]
        raise FormatError(
            f"{path}:{second + 1}: record {keys[second]} starts at byte {offsets[second]}, as "
            f"record {keys[first]} does (line {first + 1}); {len(repeats)} index line(s) repeat "
            "an offset: the index is damaged, rebuild it"
        )


def spans(offsets: np.ndarray, rec_size: int) -> np.ndarray:
    """Bytes from each offset to the next record's (or the file's end): what one read of a
    record should take."""
    order = np.argsort(offsets, kind="stable")
    ends = np.append(offsets[order][1:], rec_size)
    out = np.empty_like(offsets)
    out[order] = ends - offsets[order]
    return out


def read_property(path: Path) -> int | None:
    """The class count of an insightface ``property`` file, or None when there is none."""
    if not path.is_file():
        return None
    text = path.read_text(errors="replace").strip()
    fields = text.split(",")
    if not (fields[0].strip().isascii() and fields[0].strip().isdigit()):
        raise FormatError(f"{path}: expected 'num_classes,height,width', got {text[:80]!r}")
    return int(fields[0])


def write_property(path: Path, num_classes: int, size: tuple[int, int] = (112, 112)) -> None:
    """Write insightface's ``property`` file (``num_classes,height,width``) atomically."""
    atomic_write_bytes(path, f"{num_classes},{size[0]},{size[1]}\n".encode())
