"""The FAISS galleries of one server, built from the store at start and kept in step with it
by following its change feed (every ``interval`` seconds, and right after this server's own
writes, so a write is searchable here before it is acknowledged)."""

from __future__ import annotations

import threading

import numpy as np

from faceforge.inference.matching.gallery import Gallery, Match
from faceforge.serve.store import ConflictError, GalleryInfo, NotFoundError, SqlStore


class Galleries:
    """In-memory :class:`Gallery` objects mirroring ``store`` for one model."""

    def __init__(self, store: SqlStore, fingerprint: str, embedding_size: int) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.embedding_size = embedding_size
        self._lock = threading.Lock()
        self._galleries: dict[str, Gallery] = {}
        self.seq = store.last_seq()
        for info in store.galleries():
            self._load(info)

    def _load(self, info: GalleryInfo) -> None:
        gallery = Gallery(
            info.embedding_size,
            info.fingerprint,
            index_type=info.index_type,
            mode=info.mode,
            model=info.model,
        )
        for person, vectors in self.store.faces(info.name).items():
            gallery.add(person, vectors)
        self._galleries[info.name] = gallery

    def sync(self) -> int:
        """Apply the store's changes since the last sync; the number applied."""
        with self._lock:
            changes = self.store.changes_since(self.seq)
            for change in changes:
                if change.person is None:
                    self._galleries.pop(change.gallery, None)
                    info = self.store.gallery(change.gallery)
                    if info is not None:
                        self._load(info)
                elif change.gallery in self._galleries:
                    self._refresh(self._galleries[change.gallery], change.gallery, change.person)
                self.seq = change.seq
        return len(changes)

    def _refresh(self, gallery: Gallery, name: str, person: str) -> None:
        if person in gallery:
            gallery.remove(person)
        vectors = self.store.faces(name, person).get(person)
        if vectors is not None:
            gallery.add(person, vectors)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._galleries)

    def people(self, name: str) -> dict[str, int]:
        """person -> number of enrolled faces."""
        with self._lock:
            gallery = self._get(name)
            return {person: gallery.num_images(person) for person in gallery.names}

    def check(self, name: str) -> Gallery:
        """The gallery, refused (ConflictError) when another model built it."""
        with self._lock:
            gallery = self._get(name)
        if gallery.fingerprint != self.fingerprint:
            raise ConflictError(
                f"gallery {name!r} holds embeddings of model {gallery.model} (fingerprint "
                f"{gallery.fingerprint}); this server runs fingerprint {self.fingerprint}: "
                "serve the original model or enroll again in a new gallery"
            )
        return gallery

    def search(self, name: str, queries: np.ndarray, top_k: int) -> list[list[Match]]:
        self.check(name)
        with self._lock:
            return self._get(name).search(queries, top_k)

    def _get(self, name: str) -> Gallery:
        gallery = self._galleries.get(name)
        if gallery is None:
            raise NotFoundError(f"there is no gallery {name!r}")
        return gallery
