"""A gallery folder on disk, and the checks that make reading one safe.

The folder holds ``gallery.json`` (format, version, model fingerprint, index settings, people,
the name and SHA-256 of the data file) and one data file ``gallery-<generation>.npz``
(uncompressed arrays: names, per-person image counts, embeddings, FAISS ids, the next free id
and the serialised index). A save writes a new data file, then atomically replaces
``gallery.json`` to point at it: an interrupted save leaves the previous gallery intact.

Reading trusts nothing in the folder: every field is type- and range-checked, the data file
must be a plain ``gallery-<n>.npz`` file inside the folder, its SHA-256 must match, each array's
declared size is checked against the bytes that hold it before anything is allocated (no
pickles), and counts, ids and values must agree. Any failure is a FormatError naming the file.
Format version 1 (no checksum) still loads, with a warning; the next save upgrades it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tokenize
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from faceforge.errors import DataError, FormatError
from faceforge.files import atomic_write_bytes
from faceforge.inference.matching.gallery_json import (
    DATA_FILE,
    FIX,
    GALLERY_FORMAT,
    GALLERY_VERSION,
    METADATA_FILE,
    GalleryData,
    Header,
    read_header,
)
from faceforge.inference.matching.index import read_index

_ARRAYS = ("names", "counts", "embeddings", "ids", "next_id", "index")
# what damaged zip and .npy headers raise: zipfile also raises NotImplementedError (claims of
# multi-disk archives, unknown compression), numpy's header parser lets tokenize's error out
_UNREADABLE = (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, tokenize.TokenError)


# ----------------------------------------------------------------------------- writing
def write_gallery(directory: str | Path, data: GalleryData) -> int:
    """Store ``data`` in ``directory`` (created if needed) crash-safely, deleting the previous
    data file; returns the new generation. Callers hold the gallery lock (see
    :mod:`~faceforge.inference.matching.lock`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(data.embeddings)
    empty = np.zeros((0, data.embedding_size), np.float32)
    arrays = {
        "names": np.asarray(names, dtype=str),
        "counts": np.asarray([len(data.embeddings[n]) for n in names], dtype=np.int64),
        "embeddings": np.concatenate([data.embeddings[n] for n in names]) if names else empty,
        "ids": np.asarray([i for n in names for i in data.ids[n]], dtype=np.int64),
        "next_id": np.asarray(data.next_id, dtype=np.int64),
        "index": faiss.serialize_index(data.index),
    }
    buffer = _npz_bytes(arrays)
    generation = max(data.generation, _newest_generation(directory)) + 1
    data_file = f"gallery-{generation:06d}.npz"
    atomic_write_bytes(directory / data_file, buffer)
    meta = {
        "format": GALLERY_FORMAT,
        "version": GALLERY_VERSION,
        "model": {
            "fingerprint": data.fingerprint,
            "embedding_size": data.embedding_size,
            "description": data.model,
        },
        "index": {"type": data.index_type, **asdict(data.settings)},
        "mode": data.mode,
        "data_file": data_file,
        "data_sha256": hashlib.sha256(buffer).hexdigest(),
        "people": {name: len(data.embeddings[name]) for name in names},
    }
    text = json.dumps(meta, indent=2, sort_keys=True)
    atomic_write_bytes(directory / METADATA_FILE, text.encode())
    for stale in directory.glob("gallery-*.npz"):
        if stale.name != data_file:
            stale.unlink(missing_ok=True)
    return generation


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _newest_generation(directory: Path) -> int:
    found = (DATA_FILE.fullmatch(p.name) for p in directory.glob("gallery-*.npz"))
    return max((int(m.group(1)) for m in found if m), default=0)


# ----------------------------------------------------------------------------- reading
def check_no_orphans(directory: Path) -> None:
    """FormatError when ``directory`` holds gallery data files but no ``gallery.json``: a
    new gallery there would delete them on its first save."""
    orphans = sorted(p.name for p in directory.glob("gallery-*.npz"))
    if orphans:
        raise FormatError(
            f"{directory}: holds gallery data ({orphans[-1]}) but no {METADATA_FILE}; restore "
            f"{METADATA_FILE} from a backup, or move the data files away to start a new gallery"
        )


def read_gallery(directory: str | Path) -> GalleryData:
    """The gallery stored in ``directory``, fully checked (see the module docs).

    Raises DataError when there is no gallery, FormatError when it is damaged, edited or
    not a faceforge gallery. Needs no lock: saves replace files atomically, and a data file
    deleted by a save after ``gallery.json`` was read is followed to the one the save wrote.
    """
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        check_no_orphans(directory)
        raise DataError(f"{directory}: no gallery here ({METADATA_FILE} missing); enroll first")
    header = read_header(meta_path)
    file = _open_data(directory / header.data_file)
    while file is None:
        newer = read_header(meta_path)
        if newer.data_file == header.data_file:
            raise FormatError(
                f"{directory / header.data_file}: the gallery data file named by "
                f"{METADATA_FILE} is missing (incomplete copy?); {FIX}"
            )
        header, file = newer, _open_data(directory / newer.data_file)
    data_path = directory / header.data_file
    with file:
        arrays = _read_arrays(file, data_path, header)
    _fill(header.data, arrays, header.people, data_path)
    return header.data


def _open_data(path: Path) -> BinaryIO | None:
    """The data file opened for reading; ``None`` when it does not exist."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FormatError(
            f"{path}: the gallery data file is not a regular file (a link, folder or device); {FIX}"
        )
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _read_arrays(file: BinaryIO, path: Path, header: Header) -> dict[str, np.ndarray]:
    """The arrays of the data file, after its checksum and every declared size are checked."""
    data = header.data
    images = sum(header.people.values())
    size = os.fstat(file.fileno()).st_size
    needed = images * data.embedding_size * 4
    if needed > size:
        raise FormatError(
            f"{path}: {METADATA_FILE} declares {images} embeddings of size "
            f"{data.embedding_size} ({needed} bytes) but the file has {size} bytes "
            f"(truncated?); {FIX}"
        )
    if header.sha256 is not None and _sha256(file) != header.sha256:
        raise FormatError(
            f"{path}: the gallery data was modified or corrupted (its SHA-256 does not "
            f"match {METADATA_FILE}); {FIX}"
        )
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            return {name: _member(archive, name, size, path) for name in _ARRAYS}
    except _UNREADABLE as exc:
        raise FormatError(f"{path}: cannot read gallery data ({exc}); {FIX}") from None


def _sha256(file: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _member(archive: zipfile.ZipFile, name: str, size: int, path: Path) -> np.ndarray:
    """One ``.npy`` member, its header checked against the bytes stored before reading."""
    from numpy.lib import format as npy

    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise FormatError(f"{path}: no {name!r} array in the gallery data; {FIX}") from None
    encrypted = info.flag_bits & 0x1
    outside = not 0 <= info.header_offset < size or info.file_size > size
    if encrypted or outside or info.compress_type != zipfile.ZIP_STORED:
        raise FormatError(f"{path}: array {name!r} is not stored as faceforge writes it; {FIX}")
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    with archive.open(info) as member:
        reader = readers.get(npy.read_magic(member))
        if reader is None:
            raise FormatError(f"{path}: array {name!r} has an unknown .npy version; {FIX}")
        shape, _, dtype = reader(member)
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if dtype.hasobject or declared > info.file_size:
        raise FormatError(
            f"{path}: array {name!r} declares {shape} {dtype} values, more than the "
            f"{info.file_size} bytes stored (damaged gallery); {FIX}"
        )
    with archive.open(info) as member:
        return npy.read_array(member, allow_pickle=False)


def _fill(
    data: GalleryData, arrays: dict[str, np.ndarray], people: dict[str, int], path: Path
) -> None:
    """Split the arrays into ``data``'s people, after checking that they agree with each other
    and with ``gallery.json``."""
    names, counts, embeddings = arrays["names"], arrays["counts"], arrays["embeddings"]
    ids, next_id, index = arrays["ids"], arrays["next_id"], arrays["index"]
    damaged = f"{path}: the gallery data does not match {METADATA_FILE} (damaged gallery); {FIX}"
    if names.dtype.kind != "U" or names.ndim != 1 or counts.shape != names.shape:
        raise FormatError(damaged)
    stored = dict(zip(names.tolist(), counts.tolist(), strict=True))
    if counts.dtype.kind != "i" or stored != people or len(stored) != len(names):
        raise FormatError(damaged)  # a person missing, added, recounted or repeated
    images, dim = int(counts.sum()), data.embedding_size
    if embeddings.dtype != np.float32 or embeddings.shape != (images, dim):
        raise FormatError(
            f"{path}: embeddings are {embeddings.dtype} {embeddings.shape}, expected float32 "
            f"({images}, {dim}) for the people in {METADATA_FILE}; {FIX}"
        )
    if not np.isfinite(embeddings).all():
        raise FormatError(f"{path}: embeddings contain NaN or infinite values; {FIX}")
    entries = counts.tolist() if data.mode == "all" else [1] * len(names)
    if ids.dtype.kind != "i" or ids.shape != (sum(entries),):
        raise FormatError(damaged)
    if next_id.dtype.kind != "i" or next_id.shape != ():
        raise FormatError(damaged)
    if index.dtype != np.uint8 or index.ndim != 1:
        raise FormatError(damaged)
    id_list, next_free = ids.tolist(), int(next_id)
    if len(set(id_list)) < len(id_list) or any(not 0 <= i < next_free for i in id_list):
        raise FormatError(f"{path}: FAISS ids are negative, repeated or not below next_id; {FIX}")
    start_e = start_i = 0
    for name, count, entry in zip(names.tolist(), counts.tolist(), entries, strict=True):
        data.embeddings[name] = embeddings[start_e : start_e + count]
        data.ids[name] = id_list[start_i : start_i + entry]
        start_e, start_i = start_e + count, start_i + entry
    data.next_id = next_free
    try:
        data.index = read_index(index, data.index_type, dim, ids)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}; {FIX}") from None
