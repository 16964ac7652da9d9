"""The FastAPI application: lifespan (service created once, change feed followed), error
handling, body limit, CORS (off unless origins are given), health, readiness, metrics and
the web page.

>>> app = create_app(lambda: build_service(...))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from faceforge.errors import FaceforgeError, first_line
from faceforge.serve.body_limit import BodyLimit
from faceforge.serve.requests import error_response, one_line
from faceforge.serve.routes import router
from faceforge.serve.service import Service

_log = logging.getLogger(__name__)


async def _follow(service: Service) -> None:
    """Apply other servers' writes every ``sync_interval`` seconds. Rounds that fail (the
    database is gone) are retried; the first failure and the recovery are logged once."""
    failing = False
    while True:
        await asyncio.sleep(service.sync_interval)
        try:
            await run_in_threadpool(service.galleries.sync)
        except Exception as exc:  # the server keeps answering from what it has
            if not failing:
                _log.warning("following the store's changes failed, retrying: %s", first_line(exc))
            failing = True
        else:
            if failing:
                _log.warning("following the store's changes again")
            failing = False


def _max_body(scope: dict) -> int | None:
    """The body limit of the app serving ``scope`` (``None`` before its start-up)."""
    service = getattr(scope["app"].state, "service", None)
    return None if service is None else service.limits.max_body


def create_app(make_service: Callable[[], Service], cors_origins: tuple[str, ...] = ()) -> FastAPI:
    """The service's app; ``make_service`` runs once at start-up (model, store, index)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = await run_in_threadpool(make_service)
        follower = asyncio.create_task(_follow(app.state.service))
        yield
        follower.cancel()
        app.state.service.close()

    app = FastAPI(title="faceforge", version="1", lifespan=lifespan)
    app.include_router(router)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimit, limit=_max_body)
    _add_error_handlers(app)
    _add_status_routes(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is a JSON ``{"error": one line}`` with its status code."""

    @app.exception_handler(FaceforgeError)
    async def faceforge_error(request: Request, exc: FaceforgeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": one_line(exc.errors())}, 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # a fault of ours: JSON as every other answer; the traceback goes to the server log
        return JSONResponse({"error": "internal error (the server log has the details)"}, 500)


def _add_status_routes(app: FastAPI) -> None:
    """Health, readiness, Prometheus metrics (requests by route and status, counted by a
    middleware that also names the answering process) and the web page."""
    registry = CollectorRegistry()
    requests = Counter("faceforge_requests", "HTTP requests", ["path", "status"], registry=registry)

    @app.middleware("http")
    async def count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        requests.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        response.headers["X-Worker"] = str(os.getpid())  # which process of --workers answered
        return response

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> dict:
        service = request.app.state.service
        return {
            "status": "ready",
            "galleries": len(service.galleries.names()),
            "seq": service.galleries.seq,
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("faceforge.serve").joinpath("web/index.html").read_text()
