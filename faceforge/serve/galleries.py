"""The FAISS galleries of one server, built from the store at start and kept in step with it
by following its change feed (every ``interval`` seconds, and right after this server's own
writes, so a write is searchable here before it is acknowledged)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from faceforge.errors import DataError
from faceforge.inference.matching.gallery import Gallery, Match
from faceforge.serve.store import Change, ConflictError, GalleryInfo, NotFoundError, SqlStore

_log = logging.getLogger(__name__)


@dataclass
class _Guarded:
    """One gallery and the lock its searches and edits take: a gallery rebuilding its index
    (an HNSW graph after a removal: seconds at a million faces) holds up its own searches
    only, never another gallery's."""

    gallery: Gallery
    lock: threading.Lock = field(default_factory=threading.Lock)


class Galleries:
    """In-memory :class:`Gallery` objects mirroring ``store`` for one model.

    The database is read outside the galleries' locks, so a search never waits for the
    database; one sync runs at a time, applying changes in feed order."""

    def __init__(self, store: SqlStore, fingerprint: str, embedding_size: int) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.embedding_size = embedding_size
        self._lock = threading.Lock()  # guards the dict; each gallery has its own lock
        self._syncing = threading.Lock()
        self._galleries: dict[str, _Guarded] = {}
        self.seq = store.last_seq()
        for info in store.galleries():
            self._galleries[info.name] = _Guarded(self._built(info))

    def _built(self, info: GalleryInfo) -> Gallery:
        gallery = Gallery(
            info.embedding_size,
            info.fingerprint,
            index_type=info.index_type,
            mode=info.mode,
            model=info.model,
        )
        for person, vectors in self.store.faces(info.name).items():
            try:
                gallery.add(person, vectors)
            except DataError as exc:  # stored by an older server that let the name through
                _log.warning("gallery %r: %s is passed over", info.name, exc)
        return gallery

    def sync(self) -> int:
        """Apply the store's changes since the last sync; the number applied. A change
        that cannot be applied (written by an older server that let a name through) is
        logged and passed over: the feed must not stop at it."""
        with self._syncing:
            changes = self.store.changes_since(self.seq)
            for change in changes:
                try:
                    self._apply(change)
                except DataError as exc:
                    _log.warning(
                        "change %d of gallery %r passed over: %s", change.seq, change.gallery, exc
                    )
                self.seq = change.seq
        return len(changes)

    def _apply(self, change: Change) -> None:
        if change.person is None:  # the gallery was created or deleted
            info = self.store.gallery(change.gallery)
            gallery = None if info is None else self._built(info)
            with self._lock:
                self._galleries.pop(change.gallery, None)
                if gallery is not None:
                    self._galleries[change.gallery] = _Guarded(gallery)
            return
        vectors = self.store.faces(change.gallery, change.person).get(change.person)
        with self._lock:
            guarded = self._galleries.get(change.gallery)
        if guarded is None:
            return
        with guarded.lock:
            if change.person in guarded.gallery:
                guarded.gallery.remove(change.person)
            if vectors is not None:
                guarded.gallery.add(change.person, vectors)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._galleries)

    def people(self, name: str) -> dict[str, int]:
        """person -> number of enrolled faces."""
        guarded = self._known(name)
        with guarded.lock:
            gallery = guarded.gallery
            return {person: gallery.num_images(person) for person in gallery.names}

    def check(self, name: str) -> Gallery:
        """The gallery, refused (ConflictError) when another model built it."""
        gallery = self._known(name).gallery
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
            guarded = self._get(name)
        with guarded.lock:
            return guarded.gallery.search(queries, top_k)

    def _known(self, name: str) -> _Guarded:
        """Gallery ``name``; one this server has not seen yet is looked for in the store's
        changes first: another server (or worker) may have just made it, and a client that
        created it there may use it here at once."""
        with self._lock:
            guarded = self._galleries.get(name)
        if guarded is None:
            self.sync()
            with self._lock:
                guarded = self._get(name)
        return guarded

    def _get(self, name: str) -> _Guarded:
        guarded = self._galleries.get(name)
        if guarded is None:
            raise NotFoundError(f"there is no gallery {name!r}")
        return guarded
