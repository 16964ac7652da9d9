"""Reading a request's photos (multipart uploads or base64 JSON) and answering errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from faceforge.errors import ConfigError, DataError, first_line
from faceforge.inference.face_checks import LowQuality
from faceforge.inference.liveness import SpoofRefused
from faceforge.serve.schemas import Options
from faceforge.serve.service import AuthError, Service, decode_base64
from faceforge.serve.store import ConflictError, NotFoundError, StoreUnavailable

#: error type -> HTTP status (anything else a faceforge error: 400)
STATUS = {
    AuthError: 401,
    NotFoundError: 404,
    ConflictError: 409,
    SpoofRefused: 422,
    LowQuality: 422,
    StoreUnavailable: 503,
}

OptionsT = TypeVar("OptionsT", bound=Options)


async def photos(
    request: Request, service: Service, options: type[OptionsT]
) -> tuple[list[bytes], OptionsT]:
    """The request's photos in order, and its other fields validated as ``options``.

    multipart: every file field is a photo, text fields are options; JSON: ``images`` is a
    list of base64 strings (or ``image`` one), other keys are options.
    """
    kind = request.headers.get("content-type", "").lower()  # media types ignore case
    if kind.startswith("multipart/form-data"):
        form = await request.form()
        files = [v for _, v in form.multi_items() if hasattr(v, "read")]
        fields: dict[str, Any] = {k: v for k, v in form.multi_items() if not hasattr(v, "read")}
        data = [await f.read() for f in files]
    elif kind.startswith("application/json"):
        fields = _json(await request.body())
        if not isinstance(fields, dict):
            raise DataError("the JSON body must be an object")
        texts = fields.pop("images", None) or ([fields.pop("image")] if "image" in fields else [])
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataError("images must be a list of base64 strings")
        data = [decode_base64(t, f"image {i}") for i, t in enumerate(texts)]
    else:
        raise DataError("send photos as multipart/form-data files or a JSON body with images")
    if not data:
        raise DataError("the request has no image")
    if len(data) > service.limits.max_images:
        raise DataError(f"{len(data)} images, more than the {service.limits.max_images} allowed")
    return data, validated(options, fields)


def _json(body: bytes) -> Any:
    """The JSON ``body``; a DataError for bytes that are not UTF-8 JSON, or nested deeper
    than the parser recurses."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(f"the body is not valid JSON ({first_line(exc)[:120]})") from None


def validated(model: type[OptionsT], fields: dict[str, Any]) -> OptionsT:
    """``fields`` as ``model``, or a DataError naming the first wrong field."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise DataError(one_line(exc.errors())) from None


def one_line(errors: Any) -> str:
    """The first of pydantic's validation errors as ``field: message``."""
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    return f"{where}: {first['msg']}"


def error_response(exc: Exception) -> JSONResponse:
    """A faceforge error as a 4xx JSON answer with its one-line message (and, for a refused
    face, its figures: ``liveness``/``liveness_threshold`` or ``quality``/``min_quality``)."""
    status = next((s for t, s in STATUS.items() if isinstance(exc, t)), 400)
    if isinstance(exc, ConfigError):
        status = 400
    body = {"error": str(exc).splitlines()[0], **getattr(exc, "details", {})}
    return JSONResponse(body, status_code=status)
