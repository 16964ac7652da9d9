"""What a request needs, made once per server: the pipeline, batcher, store and galleries,
plus the request-independent steps (decoding and aligning photos, API key checks)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

import numpy as np

from faceforge.data.image_io import decode_image
from faceforge.errors import DataError
from faceforge.inference.detection.base import Detection
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

    def check_key(self, key: str | None) -> None:
        if not key or self.store.api_key_name(key_digest(key)) is None:
            raise AuthError("this request writes: send a valid API key in the X-API-Key header")

    def photo(self, data: bytes, name: str) -> np.ndarray:
        """Decoded RGB pixels (within the pixel budget) of one uploaded photo."""
        return decode_image(data, name, self.pipeline.max_pixels)

    def crop(self, data: bytes, name: str) -> np.ndarray:
        """The aligned crop of the selected face of one photo (off the event loop)."""
        return self.pipeline.align_batch([self.photo(data, name)])

    def detect(self, data: bytes, name: str) -> list[Detection]:
        faces = self.pipeline.detect(self.photo(data, name))
        if len(faces) > self.limits.max_faces:
            raise DataError(
                f"{name}: {len(faces)} faces found, more than the {self.limits.max_faces} allowed"
            )
        return faces


def decode_base64(text: str, name: str) -> bytes:
    """The bytes of a base64 image field (a ``data:...;base64,`` prefix is allowed)."""
    try:
        return base64.b64decode(text.partition("base64,")[2] or text, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{name}: not valid base64") from None
