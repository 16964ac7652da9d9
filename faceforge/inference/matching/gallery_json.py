"""``gallery.json``, the description of a gallery folder, read as untrusted input: every
field is type- and range-checked (see :mod:`~faceforge.inference.matching.storage`)."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from faceforge.errors import FormatError
from faceforge.inference.matching.index import INDEX_TYPES, IndexSettings

GALLERY_FORMAT = "faceforge-gallery"
#: 2: the data file's SHA-256 is stored and checked (version 1 galleries load without it)
GALLERY_VERSION = 2
METADATA_FILE = "gallery.json"
#: how a person is stored: the mean of their embeddings, or every embedding
MODES = ("mean", "all")
#: limits on what a gallery file may declare (far above any real gallery)
MAX_METADATA_BYTES = 256 << 20
MAX_EMBEDDING_SIZE = 1 << 16
MAX_HNSW_M = 1024
#: the only data file names a gallery may point to: plain names inside its own folder
DATA_FILE = re.compile(r"gallery-(\d{1,12})\.npz")
FIX = "restore the gallery from a backup or enroll the people again"


@dataclass
class GalleryData:
    """Everything a gallery folder stores, as :func:`read_gallery` returns it (checked)."""

    fingerprint: str
    embedding_size: int
    model: str
    index_type: str
    settings: IndexSettings
    mode: str
    #: name -> (k, D) float32 unit embeddings
    embeddings: dict[str, np.ndarray]
    #: name -> FAISS ids of the person's index vectors (one in ``mean`` mode, k in ``all``)
    ids: dict[str, list[int]]
    next_id: int
    #: the ID-mapped FAISS index of the people's vectors (``None`` until read)
    index: faiss.Index | None
    #: the number in the data file's name; each save writes the next one
    generation: int = 0


@dataclass(frozen=True)
class Header:
    """The checked content of ``gallery.json``."""

    data: GalleryData
    people: dict[str, int]
    data_file: str
    sha256: str | None


def read_header(path: Path) -> Header:
    """The checked content of ``gallery.json`` at ``path`` (FormatError naming the field)."""
    size = path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise FormatError(f"{path}: {size} bytes is too large for a gallery file; {FIX}")
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, absurd nesting
        raise FormatError(f"{path}: not a faceforge gallery file ({exc}); {FIX}") from None
    if not isinstance(meta, dict) or meta.get("format") != GALLERY_FORMAT:
        raise FormatError(f"{path}: not a faceforge gallery file (no format {GALLERY_FORMAT!r})")
    version = _field(meta, "version", int, path)
    if version > GALLERY_VERSION:
        raise FormatError(
            f"{path}: gallery format version {version} is newer than this faceforge "
            f"understands ({GALLERY_VERSION}); upgrade faceforge"
        )
    data_file = _field(meta, "data_file", str, path)
    match = DATA_FILE.fullmatch(data_file)
    if match is None:
        raise FormatError(
            f"{path}: data_file {data_file!r} is not a gallery-<number>.npz file inside the "
            f"gallery folder (edited or not a faceforge gallery); {FIX}"
        )
    return Header(
        data=_gallery_fields(meta, path, int(match.group(1))),
        people=_people(meta, path),
        data_file=data_file,
        sha256=_checksum(meta, version, path),
    )


def _gallery_fields(meta: dict[str, Any], path: Path, generation: int) -> GalleryData:
    index_type = _field(meta, "index.type", str, path)
    if index_type not in INDEX_TYPES:
        raise FormatError(f"{path}: unknown index type {index_type!r}; {FIX}")
    mode = _field(meta, "mode", str, path)
    if mode not in MODES:
        raise FormatError(f"{path}: unknown mode {mode!r} (expected one of {MODES}); {FIX}")
    settings = IndexSettings(
        nlist=_field(meta, "index.nlist", int, path, (0, 1 << 31)),
        nprobe=_field(meta, "index.nprobe", int, path, (1, 1 << 31)),
        hnsw_m=_field(meta, "index.hnsw_m", int, path, (1, MAX_HNSW_M)),
        rerank=_field(
            meta, "index.rerank", int, path, (1, MAX_HNSW_M), default=IndexSettings.rerank
        ),
    )
    return GalleryData(
        fingerprint=_field(meta, "model.fingerprint", str, path),
        embedding_size=_field(meta, "model.embedding_size", int, path, (1, MAX_EMBEDDING_SIZE)),
        model=_field(meta, "model.description", str, path, default=""),
        index_type=index_type,
        settings=settings,
        mode=mode,
        embeddings={},
        ids={},
        next_id=0,
        index=None,
        generation=generation,
    )


def _people(meta: dict[str, Any], path: Path) -> dict[str, int]:
    people = _field(meta, "people", dict, path)
    for name, count in people.items():
        if not name.strip() or not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FormatError(
                f"{path}: people entry {name!r}: {count!r} is not a positive image count; {FIX}"
            )
    return people


def _checksum(meta: dict[str, Any], version: int, path: Path) -> str | None:
    if version >= 2:
        digest = _field(meta, "data_sha256", str, path)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FormatError(f"{path}: data_sha256 is not a SHA-256 hex digest; {FIX}")
        return digest
    warnings.warn(
        f"{path}: gallery format version {version} has no checksum, so damage to its data "
        "cannot be detected; the next enroll into it adds one",
        stacklevel=2,
    )
    return None


_KINDS = {int: "an integer", str: "a string", dict: "an object"}


def _field(
    meta: dict[str, Any],
    dotted: str,
    kind: type,
    path: Path,
    bounds: tuple[int, int] | None = None,
    default: Any = None,
) -> Any:
    """``meta[a][b]`` for ``dotted="a.b"``, checked to be a ``kind`` (within ``bounds``)."""
    value: Any = meta
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None and default is not None:
        return default
    wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    if not wrong and bounds is not None:
        wrong = not bounds[0] <= value <= bounds[1]
    if wrong:
        expected = _KINDS[kind] + (f" in [{bounds[0]}, {bounds[1]}]" if bounds else "")
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        raise FormatError(f"{path}: field {dotted} must be {expected}, got {shown}; {FIX}")
    return value
