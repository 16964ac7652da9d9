"""The label cache: a :class:`~faceforge.data.recordio.catalog.Catalog` saved beside the
data (``train.labels.npz``), so that a 5M-image ``.rec`` is scanned once, not on every start.

It is an uncompressed ``.npz`` (read with ``allow_pickle=False``) holding the catalogue's
arrays and a ``stamp``: format version, ``.idx`` and ``.rec`` sizes and mtimes (ns). Any
mismatch, or a cache that cannot be read, means the catalogue is rebuilt; a folder that
cannot be written only costs the scan again next time.
"""

from __future__ import annotations

import warnings

import numpy as np

from faceforge.data.recordio.catalog import Catalog, build_catalog
from faceforge.data.recordio.index import RecordFiles
from faceforge.files import atomic_open

VERSION = 2
_ARRAYS = ("keys", "offsets", "spans", "labels")


def stamp(files: RecordFiles) -> np.ndarray:
    """What the cache must match: version, ``.idx`` and ``.rec`` sizes and mtimes."""
    idx, rec = files.idx.stat(), files.rec.stat()
    fields = [VERSION, idx.st_size, idx.st_mtime_ns, rec.st_size, rec.st_mtime_ns]
    return np.array(fields, np.int64)


def load_cached(files: RecordFiles) -> Catalog | None:
    """The cached catalogue, or None when there is none or it does not match the files."""
    try:
        with np.load(files.labels, allow_pickle=False) as data:
            if not np.array_equal(data["stamp"], stamp(files)):
                return None
            arrays = [data[name] for name in _ARRAYS]
            header = bool(data["header"])
    except Exception:  # a damaged cache is only a cache: build the catalogue again
        return None
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1 or any(a.dtype != np.int64 or a.ndim != 1 for a in arrays):
        return None
    return Catalog(*arrays, header=header)


def save_cached(files: RecordFiles, catalog: Catalog, file_stamp: np.ndarray) -> None:
    """Write the cache atomically; a read-only dataset folder only earns a warning."""
    arrays = {name: getattr(catalog, name) for name in _ARRAYS}
    try:
        with atomic_open(files.labels) as f:
            np.savez(f, stamp=file_stamp, header=np.array(catalog.header), **arrays)
    except OSError as exc:
        warnings.warn(
            f"{files.labels}: cannot write the label cache ({exc.strerror or exc}); the next "
            "open scans the records again",
            stacklevel=3,
        )


def open_catalog(files: RecordFiles, skip_corrupt: bool = False, cache: bool = True) -> Catalog:
    """The catalogue from the label cache when it matches, else built (and cached, unless
    corrupt records were left out: those are looked at again next time)."""
    files.check()
    if cache and (catalog := load_cached(files)) is not None:
        return catalog
    before = stamp(files)
    catalog = build_catalog(files, skip_corrupt)
    if cache and not catalog.skipped and np.array_equal(before, stamp(files)):
        save_cached(files, catalog, before)
    return catalog
