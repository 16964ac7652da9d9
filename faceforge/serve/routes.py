"""The versioned API (``/v1``): detect, embed, verify and galleries; request and answer
models in :mod:`.schemas`.

Every face in an answer carries its ``quality`` (total and parts) and, when the server runs
``--anti-spoof``, ``liveness`` and ``live``. enroll, verify, search and embed refuse a face
judged a spoof or below ``--min-quality`` with a 422 naming the figures; detect only reports.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from faceforge.errors import DataError
from faceforge.inference.face_checks import FaceReport
from faceforge.inference.matching.index import INDEX_TYPES
from faceforge.inference.matching.threshold import Threshold, threshold_for
from faceforge.serve import schemas
from faceforge.serve.requests import photos
from faceforge.serve.service import Service
from faceforge.serve.store import GalleryInfo, check_name

router = APIRouter(prefix="/v1")


def _service(request: Request) -> Service:
    return request.app.state.service


_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="a key from serve-key")
_BEARER = HTTPBearer(auto_error=False, description="the same key as `Authorization: Bearer KEY`")


def _writer(
    request: Request,
    key: Annotated[str | None, Security(_API_KEY)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> Service:
    """The service, for a request that writes: it must carry a valid API key, in the
    ``X-API-Key`` header or as ``Authorization: Bearer KEY`` (an AuthError, 401, otherwise)."""
    service = _service(request)
    service.check_key(key or (bearer.credentials if bearer else None))
    return service


#: a route parameter that makes the route a write (see :func:`_writer`)
Writer = Annotated[Service, Depends(_writer)]


def _threshold(service: Service, options: schemas.DecisionOptions) -> Threshold:
    """The request's ``far`` or ``threshold``, else the server's ``--far``, else the model's
    best-accuracy threshold (``--threshold`` when given)."""
    far, cosine = options.far, options.threshold
    if far is None and cosine is None:
        far = service.default_far
    metrics = service.pipeline.embedder.metrics
    return threshold_for(metrics, far, cosine, lambda: service.pipeline.threshold)


def _face(report: FaceReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    face = report.detection
    return {
        **report.as_dict(),
        "box": [float(v) for v in face.box],
        "score": float(face.score),
        "landmarks": np.asarray(face.landmarks).astype(float).tolist(),
    }


@router.post(
    "/detect",
    summary="faces in each photo: boxes, 5 landmarks, scores, quality (and liveness)",
    response_model=schemas.Detected,
    openapi_extra=schemas.photo_body(),
)
async def detect(request: Request) -> dict[str, Any]:
    service = _service(request)
    data, _ = await photos(request, service, schemas.Options)
    images = []
    for i, photo in enumerate(data):
        reports, crops = await run_in_threadpool(service.detect, photo, f"image {i}")
        if service.pipeline.checks.magface and reports:
            norms = (await service.batcher.embed(crops))[1]
            reports = [r.with_feature_norm(float(n)) for r, n in zip(reports, norms, strict=True)]
        images.append({"faces": [_face(r) for r in reports]})
    return {"images": images}


@router.post(
    "/embed",
    summary="the embedding and feature norm of the selected face of each photo",
    response_model=schemas.Embedded,
    openapi_extra=schemas.photo_body(),
)
async def embed(request: Request) -> dict[str, Any]:
    service = _service(request)
    data, _ = await photos(request, service, schemas.Options)
    vectors, norms, reports = await service.embed_photos(data)
    faces = [
        {"embedding": v.tolist(), "norm": float(n), "face": _face(r)}
        for v, n, r in zip(vectors, norms, reports, strict=True)
    ]
    return {"faces": faces, "model": service.galleries.fingerprint}


@router.post(
    "/verify",
    summary="are two photos the same person? (threshold by target FAR or cosine)",
    response_model=schemas.Verified,
    openapi_extra=schemas.photo_body(schemas.DecisionOptions),
)
async def verify(request: Request) -> dict[str, Any]:
    service = _service(request)
    data, options = await photos(request, service, schemas.DecisionOptions)
    if len(data) != 2:
        raise DataError(f"verify compares two photos, got {len(data)}")
    threshold = _threshold(service, options)
    (a, b), _, reports = await service.embed_photos(data)
    similarity = float(a @ b)
    return {
        "similarity": similarity,
        "same": threshold.accepts(similarity),
        "threshold": {"cosine": threshold.cosine, "source": threshold.source},
        "far": threshold.far,
        "faces": [_face(r) for r in reports],
    }


@router.get("/galleries", response_model=schemas.GalleryList)
async def list_galleries(request: Request) -> dict[str, Any]:
    return {"galleries": await run_in_threadpool(_service(request).galleries.names)}


@router.post(
    "/galleries",
    status_code=201,
    summary="create a gallery for this model",
    response_model=schemas.GalleryCreated,
)
async def create_gallery(body: schemas.NewGallery, service: Writer) -> dict[str, Any]:
    index = body.index or service.default_index
    INDEX_TYPES.get(index, field="index")
    galleries = service.galleries
    info = GalleryInfo(
        body.name,  # the store refuses a name the API could not address
        galleries.fingerprint,
        galleries.embedding_size,
        service.pipeline.embedder.description,
        index,
        body.mode,
    )
    await run_in_threadpool(service.store.create_gallery, info)
    await run_in_threadpool(galleries.sync)
    return {"name": info.name, "index": info.index_type, "mode": info.mode}


@router.delete("/galleries/{gallery}", response_model=schemas.Deleted)
async def delete_gallery(gallery: str, service: Writer) -> dict[str, Any]:
    await run_in_threadpool(service.store.delete_gallery, gallery)
    await run_in_threadpool(service.galleries.sync)
    return {"deleted": gallery}


@router.get("/galleries/{gallery}/people", response_model=schemas.People)
async def people(request: Request, gallery: str) -> dict[str, Any]:
    return {"people": await run_in_threadpool(_service(request).galleries.people, gallery)}


@router.post(
    "/galleries/{gallery}/people/{person}",
    status_code=201,
    summary="enroll one or many photos of a person (acknowledged after commit)",
    response_model=schemas.Enrolled,
    openapi_extra=schemas.photo_body(),
)
async def enroll(request: Request, gallery: str, person: str, service: Writer) -> dict[str, Any]:
    check_name(person, "person")  # before any work: the store refuses it anyway
    await run_in_threadpool(service.galleries.check, gallery)
    data, _ = await photos(request, service, schemas.Options)
    vectors, _, reports = await service.embed_photos(data)
    fingerprint = service.galleries.fingerprint
    await run_in_threadpool(service.store.add_faces, gallery, person, vectors, fingerprint)
    await run_in_threadpool(service.galleries.sync)
    faces = [_face(r) for r in reports]
    return {"gallery": gallery, "person": person, "added": len(vectors), "faces": faces}


@router.delete("/galleries/{gallery}/people/{person}", response_model=schemas.Deleted)
async def delete_person(gallery: str, person: str, service: Writer) -> dict[str, Any]:
    await run_in_threadpool(service.store.delete_person, gallery, person)
    await run_in_threadpool(service.galleries.sync)
    return {"deleted": person}


@router.post(
    "/galleries/{gallery}/search",
    summary="top-k people for each photo, and the open-set identity decided",
    response_model=schemas.Searched,
    openapi_extra=schemas.photo_body(schemas.SearchOptions),
)
async def search(request: Request, gallery: str) -> dict[str, Any]:
    service = _service(request)
    await run_in_threadpool(service.galleries.check, gallery)
    data, options = await photos(request, service, schemas.SearchOptions)
    threshold = _threshold(service, options)
    vectors, _, reports = await service.embed_photos(data)
    found = await run_in_threadpool(service.galleries.search, gallery, vectors, options.top_k)
    return {
        "threshold": threshold.cosine,
        "far": threshold.far,
        "results": [
            {
                "identity": m[0].name if m and threshold.accepts(m[0].score) else "unknown",
                "matches": [{"name": x.name, "score": x.score} for x in m],
                "face": _face(r),
            }
            for m, r in zip(found, reports, strict=True)
        ],
    }
