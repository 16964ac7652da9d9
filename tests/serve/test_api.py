"""Every endpoint over HTTP against a ``faceforge serve`` subprocess, on SQLite and
PostgreSQL: answers, 4xx errors, write safety and the API's documentation (set-ups of
several servers, kills and start options: ``test_deployments``)."""

from __future__ import annotations

import base64
import contextlib
import select
import socket

import httpx
import numpy as np
import pytest

from faceforge.data.image_io import encode_image
from faceforge.data.quality import face_quality
from tests.image_bombs import png_bomb
from tests.serve.api_client import FACES, enroll, files, new_gallery, photo, search
from tests.serve.conftest import Server


def test_ops_endpoints(server):
    srv, _ = server
    assert httpx.get(f"{srv.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{srv.url}/ready").json()["status"] == "ready"
    assert "faceforge_requests_total" in httpx.get(f"{srv.url}/metrics").text
    assert "/v1/galleries/{gallery}/search" in httpx.get(f"{srv.url}/openapi.json").text
    assert (
        "access-control-allow-origin"
        not in httpx.get(f"{srv.url}/health", headers={"Origin": "http://evil.example"}).headers
    )


def test_detect_embed_verify(server):
    srv, _ = server
    faces = httpx.post(f"{srv.url}/v1/detect", files=files(photo(0))).json()["images"][0]
    for face in faces["faces"]:
        assert len(face["box"]) == 4 and np.shape(face["landmarks"]) == (5, 2)
    one = httpx.post(f"{srv.url}/v1/embed", files=files(photo(0))).json()["faces"][0]
    b64 = base64.b64encode(photo(0)).decode()
    two = httpx.post(f"{srv.url}/v1/embed", json={"images": [b64]}).json()["faces"][0]
    np.testing.assert_allclose(one["embedding"], two["embedding"], atol=1e-6)
    assert np.linalg.norm(one["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert one["norm"] == pytest.approx(two["norm"], rel=1e-5) and one["norm"] > 0
    same = httpx.post(f"{srv.url}/v1/verify", files=files(photo(0), photo(0))).json()
    assert same["similarity"] == pytest.approx(1.0, abs=1e-5) and same["same"]
    other = httpx.post(f"{srv.url}/v1/verify", files=files(photo(0), photo(1))).json()
    expected = float(
        np.dot(
            one["embedding"],
            httpx.post(f"{srv.url}/v1/embed", files=files(photo(1))).json()["faces"][0][
                "embedding"
            ],
        )
    )
    assert other["similarity"] == pytest.approx(expected, abs=1e-5)
    assert other["threshold"]["cosine"] == pytest.approx(0.5)  # best accuracy: FAR 1e-2
    assert other["far"] == pytest.approx(1e-2) and other["same"] == (expected > 0.5)


def test_verify_at_a_target_far(server):
    srv, _ = server

    def verify(**fields: str) -> httpx.Response:
        return httpx.post(f"{srv.url}/v1/verify", files=files(photo(0), photo(1)), data=fields)

    strict = verify(far="1e-3").json()
    assert strict["threshold"]["cosine"] == pytest.approx(0.6) and strict["far"] == 1e-3
    assert strict["same"] == (strict["similarity"] > 0.6)
    between = verify(threshold="0.65").json()
    assert (
        between["far"] == pytest.approx(10**-3.5) and "explicitly" in between["threshold"]["source"]
    )
    outside = verify(far="1e-6")
    assert (
        outside.status_code == 400 and "calibrated range 0.0001 .. 0.1" in outside.json()["error"]
    )
    assert verify(far="0.01", threshold="0.5").status_code == 400


@pytest.mark.parametrize("index", ["flat", "hnsw", "pq"])
def test_gallery_life_cycle(server, index):
    srv, key = server
    gallery = new_gallery(srv, key, index=index, mode="all")
    assert gallery in httpx.get(f"{srv.url}/v1/galleries").json()["galleries"]
    assert enroll(srv.url, key, gallery, "alice", photo(0, 0), photo(0, 1)).status_code == 201
    assert enroll(srv.url, key, gallery, "bob", photo(1)).status_code == 201
    people = httpx.get(f"{srv.url}/v1/galleries/{gallery}/people").json()["people"]
    assert people == {"alice": 2, "bob": 1}
    found = search(srv.url, gallery, photo(0, 1), top_k="2")
    assert found["identity"] == "alice" and found["matches"][0]["score"] == pytest.approx(1, 1e-4)
    assert search(srv.url, gallery, photo(0, 1), threshold="1.0")["identity"] == "unknown"
    url = f"{srv.url}/v1/galleries/{gallery}/people/alice"
    assert httpx.delete(url, headers={"X-API-Key": key}).status_code == 200
    assert [m["name"] for m in search(srv.url, gallery, photo(0, 1))["matches"]] == ["bob"]
    assert httpx.delete(url, headers={"X-API-Key": key}).status_code == 404
    gone = httpx.delete(f"{srv.url}/v1/galleries/{gallery}", headers={"X-API-Key": key})
    assert gone.status_code == 200
    assert (
        httpx.post(f"{srv.url}/v1/galleries/{gallery}/search", files=files(photo(0))).status_code
        == 404
    )


def test_bad_requests_get_one_line_4xx(server):
    srv, key = server
    gallery = new_gallery(srv, key)
    cases = [
        httpx.post(f"{srv.url}/v1/galleries/{gallery}/people/x", files=files(photo(0))),
        httpx.post(
            f"{srv.url}/v1/galleries/{gallery}/people/x",
            files=files(photo(0)),
            headers={"X-API-Key": "wrong"},
        ),
        httpx.post(f"{srv.url}/v1/embed", files=files(png_bomb())),
        httpx.post(f"{srv.url}/v1/embed", files=files(b"not an image")),
        httpx.post(f"{srv.url}/v1/embed", json={"images": ["%%%"]}),
        httpx.post(
            f"{srv.url}/v1/embed", content=b"{", headers={"content-type": "application/json"}
        ),
        httpx.post(f"{srv.url}/v1/verify", files=files(photo(0))),
        httpx.post(f"{srv.url}/v1/embed", files=files(b"x" * (21 << 20))),
        httpx.post(f"{srv.url}/v1/galleries", json={"name": gallery}, headers={"X-API-Key": key}),
        httpx.delete(f"{srv.url}/v1/galleries/{gallery}", headers={"Authorization": "Bearer no"}),
    ]
    statuses = [answer.status_code for answer in cases]
    assert statuses == [401, 401, 400, 400, 400, 400, 400, 413, 409, 401]
    assert cases[0].json()["error"] == (
        "this request writes: send a valid API key in the X-API-Key header "
        "(or as Authorization: Bearer KEY)"
    )
    assert all("\n" not in answer.json()["error"] for answer in cases)
    assert httpx.get(f"{srv.url}/health").status_code == 200


def test_names_the_api_cannot_address_are_refused_before_anything_is_written(server):
    """A blank person used to be stored, then refused by every server replaying the change
    feed: every later write failed and no server could start on the store again."""
    srv, key = server
    gallery = new_gallery(srv, key)
    headers = {"X-API-Key": key}
    refused = {
        "%20": "a person needs a non-empty name",
        "%09": "a person needs a non-empty name",
        "a%00b": "person name 'a\\x00b' holds a slash or a control character",
        "dana%20": "person name 'dana ' starts or ends with spaces",
    }
    for person, message in refused.items():
        answer = enroll(srv.url, key, gallery, person, photo(0))
        assert (answer.status_code, answer.json()["error"]) == (400, message)
    for name in ("a/b", "team ", "a\u0000b", "x" * 201):
        answer = httpx.post(f"{srv.url}/v1/galleries", json={"name": name}, headers=headers)
        assert answer.status_code == 400 and "name" in answer.json()["error"]
    assert enroll(srv.url, key, gallery, "bob", photo(1)).status_code == 201
    assert search(srv.url, gallery, photo(1))["identity"] == "bob"
    again = Server(srv.checkpoint, srv.store)  # a server starts on what was written
    again.kill()


def test_odd_bodies_and_photos_get_a_4xx_not_a_500(server):
    srv, _ = server
    thin = [
        encode_image(np.zeros(shape, np.uint8), ".png") for shape in ((1, 5000, 3), (5000, 1, 3))
    ]
    answers = [
        httpx.post(f"{srv.url}/v1/embed", files=files(image))
        for image in thin  # no face
    ] + [
        httpx.post(
            f"{srv.url}/v1/embed", content=body, headers={"content-type": "application/json"}
        )
        for body in (b'{"images": ["\xff"]}', b"[" * 200_000)
    ]
    # no face in the thin photos: fitted whole (this server runs --fallback stretch)
    assert [a.status_code for a in answers] == [200, 200, 400, 400], [a.text for a in answers]
    assert answers[2].json()["error"].startswith("the body is not valid JSON")
    image = base64.b64encode(photo(0)).decode()
    upper = httpx.post(
        f"{srv.url}/v1/embed",
        content=f'{{"images": ["{image}"]}}',
        headers={"content-type": "Application/JSON; charset=UTF-8"},
    )
    assert upper.status_code == 200, upper.text


def test_gallery_of_another_model_is_refused(server, tmp_path):
    from tests.model_helpers import primed_model, write_checkpoint

    srv, key = server
    gallery = new_gallery(srv, key)
    other = Server(write_checkpoint(tmp_path / "other.pt", primed_model(seed=1)), srv.store)
    try:
        answer = enroll(other.url, key, gallery, "eve", photo(2))
        assert answer.status_code == 409 and "fingerprint" in answer.json()["error"]
        uncalibrated = httpx.post(
            f"{other.url}/v1/verify", files=files(photo(0), photo(1)), data={"far": "1e-3"}
        )
        assert uncalibrated.status_code == 400
        assert "no FAR calibration" in uncalibrated.json()["error"]
    finally:
        other.kill()


def test_faces_carry_their_quality(server):
    srv, key = server
    image = FACES.render(0, 0)  # a face the detector finds
    detected = httpx.post(f"{srv.url}/v1/detect", files=files(photo(0))).json()["images"][0]
    face = detected["faces"][0]
    expected = face_quality(image, face["box"], np.asarray(face["landmarks"])).as_dict()
    assert face["quality"] == pytest.approx(expected, abs=1e-4)
    assert "liveness" not in face or face["liveness"] is None  # anti-spoofing is off
    verified = httpx.post(f"{srv.url}/v1/verify", files=files(photo(0), photo(0))).json()
    assert verified["faces"][0]["quality"] == face["quality"]
    gallery = new_gallery(srv, key)
    enrolled = enroll(srv.url, key, gallery, "dora", photo(0)).json()
    assert enrolled["faces"][0]["box"] == face["box"]
    assert (
        search(srv.url, gallery, photo(0))["face"]["quality"]["total"] == face["quality"]["total"]
    )


def _http_answer(sock: socket.socket) -> str:
    """One HTTP answer (head and its Content-Length of body) read from ``sock``."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def test_chunked_body_over_the_limit_gets_413(server):
    """A body without Content-Length is counted while it streams in."""
    srv, _ = server
    request = (
        b"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(request)
        for _ in range(25 << 4):  # 25 MiB, more than the 20 MiB allowed, unless answered first
            if select.select([sock], [], [], 0)[0]:
                break
            with contextlib.suppress(OSError):
                sock.sendall(chunk)
        answer = _http_answer(sock)
    assert answer.startswith("HTTP/1.1 413") and "over the 20971520 allowed" in answer
    assert httpx.get(f"{srv.url}/health").status_code == 200


def test_a_bearer_key_writes_as_the_api_key_header_does(server):
    """``Authorization: Bearer KEY`` (what most HTTP clients send) is the same key; /docs
    offers both schemes on every write and on no read."""
    srv, key = server
    gallery = new_gallery(srv, key)
    bearer = {"Authorization": f"Bearer {key}"}
    url = f"{srv.url}/v1/galleries/{gallery}"
    added = httpx.post(f"{url}/people/ann", files=files(photo(0)), headers=bearer, timeout=120)
    assert added.status_code == 201 and added.json()["added"] == 1
    assert httpx.delete(f"{url}/people/ann", headers=bearer).status_code == 200
    assert httpx.delete(url, headers=bearer).status_code == 200
    api = httpx.get(f"{srv.url}/openapi.json").json()
    schemes = api["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    secured = {
        (method, path)
        for path, methods in api["paths"].items()
        for method, operation in methods.items()
        if operation.get("security")
    }
    assert secured == {
        ("post", "/v1/galleries"),
        ("delete", "/v1/galleries/{gallery}"),
        ("post", "/v1/galleries/{gallery}/people/{person}"),
        ("delete", "/v1/galleries/{gallery}/people/{person}"),
    }


def test_openapi_documents_bodies_and_answers(server):
    srv, _ = server
    api = httpx.get(f"{srv.url}/openapi.json").json()
    verify = api["paths"]["/v1/verify"]["post"]
    body = verify["requestBody"]["content"]
    assert {"images", "far", "threshold"} <= set(body["application/json"]["schema"]["properties"])
    assert (
        body["multipart/form-data"]["schema"]["properties"]["image"]["items"]["format"] == "binary"
    )
    answer = verify["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    verified = api["components"]["schemas"][answer.rsplit("/", 1)[1]]
    assert {"similarity", "same", "threshold", "far", "faces"} <= set(verified["properties"])
    search = api["paths"]["/v1/galleries/{gallery}/search"]["post"]["requestBody"]["content"]
    assert search["application/json"]["schema"]["properties"]["top_k"]["maximum"] == 100
    assert "quality" in api["components"]["schemas"]["Face"]["properties"]
    misspelt = httpx.post(
        f"{srv.url}/v1/verify", files=files(photo(0), photo(1)), data={"fra": "1"}
    )
    assert misspelt.status_code == 400 and "fra" in misspelt.json()["error"]
