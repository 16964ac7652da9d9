"""Every answer of the service is JSON ``{"error": one line}``, a fault of ours included."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from faceforge.errors import DataError
from faceforge.serve.app import _add_error_handlers


def test_an_unexpected_fault_is_a_json_500_and_ours_keep_their_status() -> None:
    """An unhandled error used to answer text/plain "Internal Server Error"."""
    app = FastAPI()
    _add_error_handlers(app)

    @app.get("/fault")
    async def fault() -> None:
        raise RuntimeError("a bug")

    @app.get("/refused")
    async def refused() -> None:
        raise DataError("image 0: not a readable image")

    async def ask(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    answer = asyncio.run(ask("/fault"))
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (the server log has the details)"}
    refused_answer = asyncio.run(ask("/refused"))
    assert (refused_answer.status_code, refused_answer.json()) == (
        400,
        {"error": "image 0: not a readable image"},
    )
