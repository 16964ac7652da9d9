"""The API's typed contract: pydantic models of each endpoint's options and answers, which
FastAPI turns into the OpenAPI document (``/openapi.json``, ``/docs``).

Photo endpoints take their photos as multipart files or base64 JSON (:func:`photo_body`
documents both); their other fields are validated by an options model with unknown keys
refused, so a misspelt option is a 400 rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from faceforge.data.quality import FaceQuality


class Options(BaseModel):
    """Fields of a photo request besides the photos (none)."""

    model_config = ConfigDict(extra="forbid")


class DecisionOptions(Options):
    """How a same/different decision is made: at most one of ``far`` and ``threshold``."""

    far: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="target false accept rate, mapped to a threshold by the model's calibration",
    )
    threshold: float | None = Field(None, ge=-1, le=1, description="cosine threshold")


class SearchOptions(DecisionOptions):
    top_k: int = Field(5, ge=1, le=100, description="people returned per photo")


class NewGallery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="no slash, control characters or spaces around it")
    index: str | None = Field(None, description="flat | ivf | hnsw | pq (default: serve --index)")
    mode: Literal["mean", "all"] = Field("mean", description="one vector per person, or all")


class Face(BaseModel):
    """A detected face; ``liveness``/``live`` only when the server runs ``--anti-spoof``."""

    box: list[float]
    score: float
    landmarks: list[list[float]]
    quality: FaceQuality = Field(description="total in [0, 1] and its parts (angles: degrees)")
    liveness: float | None = None
    live: bool | None = None


class ImageFaces(BaseModel):
    faces: list[Face]


class Detected(BaseModel):
    images: list[ImageFaces]


class Embedding(BaseModel):
    embedding: list[float]
    norm: float = Field(description="feature norm (raw length; MagFace's quality)")
    face: Face | None = Field(description="the face used (null: no detection, photo fitted)")


class Embedded(BaseModel):
    faces: list[Embedding]
    model: str = Field(description="fingerprint of the model")


class ThresholdUsed(BaseModel):
    cosine: float
    source: str


class Verified(BaseModel):
    similarity: float
    same: bool
    threshold: ThresholdUsed
    far: float | None = Field(description="the FAR the threshold corresponds to (calibrated)")
    faces: list[Face | None]


class GalleryCreated(BaseModel):
    name: str
    index: str
    mode: str


class GalleryList(BaseModel):
    galleries: list[str]


class People(BaseModel):
    people: dict[str, int] = Field(description="person -> number of enrolled faces")


class Enrolled(BaseModel):
    gallery: str
    person: str
    added: int
    faces: list[Face | None]


class Deleted(BaseModel):
    deleted: str


class Match(BaseModel):
    name: str
    score: float


class Identified(BaseModel):
    identity: str = Field(description='the best match above the threshold, else "unknown"')
    matches: list[Match]
    face: Face | None


class Searched(BaseModel):
    threshold: float
    far: float | None
    results: list[Identified]


def photo_body(options: type[Options] = Options) -> dict[str, Any]:
    """``openapi_extra`` of a photo endpoint: its body as JSON (base64 ``images``) or as
    multipart (``image`` files), each with the ``options`` fields."""
    schema = options.model_json_schema()
    fields = schema.get("properties", {})
    images = {"type": "array", "items": {"type": "string", "format": "byte"}}
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}

    def body(key: str, photos: dict[str, Any]) -> dict[str, Any]:
        return {"schema": {"type": "object", "properties": {key: photos, **fields}}}

    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": body("images", images),
                "multipart/form-data": body("image", files),
            },
        }
    }
