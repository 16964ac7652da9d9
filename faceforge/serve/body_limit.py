"""The request body limit, enforced while the body streams in: a declared Content-Length over
the limit is refused before anything is read, and a chunked body (no Content-Length) as soon
as the bytes received pass the limit, so no request makes the server buffer more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """A request body over the server's ``--max-body``: HTTP 413 (an HTTPException, so that
    FastAPI's own body parsing passes it on rather than calling it a parse error)."""

    def __init__(self, size: int | str, limit: int) -> None:
        super().__init__(413, f"request body of {size} bytes is over the {limit} allowed")


class BodyLimit:
    """ASGI middleware: the body of an HTTP request may hold at most ``limit(scope)`` bytes
    (``None``: no limit yet, before start-up). An oversized declared body raises at once, a
    chunked one from the ``receive`` call that passes the limit, when the app reads it."""

    def __init__(self, app: Callable, limit: Callable[[Scope], int | None]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit(scope) if scope["type"] == "http" else None
        if limit is None:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            receive = _refusing(BodyTooLarge(declared, limit))
        else:
            receive = _counting(receive, limit)
        await self.app(scope, receive, send)


def _refusing(error: BodyTooLarge) -> Receive:
    async def receive() -> Message:
        raise error

    return receive


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge(f"more than {limit}", limit)
        return message

    return counted
