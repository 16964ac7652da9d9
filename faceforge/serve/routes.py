"""The versioned API (``/v1``): detect, embed, verify and galleries.

Per-face answers are objects so that optional fields (``liveness``, ``quality``) can be
added beside ``box``/``embedding`` without breaking clients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from faceforge.errors import DataError
from faceforge.inference.matching.threshold import Threshold, threshold_for
from faceforge.serve.requests import option, photos
from faceforge.serve.store import GalleryInfo

router = APIRouter(prefix="/v1")


def _service(request: Request):
    return request.app.state.service


async def _crops(service, data: list[bytes]) -> np.ndarray:
    crops = [await run_in_threadpool(service.crop, d, f"image {i}") for i, d in enumerate(data)]
    return np.concatenate(crops)


def _threshold(service, fields: dict[str, Any]) -> Threshold:
    """The request's ``far`` or ``threshold``, else the server's ``--far``, else the model's
    best-accuracy threshold (``--threshold`` when given)."""
    far, cosine = option(fields, "far", float, None), option(fields, "threshold", float, None)
    if far is None and cosine is None:
        far = service.default_far
    metrics = service.pipeline.embedder.metrics
    return threshold_for(metrics, far, cosine, lambda: service.pipeline.threshold)


def _faces(detections) -> list[dict[str, Any]]:
    return [
        {
            "box": [float(v) for v in d.box],
            "score": float(d.score),
            "landmarks": np.asarray(d.landmarks).astype(float).tolist(),
        }
        for d in detections
    ]


@router.post("/detect", summary="faces in each photo: boxes, 5 landmarks, scores")
async def detect(request: Request) -> dict[str, Any]:
    service = _service(request)
    data, _ = await photos(request, service)
    found = [await run_in_threadpool(service.detect, d, f"image {i}") for i, d in enumerate(data)]
    return {"images": [{"faces": _faces(faces)} for faces in found]}


@router.post("/embed", summary="the embedding of the selected face of each photo")
async def embed(request: Request) -> dict[str, Any]:
    service = _service(request)
    data, _ = await photos(request, service)
    vectors = await service.batcher.embed(await _crops(service, data))
    return {
        "faces": [{"embedding": v.tolist(), "norm": float(np.linalg.norm(v))} for v in vectors],
        "model": service.galleries.fingerprint,
    }


@router.post("/verify", summary="are two photos the same person?")
async def verify(request: Request) -> dict[str, Any]:
    service = _service(request)
    data, fields = await photos(request, service)
    if len(data) != 2:
        raise DataError(f"verify compares two photos, got {len(data)}")
    threshold = _threshold(service, fields)
    a, b = await service.batcher.embed(await _crops(service, data))
    similarity = float(a @ b)
    return {
        "similarity": similarity,
        "same": threshold.accepts(similarity),
        "threshold": {"cosine": threshold.cosine, "source": threshold.source},
        "far": threshold.far,
    }


@router.get("/galleries")
async def list_galleries(request: Request) -> dict[str, Any]:
    return {"galleries": await run_in_threadpool(_service(request).galleries.names)}


@router.post("/galleries", status_code=201, summary="create a gallery for this model")
async def create_gallery(request: Request, x_api_key: str | None = Header(None)) -> dict:
    service = _service(request)
    service.check_key(x_api_key)
    body = await request.json()
    name = str(body.get("name", "")).strip()
    if not name:
        raise DataError("a gallery needs a name")
    galleries = service.galleries
    info = GalleryInfo(
        name,
        galleries.fingerprint,
        galleries.embedding_size,
        service.pipeline.embedder.description,
        str(body.get("index", "flat")),
        str(body.get("mode", "mean")),
    )
    await run_in_threadpool(service.store.create_gallery, info)
    await run_in_threadpool(galleries.sync)
    return {"name": name, "index": info.index_type, "mode": info.mode}


@router.delete("/galleries/{gallery}")
async def delete_gallery(
    request: Request, gallery: str, x_api_key: str | None = Header(None)
) -> dict:
    service = _service(request)
    service.check_key(x_api_key)
    await run_in_threadpool(service.store.delete_gallery, gallery)
    await run_in_threadpool(service.galleries.sync)
    return {"deleted": gallery}


@router.get("/galleries/{gallery}/people")
async def people(request: Request, gallery: str) -> dict[str, Any]:
    return {"people": await run_in_threadpool(_service(request).galleries.people, gallery)}


@router.post(
    "/galleries/{gallery}/people/{person}",
    status_code=201,
    summary="enroll one or many photos of a person (acknowledged after commit)",
)
async def enroll(
    request: Request, gallery: str, person: str, x_api_key: str | None = Header(None)
) -> dict[str, Any]:
    service = _service(request)
    service.check_key(x_api_key)
    service.galleries.check(gallery)
    data, _ = await photos(request, service)
    vectors = await service.batcher.embed(await _crops(service, data))
    await run_in_threadpool(service.store.add_faces, gallery, person, vectors)
    await run_in_threadpool(service.galleries.sync)
    return {"gallery": gallery, "person": person, "added": len(vectors)}


@router.delete("/galleries/{gallery}/people/{person}")
async def delete_person(
    request: Request, gallery: str, person: str, x_api_key: str | None = Header(None)
) -> dict[str, Any]:
    service = _service(request)
    service.check_key(x_api_key)
    await run_in_threadpool(service.store.delete_person, gallery, person)
    await run_in_threadpool(service.galleries.sync)
    return {"deleted": person}


@router.post(
    "/galleries/{gallery}/search",
    summary="top-k people for each photo, and the open-set identity decided",
)
async def search(request: Request, gallery: str) -> dict[str, Any]:
    service = _service(request)
    service.galleries.check(gallery)
    data, fields = await photos(request, service)
    top_k = option(fields, "top_k", int, 5)
    if not 1 <= top_k <= 100:
        raise DataError(f"top_k must be in 1..100, got {top_k}")
    threshold = _threshold(service, fields)
    vectors = await service.batcher.embed(await _crops(service, data))
    found = await run_in_threadpool(service.galleries.search, gallery, vectors, top_k)
    return {
        "threshold": threshold.cosine,
        "far": threshold.far,
        "results": [
            {
                "identity": m[0].name if m and threshold.accepts(m[0].score) else "unknown",
                "matches": [{"name": x.name, "score": x.score} for x in m],
            }
            for m in found
        ],
    }
