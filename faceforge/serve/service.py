"""What a request needs, made once per server: the pipeline, batcher, store and galleries,
plus the request-independent steps (decoding and aligning photos, API key checks)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from faceforge.data.image_io import decode_image
from faceforge.errors import DataError
from faceforge.inference.face_checks import FaceReport
from faceforge.inference.pipeline import FacePipeline
from faceforge.serve.batcher import Batcher
from faceforge.serve.galleries import Galleries
from faceforge.serve.store import SqlStore


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    #: largest request body in bytes
    max_body: int = 20 << 20
    #: faces reported per image by detect
    max_faces: int = 20
    #: photos per request
    max_images: int = 16


class AuthError(DataError):
    """A write without a valid API key (HTTP 401)."""


def new_api_key() -> str:
    """A random API key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """What the store keeps of a key: its SHA-256 (keys are random, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Service:
    """The server's shared objects (created in the app's lifespan, injected into routes)."""

    pipeline: FacePipeline
    batcher: Batcher
    store: SqlStore
    galleries: Galleries
    limits: Limits
    #: interval of the change-feed poll in seconds (the bound on cross-server delay)
    sync_interval: float = 0.2
    #: FAR of decisions whose request names no threshold (``None``: the model's threshold)
    default_far: float | None = None
    #: index type of galleries created without one
    default_index: str = "flat"

    def close(self) -> None:
        """Stop the batcher's thread and close the store's connections."""
        self.batcher.close()
        self.store.close()

    def check_key(self, key: str | None) -> None:
        if not key or self.store.api_key_name(key_digest(key)) is None:
            raise AuthError(
                "this request writes: send a valid API key in the X-API-Key header "
                "(or as Authorization: Bearer KEY)"
            )

    def photo(self, data: bytes, name: str) -> np.ndarray:
        """Decoded RGB pixels (within the pixel budget) of one uploaded photo."""
        return decode_image(data, name, self.pipeline.max_pixels)

    def prepare(self, data: bytes, name: str) -> tuple[np.ndarray, FaceReport | None]:
        """The aligned crop of one photo's selected face and its report, a spoof refused
        (off the event loop; no report when the photo was fitted without a face)."""
        return self.pipeline.checked_face(self.photo(data, name), name)

    async def embed_photos(
        self, data: list[bytes]
    ) -> tuple[np.ndarray, np.ndarray, list[FaceReport | None]]:
        """Unit embeddings, feature norms and face reports of each photo's selected face,
        embedded with other requests' faces; spoofs and low-quality faces refused (a MagFace
        model's norm counted in the quality)."""
        prepared = [
            await run_in_threadpool(self.prepare, photo, f"image {i}")
            for i, photo in enumerate(data)
        ]
        vectors, norms = await self.batcher.embed(np.stack([crop for crop, _ in prepared]))
        judged = [
            self._judged(p[1], n, f"image {i}")
            for i, (p, n) in enumerate(zip(prepared, norms, strict=True))
        ]
        return vectors, norms, judged

    def _judged(self, report: FaceReport | None, norm: float, name: str) -> FaceReport | None:
        checks = self.pipeline.checks
        if report is not None:
            report = report.with_feature_norm(float(norm)) if checks.magface else report
            checks.refuse_low_quality(report, name)
        return report

    def detect(self, data: bytes, name: str) -> tuple[list[FaceReport], np.ndarray]:
        """Every face of one photo with its report (liveness judged, nothing refused) and
        the aligned crops (for a MagFace model's norms); at most ``max_faces``."""
        image = self.photo(data, name)
        faces = self.pipeline.detect(image)
        if len(faces) > self.limits.max_faces:
            raise DataError(
                f"{name}: {len(faces)} faces found, more than the {self.limits.max_faces} allowed"
            )
        reports = [self.pipeline.checks.report(image, face) for face in faces]
        crops = [self.pipeline.align(image, face) for face in faces]
        size = (0, *self.pipeline.embedder.input_size, 3)
        return reports, np.stack(crops) if crops else np.zeros(size, np.uint8)


def decode_base64(text: str, name: str) -> bytes:
    """The bytes of a base64 image field (a ``data:...;base64,`` prefix is allowed)."""
    try:
        return base64.b64decode(text.partition("base64,")[2] or text, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{name}: not valid base64") from None
