"""The database behind the service: galleries, enrolled face embeddings, a change feed and
hashed API keys, in SQLite (embedded, WAL) or PostgreSQL (shared by many servers).

Both run the same SQL through :class:`SqlStore`; a backend supplies connections, its column
types and how it serialises writers. Every write is one transaction that also appends a row
to ``changes``, whose increasing ``seq`` is the change feed servers follow: writers are
serialised until commit, so sequence order is commit order and no reader can skip a row.

>>> store = open_store("sqlite:///var/faces.db")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import queue
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from faceforge.errors import ConfigError, DataError, FaceforgeError, first_line
from faceforge.registry import Registry

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS galleries (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
    "embedding_size INTEGER NOT NULL, model TEXT NOT NULL, index_type TEXT NOT NULL, "
    "mode TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS faces (id {serial}, gallery TEXT NOT NULL, "
    "person TEXT NOT NULL, vector {blob} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS faces_person ON faces (gallery, person)",
    "CREATE TABLE IF NOT EXISTS changes (seq {serial}, gallery TEXT NOT NULL, person TEXT)",
    "CREATE TABLE IF NOT EXISTS api_keys (digest TEXT PRIMARY KEY, name TEXT NOT NULL)",
)


class NotFoundError(DataError):
    """A gallery or person the request names does not exist (HTTP 404)."""


class ConflictError(DataError):
    """The request contradicts what is stored (HTTP 409): a gallery exists, another model."""


class StoreUnavailable(FaceforgeError):
    """The database cannot be reached or is busy (HTTP 503: try again)."""


#: what a gallery or person name may not hold: a slash (a name is one URL path segment) or a
#: control character (NUL, which PostgreSQL refuses, tabs, line breaks)
_UNUSABLE = re.compile(r"[/\x00-\x1f\x7f]")
MAX_NAME = 200


def check_name(name: str, what: str) -> str:
    """``name`` of a gallery or person, refused (DataError) where the API could not address
    it: empty, with spaces around it, a slash or a control character, ``.`` or ``..`` (URL
    clients resolve them away), not UTF-8 (a lone surrogate), over 200 characters. Checked
    before anything is written, since every server replays what was written."""
    if not name.strip():
        raise DataError(f"a {what} needs a non-empty name")
    if name != name.strip():
        raise DataError(f"{what} name {name!r} starts or ends with spaces")
    if _UNUSABLE.search(name):
        raise DataError(f"{what} name {name!r} holds a slash or a control character")
    if name in (".", ".."):
        raise DataError(f"{what} name {name!r} is a path step URLs cannot hold")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{what} name {name!r} is not UTF-8 text") from None
    if len(name) > MAX_NAME:
        raise DataError(f"{what} name of {len(name)} characters: at most {MAX_NAME}")
    return name


@dataclass(frozen=True)
class GalleryInfo:
    """A gallery's settings and the model whose embeddings it holds."""

    name: str
    fingerprint: str
    embedding_size: int
    model: str
    index_type: str = "flat"
    mode: str = "mean"


@dataclass(frozen=True)
class Change:
    """One committed write: ``person`` changed in ``gallery`` (``None``: the gallery itself
    was created or deleted)."""

    seq: int
    gallery: str
    person: str | None


