"""Reading a request's photos (multipart uploads or base64 JSON) and answering errors."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from faceforge.errors import ConfigError, DataError
from faceforge.serve.service import AuthError, Service, decode_base64
from faceforge.serve.store import ConflictError, NotFoundError

#: error type -> HTTP status (anything else a faceforge error: 400)
STATUS = {AuthError: 401, NotFoundError: 404, ConflictError: 409}


async def photos(request: Request, service: Service) -> tuple[list[bytes], dict[str, Any]]:
    """The request's photos in order, and its other fields.

    multipart: every file field is a photo, text fields are options; JSON: ``images`` is a
    list of base64 strings (or ``image`` one), other keys are options.
    """
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form()
        files = [v for _, v in form.multi_items() if hasattr(v, "read")]
        fields = {k: v for k, v in form.multi_items() if not hasattr(v, "read")}
        data = [await f.read() for f in files]
    elif kind.startswith("application/json"):
        fields = await request.json()
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
    return data, fields


def option(fields: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """A request option converted to ``kind`` (DataError naming it when it cannot be)."""
    value = fields.get(name, default)
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a {kind.__name__}, got {value!r}") from None


def error_response(exc: Exception) -> JSONResponse:
    """A faceforge error as a 4xx JSON answer with its one-line message."""
    status = next((s for t, s in STATUS.items() if isinstance(exc, t)), 400)
    if isinstance(exc, ConfigError):
        status = 400
    return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=status)
