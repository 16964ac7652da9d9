"""The store and the galleries that follow it, without a server: names, a change that
cannot be applied, readers beside a writer, the connection pool."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from faceforge.errors import DataError
from faceforge.inference.matching.gallery import Gallery
from faceforge.serve.galleries import Galleries
from faceforge.serve.sqlite_store import SqliteStore
from faceforge.serve.store import ConflictError, GalleryInfo, StoreUnavailable, check_name

FINGERPRINT = "f" * 16


def _store(tmp_path: Path, pool: int = 4) -> SqliteStore:
    store = SqliteStore(f"sqlite:///{tmp_path / 'faces.db'}", pool)
    store.create_gallery(GalleryInfo("g", FINGERPRINT, 4, "tiny"))
    return store


def _vectors(k: int = 1) -> np.ndarray:
    return np.eye(4, dtype=np.float32)[:k]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (" ", "needs a non-empty name"),
        ("a/b", "holds a slash or a control character"),
        ("a\x00b", "holds a slash or a control character"),
        ("dana ", "starts or ends with spaces"),
        ("x" * 201, "201 characters: at most 200"),
        ("..", "is a path step URLs cannot hold"),  # clients resolve /v1/galleries/..
        (".", "is a path step URLs cannot hold"),
        ("a\ud800b", "is not UTF-8 text"),  # a lone surrogate: a 500 when stored
    ],
)
def test_names_the_api_cannot_address_are_refused(tmp_path: Path, name: str, message: str):
    store = _store(tmp_path)
    with pytest.raises(DataError, match=message):
        store.add_faces("g", name, _vectors(), FINGERPRINT)
    with pytest.raises(DataError, match=message):
        store.create_gallery(GalleryInfo(name, FINGERPRINT, 4, "tiny"))
    for delete in (lambda: store.delete_gallery(name), lambda: store.delete_person("g", name)):
        with pytest.raises(DataError, match=message):  # a NUL was a 500 on PostgreSQL
            delete()
    assert store.last_seq() == 1 and check_name("Zoë Lee-2", "person") == "Zoë Lee-2"


def test_faces_of_another_model_are_refused_in_the_transaction(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(ConflictError, match="not of fingerprint 0123"):
        store.add_faces("g", "bob", _vectors(), "0123")
    assert store.faces("g") == {}


def test_a_change_that_cannot_be_applied_is_passed_over(tmp_path: Path) -> None:
    """A blank name written by an older server used to stop every server's change feed
    at it, and every start on the store."""
    store = _store(tmp_path)
    galleries = Galleries(store, FINGERPRINT, 4)
    with store._transaction(write=True) as cur:  # what an older server let through
        store._write(cur, "g", " ")
        cur.execute(
            "INSERT INTO faces (gallery, person, vector) VALUES ('g', ' ', ?)", (b"\0" * 16,)
        )
    store.add_faces("g", "bob", _vectors(), FINGERPRINT)
    assert galleries.sync() == 2 and galleries.people("g") == {"bob": 1}
    assert Galleries(store, FINGERPRINT, 4).people("g") == {"bob": 1}  # a fresh start


def test_readers_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    store = _store(tmp_path)
    writer = sqlite3.connect(tmp_path / "faces.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert [info.name for info in store.galleries()] == ["g"]  # else 30 s, then a 503
        assert store.faces("g") == {} and store.last_seq() == 1
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_broken_connection_is_replaced_and_a_failed_connect_keeps_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path, pool=1)
    connect, attempts = store._connect, []

    def flaky() -> object:
        attempts.append(1)
        if len(attempts) == 1:
            raise StoreUnavailable("cannot connect to the store")
        return connect()

    monkeypatch.setattr(store, "_broken", lambda conn: True)  # as after a database restart
    with pytest.raises(KeyError), store._transaction():
        raise KeyError("a request that failed on that connection")
    monkeypatch.undo()
    monkeypatch.setattr(store, "_connect", flaky)
    with pytest.raises(StoreUnavailable):
        store.galleries()
    done = threading.Event()
    reader = threading.Thread(target=lambda: (store.galleries(), done.set()))
    reader.start()
    reader.join(timeout=60)  # the only slot used to be lost: this read waited forever
    assert done.is_set() and len(attempts) == 2


def test_a_gallery_another_server_just_made_is_found_at_once(tmp_path: Path) -> None:
    """A client may create a gallery through one worker and enroll through another before
    that one's change feed has come round (it answered 404)."""
    store = _store(tmp_path)
    other_server = Galleries(store, FINGERPRINT, 4)
    store.create_gallery(GalleryInfo("new", FINGERPRINT, 4, "tiny"))
    assert other_server.check("new").fingerprint == FINGERPRINT  # no sync called
    assert other_server.people("new") == {}
    with pytest.raises(DataError, match="there is no gallery 'missing'"):
        other_server.check("missing")


def test_a_gallery_rebuilding_its_index_holds_up_its_own_searches_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lock for every gallery made a search of any gallery wait for another's HNSW
    rebuild after a removal (seconds at a million faces)."""
    store = _store(tmp_path)
    store.create_gallery(GalleryInfo("other", FINGERPRINT, 4, "tiny"))
    for gallery in ("g", "other"):
        store.add_faces(gallery, "bob", _vectors(), FINGERPRINT)
    galleries = Galleries(store, FINGERPRINT, 4)
    rebuilding, release = threading.Event(), threading.Event()
    search = Gallery.search

    def slow_in_g(gallery: Gallery, queries, top_k):
        if gallery is galleries.check("g"):
            rebuilding.set()
            release.wait(60)
        return search(gallery, queries, top_k)

    monkeypatch.setattr(Gallery, "search", slow_in_g)
    held = threading.Thread(target=galleries.search, args=("g", _vectors(), 1))
    held.start()
    try:
        assert rebuilding.wait(60)
        found: list = []
        other = threading.Thread(
            target=lambda: found.append(galleries.search("other", _vectors(), 1))
        )
        other.start()
        other.join(30)  # held up, it would wait until g's search is released below
        assert found and found[0][0][0].name == "bob"
    finally:
        release.set()
        held.join(60)