class SqlStore:
    """The store's queries, on connections from ``connect`` (``pool`` of them are kept).

    ``serial``/``blob`` are the backend's auto-increment key and binary column types,
    ``placeholder`` its parameter marker, ``lock_writers`` the statement that serialises
    writing transactions until they commit (empty when the database does itself),
    ``begin_read``/``begin_write`` the statements that open a transaction (empty where the
    driver opens it), ``unavailable`` the driver's errors of a lost or busy database.
    """

    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob = "BLOB"
    placeholder = "?"
    lock_writers = ""
    begin_read = begin_write = ""
    unavailable: tuple[type[Exception], ...] = ()

    def __init__(self, connect: Callable[[], Any], pool: int = 4) -> None:
        self._connect = connect
        #: idle connections, and a ``None`` for each one not made yet (or thrown away)
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(pool):
            self._idle.put(None)
        with self._transaction(write=True) as cur:
            if self.lock_writers:  # two servers starting at once create the tables once
                cur.execute(self.lock_writers)
            for statement in SCHEMA:
                cur.execute(statement.format(serial=self.serial, blob=self.blob))

    # -------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Any]:
        """A cursor in one transaction: committed when the block ends, rolled back on error.
        A connection that broke (the database restarted) is thrown away, not pooled, and
        the error is a :class:`StoreUnavailable`."""
        conn = self._take()
        try:
            cur = conn.cursor()
            begin = self.begin_write if write else self.begin_read
            if begin:
                cur.execute(begin)
            yield cur
            conn.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a broken connection cannot roll back
                conn.rollback()
            if self._broken(conn):
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            if isinstance(exc, self.unavailable):
                raise StoreUnavailable(f"the store is unavailable: {first_line(exc)}") from None
            raise
        finally:
            self._idle.put(conn)

    def _take(self) -> Any:
        conn = self._idle.get()
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                self._idle.put(None)
                raise
        return conn

    def _broken(self, conn: Any) -> bool:
        """Whether ``conn`` can no longer be used (the backend knows how to tell)."""
        return False

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _write(self, cur: Any, gallery: str, person: str | None) -> None:
        """Serialise writers, then append the change row (inside the caller's transaction)."""
        if self.lock_writers:
            cur.execute(self.lock_writers)
        cur.execute(
            self._sql("INSERT INTO changes (gallery, person) VALUES (?, ?)"), (gallery, person)
        )

    def close(self) -> None:
        """Close the idle connections."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------- galleries
    def create_gallery(self, info: GalleryInfo) -> None:
        """Store a new gallery (ConflictError when the name is taken)."""
        check_name(info.name, "gallery")
        with self._transaction(write=True) as cur:
            self._write(cur, info.name, None)
            if self._gallery_row(cur, info.name) is not None:
                raise ConflictError(f"gallery {info.name!r} exists already")
            cur.execute(
                self._sql("INSERT INTO galleries VALUES (?, ?, ?, ?, ?, ?)"),
                (
                    info.name,
                    info.fingerprint,
                    info.embedding_size,
                    info.model,
                    info.index_type,
                    info.mode,
                ),
            )

    def delete_gallery(self, name: str) -> None:
        """Forget a gallery and its faces (NotFoundError when there is none)."""
        check_name(name, "gallery")  # PostgreSQL refuses a NUL with a driver error
        with self._transaction(write=True) as cur:
            self._write(cur, name, None)
            cur.execute(self._sql("DELETE FROM galleries WHERE name = ?"), (name,))
            if cur.rowcount == 0:
                raise NotFoundError(f"there is no gallery {name!r}")
            cur.execute(self._sql("DELETE FROM faces WHERE gallery = ?"), (name,))

    def gallery(self, name: str) -> GalleryInfo | None:
        """The settings of gallery ``name``, ``None`` when it does not exist."""
        with self._transaction() as cur:
            row = self._gallery_row(cur, name)
        return None if row is None else GalleryInfo(*row)

    def galleries(self) -> list[GalleryInfo]:
        with self._transaction() as cur:
            cur.execute("SELECT * FROM galleries ORDER BY name")
            return [GalleryInfo(*row) for row in cur.fetchall()]

    def _gallery_row(self, cur: Any, name: str) -> tuple | None:
        cur.execute(self._sql("SELECT * FROM galleries WHERE name = ?"), (name,))
        return cur.fetchone()

    # ---------------------------------------------------------------- people
    def add_faces(self, gallery: str, person: str, vectors: np.ndarray, fingerprint: str) -> None:
        """Enroll (k, D) float32 ``vectors`` of the model ``fingerprint`` under ``person``,
        all or nothing; refused when the gallery holds another model's embeddings (it may
        have been made again since the caller looked)."""
        check_name(person, "person")
        rows = [(gallery, person, np.asarray(v, "<f4").tobytes()) for v in vectors]
        with self._transaction(write=True) as cur:
            self._write(cur, gallery, person)
            row = self._gallery_row(cur, gallery)
            if row is None:
                raise NotFoundError(f"there is no gallery {gallery!r}")
            info = GalleryInfo(*row)
            if (info.fingerprint, info.embedding_size) != (fingerprint, np.shape(vectors)[1]):
                raise ConflictError(
                    f"gallery {gallery!r} holds embeddings of model {info.model} (fingerprint "
                    f"{info.fingerprint}), not of fingerprint {fingerprint}"
                )
            cur.executemany(
                self._sql("INSERT INTO faces (gallery, person, vector) VALUES (?, ?, ?)"), rows
            )

    def delete_person(self, gallery: str, person: str) -> None:
        """Remove every face of ``person`` (NotFoundError when there is none)."""
        check_name(gallery, "gallery")
        check_name(person, "person")
        with self._transaction(write=True) as cur:
            self._write(cur, gallery, person)
            cur.execute(
                self._sql("DELETE FROM faces WHERE gallery = ? AND person = ?"), (gallery, person)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"{person!r} is not enrolled in gallery {gallery!r}")

    def faces(self, gallery: str, person: str | None = None) -> dict[str, np.ndarray]:
        """person -> (k, D) float32 embeddings of ``gallery`` (of one ``person`` if given)."""
        query, params = "SELECT person, vector FROM faces WHERE gallery = ?", [gallery]
        if person is not None:
            query, params = query + " AND person = ?", [gallery, person]
        with self._transaction() as cur:
            cur.execute(self._sql(query + " ORDER BY id"), params)
            rows = cur.fetchall()
        grouped: dict[str, list[np.ndarray]] = {}
        for name, blob in rows:
            grouped.setdefault(name, []).append(np.frombuffer(bytes(blob), "<f4"))
        return {name: np.stack(vectors) for name, vectors in grouped.items()}

    # ----------------------------------------------------------- change feed
    def changes_since(self, seq: int) -> list[Change]:
        """Committed changes after ``seq``, oldest first."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("SELECT seq, gallery, person FROM changes WHERE seq > ? ORDER BY seq"),
                (seq,),
            )
            return [Change(*row) for row in cur.fetchall()]

    def last_seq(self) -> int:
        with self._transaction() as cur:
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM changes")
            return int(cur.fetchone()[0])

    # --------------------------------------------------------------- API keys
    def add_api_key(self, digest: str, name: str) -> None:
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("INSERT INTO api_keys VALUES (?, ?)"), (digest, name))

    def api_key_name(self, digest: str) -> str | None:
        """The name of the key with this digest, ``None`` when there is none."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT name FROM api_keys WHERE digest = ?"), (digest,))
            row = cur.fetchone()
        return None if row is None else row[0]

    def api_key_count(self) -> int:
        with self._transaction() as cur:
            cur.execute("SELECT COUNT(*) FROM api_keys")
            return int(cur.fetchone()[0])


def _sqlite(location: str, pool: int) -> SqlStore:
    from faceforge.serve.sqlite_store import SqliteStore

    return SqliteStore(location, pool)


def _postgresql(location: str, pool: int) -> SqlStore:
    from faceforge.serve.postgres_store import PostgresStore

    return PostgresStore(location, pool)


#: URL scheme -> store factory of (URL, connection pool size)
STORES: Registry[SqlStore] = Registry.of(
    "store", {"sqlite": _sqlite, "postgresql": _postgresql, "postgres": _postgresql}
)


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and start lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(url: str, pool: int = 4) -> SqlStore:
    """The store ``url`` names: ``sqlite:///PATH`` or ``postgresql://user@host:port/db``."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(
            f"--store {url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
    return STORES.get(scheme, field="--store")(url, pool)
