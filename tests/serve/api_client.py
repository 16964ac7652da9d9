"""What the service tests send: synthetic face photos and the API calls they repeat."""

from __future__ import annotations

import uuid

import httpx

from faceforge.data.image_io import encode_image
from faceforge.data.synthetic.faces import SyntheticFaces
from tests.serve.conftest import Server

FACES = SyntheticFaces(seed=0)


def photo(identity: int, index: int = 0) -> bytes:
    return encode_image(FACES.render(identity, index), ".png")


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


def new_gallery(server: Server, key: str, **settings: str) -> str:
    name = f"g{uuid.uuid4().hex[:8]}"
    answer = httpx.post(
        f"{server.url}/v1/galleries", json={"name": name, **settings}, headers={"X-API-Key": key}
    )
    assert answer.status_code == 201, answer.text
    return name


def enroll(url: str, key: str, gallery: str, person: str, *images: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/galleries/{gallery}/people/{person}",
        files=files(*images),
        headers={"X-API-Key": key},
        timeout=120,
    )


def search(url: str, gallery: str, image: bytes, **fields: str) -> dict:
    answer = httpx.post(
        f"{url}/v1/galleries/{gallery}/search", files=files(image), data=fields, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]
