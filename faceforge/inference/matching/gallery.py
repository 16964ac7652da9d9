"""A face gallery for 1:N identification: enrolled people, a FAISS index, persisted safely.

Embeddings are L2-normalised, so inner product is cosine similarity. The index is exact
(``flat``) by default; ``ivf`` (inverted lists) and ``hnsw`` (graph) trade exactness for speed
on large galleries (see :mod:`~faceforge.inference.matching.index`). Each person is stored
either as the normalised mean of their embeddings (``mode="mean"``, one vector per person) or
as every embedding (``mode="all"``, a query scores a person by their closest image).

The gallery keeps every enrolled embedding, so people can be added or removed without
re-embedding anyone: flat and IVF indexes are updated in place; an HNSW graph or a PQ index
cannot delete vectors and is rebuilt from the stored embeddings after a removal.

On disk a gallery is a folder (:mod:`~faceforge.inference.matching.storage`: checksummed,
checked on load, crash-safe saves) that processes share through a lock
(:mod:`~faceforge.inference.matching.lock`); :func:`edit_gallery` loads, edits and saves one
under that lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from faceforge.core.vectors import l2_normalize
from faceforge.errors import CheckpointError, ConfigError, DataError
from faceforge.inference.matching.gallery_json import METADATA_FILE, MODES, GalleryData
from faceforge.inference.matching.index import (
    APPEND_ONLY,
    INDEX_TYPES,
    IndexSettings,
    apply_settings,
    build_index,
    needs_retraining,
)
from faceforge.inference.matching.lock import gallery_lock
from faceforge.inference.matching.storage import check_no_orphans, read_gallery, write_gallery

__all__ = ["METADATA_FILE", "MODES", "Gallery", "Match", "edit_gallery", "load_or_create"]


@dataclass(frozen=True)
class Match:
    """One gallery person returned by a search, with their cosine similarity to the query."""

    name: str
    score: float


class Gallery:
    """Enrolled people searchable by face embedding.

    ``index_type`` is an :data:`~faceforge.inference.matching.index.INDEX_TYPES` name tuned by
    ``nlist``, ``nprobe``, ``hnsw_m`` and ``rerank`` (see :class:`IndexSettings`); ``mode`` is
    one of :data:`MODES` (see the module docs). A trained index (IVF, PQ) is rebuilt when the
    gallery has outgrown what it was trained on.

    >>> gallery = Gallery(embedding_size=512, fingerprint=embedder.fingerprint)  # doctest: +SKIP
    >>> gallery.add("alice", embedder.embed(alice_faces))  # doctest: +SKIP
    >>> gallery.search(embedder.embed(query), top_k=1)  # doctest: +SKIP
    [[Match(name='alice', score=0.83)]]
    """

    def __init__(
        self,
        embedding_size: int,
        fingerprint: str,
        *,
        index_type: str = "flat",
        mode: str = "mean",
        model: str = "",
        nlist: int = 0,
        nprobe: int = 8,
        hnsw_m: int = 32,
        rerank: int = 8,
    ) -> None:
        INDEX_TYPES.get(index_type, field="index_type")
        if mode not in MODES:
            raise ValueError(f"gallery mode must be one of {MODES}, got {mode!r}")
        self.embedding_size = int(embedding_size)
        self.fingerprint = fingerprint
        self.index_type = index_type
        self.mode = mode
        self.model = model
        self.settings = IndexSettings(nlist, nprobe, hnsw_m, rerank)
        self._embeddings: dict[str, np.ndarray] = {}
        self._ids: dict[str, list[int]] = {}
        self._owner: dict[int, str] = {}
        self._next_id = 0
        self._index: faiss.Index | None = None
        self._trained_on = 0
        self._generation = 0

    # ----------------------------------------------------------------- people
    @property
    def names(self) -> list[str]:
        return sorted(self._embeddings)

    def __len__(self) -> int:
        return len(self._embeddings)

    def __contains__(self, name: object) -> bool:
        return name in self._embeddings

    def num_images(self, name: str) -> int:
        return len(self._embeddings[name])

    def embeddings(self, name: str) -> np.ndarray:
        """Every (k, D) unit-length embedding enrolled for ``name``."""
        return self._embeddings[name].copy()

    def check_model(self, fingerprint: str, embedding_size: int, where: str = "gallery") -> None:
        """Raise CheckpointError unless embeddings of this model can be compared with ours."""
        if fingerprint != self.fingerprint or embedding_size != self.embedding_size:
            raise CheckpointError(
                f"{where} was built with model {self.model or '?'} (fingerprint "
                f"{self.fingerprint}, {self.embedding_size}-d embeddings) but this model has "
                f"fingerprint {fingerprint} and {embedding_size}-d embeddings; embeddings of "
                "different models are not comparable: use the original model or enroll again"
            )

    def add(self, name: str, embeddings: np.ndarray) -> None:
        """Enroll ``name`` with (k, D) embeddings, or add them to an enrolled person."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim == 1:
            embeddings = embeddings[None]
        dim = self.embedding_size
        if embeddings.ndim != 2 or embeddings.shape[1] != dim or not len(embeddings):
            raise DataError(f"{name}: expected (k >= 1, {dim}) embeddings, got {embeddings.shape}")
        if not name or not name.strip():
            raise DataError("a gallery person needs a non-empty name")
        embeddings = l2_normalize(embeddings).astype(np.float32)
        previous = self._embeddings.get(name, embeddings[:0])
        self._embeddings[name] = np.concatenate([previous, embeddings])
        if self.mode == "mean":
            self._drop_from_index(name)  # the person's mean changes: replace its vector
            self._insert(name, self._index_vectors(name))
        else:
            self._ids.setdefault(name, [])
            self._insert(name, embeddings)

    def _insert(self, name: str, vectors: np.ndarray) -> None:
        ids = list(range(self._next_id, self._next_id + len(vectors)))
        self._next_id += len(vectors)
        self._ids[name].extend(ids)
        self._owner.update(dict.fromkeys(ids, name))
        if self._index is not None and needs_retraining(
            self.index_type, self._trained_on, len(self._owner)
        ):
            self._index = None  # rebuilt (retrained) when next needed
        if self._index is not None:
            self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, name: str) -> None:
        """Forget ``name`` (DataError if not enrolled)."""
        if name not in self._embeddings:
            raise DataError(f"{name!r} is not in the gallery")
        self._drop_from_index(name)
        del self._embeddings[name], self._ids[name]

    def _index_vectors(self, name: str) -> np.ndarray:
        """What the index holds for ``name``: every embedding, or their normalised mean."""
        embeddings = self._embeddings[name]
        if self.mode == "all":
            return embeddings
        return l2_normalize(embeddings.mean(axis=0, keepdims=True)).astype(np.float32)

    def _drop_from_index(self, name: str) -> None:
        ids = self._ids.get(name, [])
        for i in ids:
            del self._owner[i]
        if self._index is not None and ids:
            if self.index_type in APPEND_ONLY:
                self._index = None  # rebuilt from the stored embeddings when next needed
            else:
                self._index.remove_ids(np.asarray(ids, dtype=np.int64))
        self._ids[name] = []

    # ------------------------------------------------------------------ index
    def _build_index(self) -> faiss.Index:
        vectors = [self._index_vectors(n) for n in self.names]
        ids = [np.asarray(self._ids[n], dtype=np.int64) for n in self.names]
        data = np.concatenate(vectors) if vectors else np.zeros((0, self.embedding_size), "f4")
        ids_all = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        index = build_index(self.index_type, data, ids_all, self.settings)
        self._trained_on = len(data)  # an automatic IVF list count (nlist 0) is chosen anew
        return index

    def _ensure_index(self) -> faiss.Index:
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def search(self, queries: np.ndarray, top_k: int = 5) -> list[list[Match]]:
        """For each query embedding, up to ``top_k`` people by decreasing cosine similarity."""
        if top_k < 1:
            raise ConfigError(f"top_k is how many matches to return: at least 1, got {top_k}")
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.embedding_size:
            raise DataError(
                f"query embeddings must be (n, {self.embedding_size}), got {queries.shape}"
            )
        if not self._embeddings:
            return [[] for _ in queries]
        index = self._ensure_index()
        per_person = max(len(ids) for ids in self._ids.values())
        k = min(index.ntotal, top_k * per_person)
        scores, ids = index.search(l2_normalize(queries).astype(np.float32), k)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            best: dict[str, float] = {}
            for score, i in zip(row_scores.tolist(), row_ids.tolist(), strict=True):
                if i >= 0 and self._owner[i] not in best:
                    best[self._owner[i]] = score
            ranked = sorted(best.items(), key=lambda item: -item[1])[:top_k]
            results.append([Match(name, score) for name, score in ranked])
        return results

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Persist to ``directory`` (created if needed), crash-safely and under the gallery's
        lock (see :mod:`~faceforge.inference.matching.storage`)."""
        with gallery_lock(directory):
            self._write(directory)

    def _write(self, directory: str | Path) -> None:
        index = self._ensure_index()
        data = GalleryData(
            fingerprint=self.fingerprint,
            embedding_size=self.embedding_size,
            model=self.model,
            index_type=self.index_type,
            settings=self.settings,
            mode=self.mode,
            embeddings=self._embeddings,
            ids=self._ids,
            next_id=self._next_id,
            index=index,
            generation=self._generation,
        )
        self._generation = write_gallery(directory, data)

    @classmethod
    def load(cls, directory: str | Path) -> Gallery:
        """Read a gallery saved by :meth:`save` (no lock needed): DataError when there is
        none, FormatError when it is damaged, edited or not a gallery."""
        data = read_gallery(directory)
        gallery = cls(
            data.embedding_size,
            data.fingerprint,
            index_type=data.index_type,
            mode=data.mode,
            model=data.model,
            **asdict(data.settings),
        )
        gallery._embeddings, gallery._ids = data.embeddings, data.ids
        gallery._owner = {i: name for name, ids in data.ids.items() for i in ids}
        gallery._next_id, gallery._generation = data.next_id, data.generation
        if data.index is not None:  # else rebuilt from the embeddings when next needed
            gallery._index, gallery._trained_on = data.index, data.index.ntotal
            apply_settings(gallery._index, gallery.settings)
        return gallery


def load_or_create(
    directory: str | Path,
    embedding_size: int,
    fingerprint: str,
    *,
    model: str = "",
    **settings: Any,
) -> Gallery:
    """The gallery in ``directory`` checked against the model, or a new empty one."""
    return _open_or_new(Path(directory), embedding_size, fingerprint, model, settings)


@contextlib.contextmanager
def edit_gallery(
    directory: str | Path,
    embedding_size: int,
    fingerprint: str,
    *,
    model: str = "",
    **settings: Any,
) -> Iterator[Gallery]:
    """The gallery in ``directory`` (checked against the model, or a new one with
    ``settings``; a setting given as ``None`` is the stored gallery's or the default, and an
    index type or mode other than the stored gallery's is refused), locked for the ``with``
    block and saved when it ends.

    Concurrent editors wait for each other, so two enrollments into one gallery keep both
    sets of people; an exception in the block saves nothing and leaves the folder as it was.

    >>> with edit_gallery("gallery/", 512, embedder.fingerprint) as gallery:  # doctest: +SKIP
    ...     gallery.add("alice", embedder.embed(alice_faces))
    """
    with gallery_lock(directory):
        gallery = _open_or_new(Path(directory), embedding_size, fingerprint, model, settings)
        yield gallery
        gallery._write(directory)


def _open_or_new(
    directory: Path, embedding_size: int, fingerprint: str, model: str, settings: dict[str, Any]
) -> Gallery:
    """The gallery in ``directory`` or a new one; ``settings`` left ``None`` mean the stored
    gallery's (or the defaults), and one that differs from the stored gallery's is refused."""
    given = {key: value for key, value in settings.items() if value is not None}
    if (directory / METADATA_FILE).is_file():
        gallery = Gallery.load(directory)
        gallery.check_model(fingerprint, embedding_size, f"gallery {directory}")
        for key in ("index_type", "mode"):
            if given.get(key, getattr(gallery, key)) != getattr(gallery, key):
                raise ConfigError(
                    f"gallery {directory} keeps {key} {getattr(gallery, key)!r}, not "
                    f"{given[key]!r}: leave the option out, or enroll into a new folder"
                )
        return gallery
    check_no_orphans(directory)
    return Gallery(embedding_size, fingerprint, model=model, **given)
