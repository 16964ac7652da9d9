"""The embedded store: one SQLite file in WAL mode (readers never wait for the writer)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from faceforge.errors import ConfigError
from faceforge.serve.store import SqlStore


class SqliteStore(SqlStore):
    """``sqlite:///PATH`` (a relative path after the three slashes, ``////`` for absolute).

    SQLite lets one transaction write at a time, so the change feed needs no extra lock; a
    writing transaction takes the write lock at its start (``BEGIN IMMEDIATE``), so it never
    upgrades from reading into a deadlock, while reading ones (``BEGIN``) never wait for it;
    ``synchronous=FULL`` makes a commit durable. A database still locked after 30 s is
    :class:`~faceforge.serve.store.StoreUnavailable`.
    """

    begin_read = "BEGIN"
    begin_write = "BEGIN IMMEDIATE"
    unavailable = (sqlite3.OperationalError,)

    def __init__(self, url: str, pool: int = 4) -> None:
        path = Path(url.partition("://")[2].removeprefix("/"))
        if not path.parent.is_dir():
            raise ConfigError(f"--store {url!r}: folder {path.parent} does not exist")
        self.path = path
        super().__init__(self._open, pool)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return _Explicit(conn)


class _Explicit:
    """A SQLite connection in autocommit mode whose transactions the store begins and
    ends itself (Python's sqlite3 would otherwise begin them implicitly, deferred)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> sqlite3.Cursor:
        return self._conn.cursor()

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()
