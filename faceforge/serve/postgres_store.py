"""The shared store: PostgreSQL through psycopg 3, for several servers or hosts."""

from __future__ import annotations

from typing import Any

from faceforge.errors import first_line
from faceforge.serve.store import SqlStore, StoreUnavailable, redacted

#: key of the transaction-scoped advisory lock that orders writers (see :class:`PostgresStore`)
WRITER_LOCK = 0x46414345


class PostgresStore(SqlStore):
    """``postgresql://USER@HOST:PORT/DB``.

    A ``BIGSERIAL`` value is taken when a row is inserted, not when it commits, so two
    writers could commit out of sequence order and a follower reading in between would skip
    the lower one; every writing transaction therefore first takes one advisory lock held
    until it commits, which makes sequence order commit order.
    """

    serial = "BIGSERIAL PRIMARY KEY"
    blob = "BYTEA"
    placeholder = "%s"
    lock_writers = f"SELECT pg_advisory_xact_lock({WRITER_LOCK})"

    def __init__(self, url: str, pool: int = 4) -> None:
        import psycopg

        self.url = url
        self.unavailable = (psycopg.OperationalError,)
        super().__init__(self._open, pool)

    def _open(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"cannot connect to the store {redacted(self.url)}: {first_line(exc)}"
            ) from None

    def _broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)  # the server restarted or the network failed
