"""``faceforge serve`` set-ups beyond one server: kill -9 during enrolls, two servers or two
workers on one store, a PostgreSQL restart, start options (anti-spoofing, minimum quality,
FAR) and how a start reports itself or fails."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.serve.api_client import enroll, files, new_gallery, photo, search
from tests.serve.conftest import Server, faceforge, postgres_cluster, start_server


def test_kill_during_concurrent_enrolls(checkpoint, tmp_path):
    """kill -9 during 100 concurrent enrolls: every acknowledged one survives, whole."""
    srv, key = start_server(checkpoint, f"sqlite:///{tmp_path / 'faces.db'}")
    gallery = new_gallery(srv, key, mode="all")
    acknowledged: list[str] = []

    def one(i: int) -> None:
        try:
            if enroll(srv.url, key, gallery, f"p{i}", photo(i % 7), photo(i % 7, 1)).is_success:
                acknowledged.append(f"p{i}")
        except httpx.TransportError:
            pass

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        jobs = [pool.submit(one, i) for i in range(100)]
        jobs[30].result()  # some are done, many in flight
        srv.kill()
    srv.start()
    people = httpx.get(f"{srv.url}/v1/galleries/{gallery}/people").json()["people"]
    srv.kill()
    assert acknowledged and set(acknowledged) <= set(people)
    assert set(people.values()) == {2}  # nobody half-written


def test_two_servers_share_postgresql(checkpoint, postgres_url):
    first, key = start_server(checkpoint, postgres_url)
    second = Server(checkpoint, postgres_url)
    try:
        gallery = new_gallery(first, key)
        assert enroll(first.url, key, gallery, "carol", photo(3)).status_code == 201
        for _ in range(200):  # the change feed is polled every 50 ms
            if search(second.url, gallery, photo(3))["identity"] == "carol":
                break
        assert search(second.url, gallery, photo(3))["identity"] == "carol"
    finally:
        first.kill()
        second.kill()


def test_a_server_recovers_when_postgresql_restarts(checkpoint):
    """Connections broken by the restart used to go back to the pool and fail every request
    for good (500s); now each is thrown away after one 503 and the next request reconnects."""
    with postgres_cluster() as cluster:
        server, key = start_server(checkpoint, cluster.url)
        try:
            gallery = new_gallery(server, key)
            assert enroll(server.url, key, gallery, "carol", photo(3)).status_code == 201
            cluster.restart()
            answers = []
            while len(answers) < 10 and (not answers or answers[-1].status_code != 201):
                answers.append(enroll(server.url, key, gallery, "dave", photo(4)))
            assert answers[-1].status_code == 201, [a.text for a in answers]
            for failed in answers[:-1]:  # at most one per pooled connection
                assert failed.status_code == 503
                assert failed.json()["error"].startswith("the store is unavailable: ")
            assert search(server.url, gallery, photo(4))["identity"] == "dave"
        finally:
            server.kill()


def test_workers_share_one_store(checkpoint, tmp_path):
    """``--workers 2`` on SQLite: both processes answer, and what one enrolls the other finds
    (each follows the store's change feed)."""
    store = f"sqlite:///{tmp_path / 'faces.db'}"
    srv = Server(checkpoint, store, "--workers", "2")
    try:
        key = faceforge("serve-key", "--store", store).stdout.strip()
        gallery = new_gallery(srv, key)
        enrolled_by: dict[str, str] = {}  # worker pid -> a person it enrolled
        for i in range(60):  # every request is a new connection, taken by either worker
            answer = enroll(srv.url, key, gallery, f"p{i}", photo(i % 5))
            assert answer.status_code == 201, answer.text
            enrolled_by.setdefault(answer.headers["X-Worker"], f"p{i}")
            if len(enrolled_by) == 2:
                break
        assert len(enrolled_by) == 2, "one worker took every connection"
        for writer, person in enrolled_by.items():
            reader = next(pid for pid in enrolled_by if pid != writer)
            for _ in range(400):  # until the other worker answers (its feed polls every 50 ms)
                answer = httpx.get(f"{srv.url}/v1/galleries/{gallery}/people")
                if answer.headers["X-Worker"] == reader and person in answer.json()["people"]:
                    break
            assert answer.headers["X-Worker"] == reader and person in answer.json()["people"]
    finally:
        srv.kill()


def test_anti_spoof_and_min_quality_refuse_with_their_figures(checkpoint, tmp_path):
    store = f"sqlite:///{tmp_path / 'faces.db'}"
    key = faceforge("serve-key", "--store", store).stdout.strip()
    strict = Server(checkpoint, store, "--anti-spoof", "--liveness-threshold", "1")
    try:  # nothing scores a liveness of 1: every face is a spoof
        gallery = new_gallery(strict, key)
        face = httpx.post(f"{strict.url}/v1/detect", files=files(photo(0))).json()
        face = face["images"][0]["faces"][0]
        assert face["live"] is False and 0 <= face["liveness"] < 1
        for answer in (
            enroll(strict.url, key, gallery, "mallory", photo(0)),
            httpx.post(f"{strict.url}/v1/verify", files=files(photo(0), photo(0))),
            httpx.post(f"{strict.url}/v1/galleries/{gallery}/search", files=files(photo(0))),
        ):
            refused = answer.json()
            assert answer.status_code == 422 and "presentation attack" in refused["error"]
            assert refused["liveness"] == pytest.approx(face["liveness"], abs=1e-5)
            assert refused["liveness_threshold"] == 1
        assert httpx.get(f"{strict.url}/v1/galleries/{gallery}/people").json()["people"] == {}
    finally:
        strict.kill()
    picky = Server(
        checkpoint, store, "--anti-spoof", "--liveness-threshold", "0", "--min-quality", "1"
    )
    try:  # every face is live, none is perfect
        answer = enroll(picky.url, key, gallery, "mallory", photo(0))
        refused = answer.json()
        assert answer.status_code == 422 and refused["min_quality"] == 1
        assert refused["quality"]["total"] < 1 and "face quality" in refused["error"]
        face = httpx.post(f"{picky.url}/v1/detect", files=files(photo(0))).json()
        assert face["images"][0]["faces"][0]["live"] is True
    finally:
        picky.kill()


def test_serve_far_sets_the_default_decision(checkpoint, tmp_path):
    store = f"sqlite:///{tmp_path / 'faces.db'}"
    srv = Server(checkpoint, store, "--far", "1e-3")
    try:
        answer = httpx.post(f"{srv.url}/v1/verify", files=files(photo(0), photo(1))).json()
        assert answer["threshold"]["cosine"] == pytest.approx(0.6) and answer["far"] == 1e-3
    finally:
        srv.kill()
    with pytest.raises(RuntimeError, match="outside the model's calibrated range") as error:
        Server(checkpoint, store, "--far", "1e-6")
    message = str(error.value).removeprefix("serve exited: ").strip()
    assert "Traceback" not in message and "\n" not in message  # one line, no uvicorn trace


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_start_option_is_one_line_and_a_failed_exit(tmp_path, workers):
    store = f"sqlite:///{tmp_path / 'faces.db'}"
    result = faceforge(
        "serve", "--checkpoint", str(tmp_path / "missing.pt"), "--store", store,
        "--workers", workers, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "missing.pt" in result.stderr


def test_start_says_where_it_serves_and_what_would_refuse_writes(checkpoint, tmp_path):
    store = f"sqlite:///{tmp_path / 'faces.db'}"
    server = Server(checkpoint, store)  # a new store: no API key yet
    try:  # printed before uvicorn starts, so all there once /ready answers
        lines = [server.process.stderr.readline().strip() for _ in range(3)]
    finally:
        server.kill()
    assert lines[0].startswith("warning: the decision threshold was tuned on the demo's synth")
    assert lines[1].startswith("serving ")
    assert lines[1].endswith(f" on {server.url}/ (API docs at /docs); store {store}: 0 galleries")
    assert lines[2] == (
        "warning: the store has no API key, so every write (new gallery, enrollment) is refused: "
        f"create one with faceforge serve-key --store {store}"
    )
