"""Service subcommands: ``serve`` (the HTTP API), ``serve-key`` (add an API key) and
``serve-import`` (on-disk galleries into a store)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from faceforge.cli.arguments import ranged
from faceforge.cli.gallery_commands import INDEX_CHOICES
from faceforge.cli.liveness_commands import add_anti_spoof_options, add_min_quality_option
from faceforge.cli.model_commands import add_model_options, build_pipeline

if TYPE_CHECKING:
    from fastapi import FastAPI

    from faceforge.serve.service import Service


def _make_service(args: argparse.Namespace) -> Service:
    from faceforge.inference.matching.threshold import threshold_for
    from faceforge.serve.batcher import Batcher
    from faceforge.serve.galleries import Galleries
    from faceforge.serve.service import Limits, Service
    from faceforge.serve.store import open_store

    pipeline = build_pipeline(args)  # with the --anti-spoof and --min-quality checks
    embedder = pipeline.embedder
    store = open_store(args.store)
    galleries = Galleries(store, embedder.fingerprint, embedder.embedding_size)
    batcher = Batcher(embedder, args.max_batch, args.max_wait_ms)
    limits = Limits(args.max_body, args.max_faces, args.max_images)
    if args.far is not None:  # refused at start when the model cannot honour it
        threshold_for(embedder.metrics, args.far, None, lambda: pipeline.threshold)
    return Service(
        pipeline, batcher, store, galleries, limits, args.sync_ms / 1000, args.far, args.index
    )


#: the environment variable that hands ``serve``'s options to every worker process
OPTIONS_VARIABLE = "FACEFORGE_SERVE_OPTIONS"


def app_from_environment() -> FastAPI:
    """One worker's app (uvicorn's factory, run in each process of ``--workers``), built
    from the options ``serve`` left in :data:`OPTIONS_VARIABLE`."""
    from faceforge.serve.app import create_app

    args = argparse.Namespace(**json.loads(os.environ[OPTIONS_VARIABLE]))
    return create_app(lambda: _make_service(args), tuple(args.cors_origin))


def _start_lines(args: argparse.Namespace, service: Service) -> list[str]:
    """What the operator needs to know as the service starts (uvicorn logs only warnings by
    default): where it listens, which model, which store, and what would refuse requests."""
    from faceforge.serve.store import redacted

    store = redacted(args.store)
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    lines = [
        f"serving {service.pipeline.embedder.description} on http://{args.host}:{args.port}/ "
        f"(API docs at /docs{workers}); store {store}: {len(service.store.galleries())} galleries"
    ]
    warning = service.pipeline.threshold.warning  # None for an explicit --threshold
    if warning:
        lines.insert(0, f"warning: {warning}")
    if service.store.api_key_count() == 0:
        lines.append(
            "warning: the store has no API key, so every write (new gallery, enrollment) is "
            f"refused: create one with faceforge serve-key --store {store}"
        )
    return lines


def _serve(args: argparse.Namespace) -> int:
    """Build the service here first, so a bad option (model, store, FAR) is one line before
    any worker starts; one process serves that service, ``--workers`` build their own."""
    import uvicorn

    from faceforge.serve.app import create_app

    service = _make_service(args)
    for line in _start_lines(args, service):
        print(line, file=sys.stderr, flush=True)
    where = {"host": args.host, "port": args.port, "log_level": args.log_level}
    if args.workers == 1:
        uvicorn.run(create_app(lambda: service, tuple(args.cors_origin)), **where)
        return 0
    service.close()
    options = {name: value for name, value in vars(args).items() if name != "func"}
    os.environ[OPTIONS_VARIABLE] = json.dumps(options)  # inherited by the worker processes
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=args.workers, **where)
    return 0


def _key(args: argparse.Namespace) -> int:
    from faceforge.serve.service import key_digest, new_api_key
    from faceforge.serve.store import open_store

    key = new_api_key()
    open_store(args.store, pool=1).add_api_key(key_digest(key), args.name)
    print(key)
    return 0


def _import(args: argparse.Namespace) -> int:
    from faceforge.inference.matching.gallery import Gallery
    from faceforge.serve.store import GalleryInfo, check_name, open_store

    store = open_store(args.store, pool=1)
    for folder in args.galleries:
        gallery = Gallery.load(folder)
        name = args.name or folder.rstrip("/").rsplit("/", 1)[-1]
        for person in gallery.names:  # all refused before anything is written
            check_name(person, "person")
        store.create_gallery(
            GalleryInfo(
                name,
                gallery.fingerprint,
                gallery.embedding_size,
                gallery.model,
                gallery.index_type,
                gallery.mode,
            )
        )
        for person in gallery.names:
            store.add_faces(name, person, gallery.embeddings(person), gallery.fingerprint)
        print(f"imported {folder} as gallery {name!r}: {len(gallery)} people")
    return 0


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default="sqlite:///faces.db",
        help="sqlite:///PATH (default faces.db) or postgresql://USER@HOST:PORT/DB",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the service subcommands to the ``faceforge`` parser."""
    _register_serve(subparsers)
    _register_serve_key(subparsers)
    _register_serve_import(subparsers)


def _register_serve(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the HTTP face service (see docs/serve.md)")
    add_model_options(p)
    _add_store(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=ranged(int, 0, 65535), default=8000)
    p.add_argument(
        "--workers",
        type=ranged(int, 1),
        default=1,
        help="server processes sharing the port (each loads the model; they share the store)",
    )
    p.add_argument(
        "--max-batch",
        type=ranged(int, 1),
        default=32,
        help="faces embedded together (1: no batching)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=ranged(float, 0),
        default=5.0,
        help="how long a batch waits for more faces",
    )
    p.add_argument(
        "--sync-ms",
        type=ranged(float, 1),
        default=200.0,
        help="change-feed poll interval: the bound on cross-server delay",
    )
    p.add_argument(
        "--far",
        type=ranged(float, 0, 1),
        help="decide at this false accept rate by the model's calibration when a request names "
        "no threshold (default: the model's best-accuracy threshold)",
    )
    p.add_argument(
        "--threshold",
        type=ranged(float, -1, 1),
        help="cosine threshold of requests that name none (instead of the model's)",
    )
    p.add_argument(
        "--index",
        choices=INDEX_CHOICES,
        metavar="TYPE",
        default="flat",
        help="FAISS index of galleries created without one: %(choices)s (pq: large galleries, see "
        "docs/serve.md)",
    )
    p.add_argument("--max-body", type=ranged(int, 1), default=20 << 20, help="bytes")
    p.add_argument("--max-faces", type=ranged(int, 1), default=20, help="per image")
    p.add_argument("--max-images", type=ranged(int, 1), default=16, help="per request")
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="allow this browser origin (CORS is off by default)",
    )
    add_anti_spoof_options(p)
    add_min_quality_option(p)
    p.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        default="warning",
        help="uvicorn's log level (info: one line per request; default %(default)s)",
    )
    p.set_defaults(func=_serve)


def _register_serve_key(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve-key", help="create an API key (printed once, stored hashed)")
    _add_store(p)
    p.add_argument("--name", default="default", help="who the key is for")
    p.set_defaults(func=_key)


def _register_serve_import(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve-import", help="import gallery folders into a store")
    p.add_argument("galleries", nargs="+", help="gallery folders made by enroll")
    p.add_argument("--name", help="gallery name in the store (default: the folder name)")
    _add_store(p)
    p.set_defaults(func=_import)
