"""Gallery round trips: enroll, search, update, remove, persist, reload, refuse mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceforge.errors import CheckpointError, ConfigError, DataError, FormatError
from faceforge.inference.matching.gallery import (
    METADATA_FILE,
    Gallery,
    edit_gallery,
    load_or_create,
)

DIM = 16


def people(seed: int = 0, count: int = 6, images: int = 3) -> dict[str, np.ndarray]:
    """Each person: a random direction plus small noise per image."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, DIM))
    return {
        f"person{i:02d}": centres[i] + 0.1 * rng.normal(size=(images, DIM)) for i in range(count)
    }


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "pq"])
@pytest.mark.parametrize("mode", ["mean", "all"])
def test_search_finds_the_right_person(index_type: str, mode: str) -> None:
    data = people()
    gallery = Gallery(DIM, "fp", index_type=index_type, mode=mode, nlist=2)
    for name, embeddings in data.items():
        gallery.add(name, embeddings[:2])
    queries = np.stack([e[2] for e in data.values()])
    results = gallery.search(queries, top_k=3)
    assert [r[0].name for r in results] == list(data)
    for result in results:
        assert len(result) == 3 and len({m.name for m in result}) == 3
        assert [m.score for m in result] == sorted((m.score for m in result), reverse=True)


def test_scores_are_cosine_similarities() -> None:
    data = people()
    gallery = Gallery(DIM, "fp", mode="mean")
    for name, embeddings in data.items():
        gallery.add(name, embeddings)
    query = data["person03"][0]
    expected = {name: float(unit(query) @ unit(unit(e).mean(axis=0))) for name, e in data.items()}
    for match in gallery.search(query, top_k=len(data))[0]:
        assert match.score == pytest.approx(expected[match.name], abs=1e-5)
    gallery_all = Gallery(DIM, "fp", mode="all")
    for name, embeddings in data.items():
        gallery_all.add(name, embeddings)
    best = gallery_all.search(query, top_k=1)[0][0]
    assert best.score == pytest.approx(1.0, abs=1e-5)  # the query itself is enrolled


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "pq"])
def test_add_remove_and_persist(tmp_path: Path, index_type: str) -> None:
    data = people()
    gallery = Gallery(DIM, "fp", index_type=index_type, model="tiny", nlist=2)
    for name, embeddings in data.items():
        gallery.add(name, embeddings[:1])
    gallery.search(data["person00"][0])  # builds the index: later edits are incremental
    gallery.add("person00", data["person00"][1:])  # more images of an enrolled person
    gallery.remove("person01")
    assert gallery.num_images("person00") == 3 and "person01" not in gallery
    found = gallery.search(data["person01"][2], top_k=len(data))[0]
    assert "person01" not in {m.name for m in found} and len(found) == len(data) - 1
    gallery.save(tmp_path)
    loaded = Gallery.load(tmp_path)
    assert loaded.names == gallery.names and loaded.model == "tiny"
    queries = np.stack([e[2] for e in data.values()])
    for before, after in zip(gallery.search(queries), loaded.search(queries), strict=True):
        assert [m.name for m in before] == [m.name for m in after]
        np.testing.assert_allclose([m.score for m in before], [m.score for m in after], atol=1e-6)
    loaded.add("newcomer", data["person01"])  # editing a reloaded gallery keeps ids apart
    assert loaded.search(data["person01"][0], top_k=1)[0][0].name == "newcomer"
    loaded.save(tmp_path)
    assert len(list(tmp_path.glob("gallery-*.npz"))) == 1  # the previous data file is gone
    assert "newcomer" in Gallery.load(tmp_path)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "pq"])
def test_after_removals_every_kept_person_is_still_found_as_themselves(index_type: str) -> None:
    """An IVF index in an IndexIDMap2 answered with a neighbour's id after one removal (the
    map was compacted, its lists were not), and FAISS aborted after a few dozen."""
    data = people(count=40, images=1)
    gallery = Gallery(DIM, "fp", index_type=index_type, nlist=4, nprobe=4)  # exhaustive
    for name, embeddings in data.items():
        gallery.add(name, embeddings)
    gallery.search(data["person00"][0])  # built: the removals below are incremental
    for i in range(0, 40, 3):
        gallery.remove(f"person{i:02d}")
    kept = [name for name in data if name in gallery]
    found = gallery.search(np.concatenate([data[name] for name in kept]), top_k=1)
    assert [matches[0].name for matches in found] == kept


def test_a_stored_ivf_index_in_an_id_map_is_rebuilt_from_the_embeddings(
    tmp_path: Path, monkeypatch
) -> None:
    data = people()
    with monkeypatch.context() as patch:  # faceforge 0.3 wrapped IVF in an IndexIDMap2
        patch.setattr("faceforge.inference.matching.index.OWN_IDS", frozenset())
        old = Gallery(DIM, "fp", index_type="ivf", nlist=2)
        for name, embeddings in data.items():
            old.add(name, embeddings)
        old.save(tmp_path)
    loaded = Gallery.load(tmp_path)
    loaded.remove("person01")
    found = loaded.search(np.stack([e[0] for n, e in data.items() if n != "person01"]))
    assert [matches[0].name for matches in found] == [n for n in data if n != "person01"]


def test_model_mismatch_is_refused(tmp_path: Path) -> None:
    gallery = Gallery(DIM, "model-a")
    gallery.add("x", np.ones(DIM))
    gallery.save(tmp_path)
    assert load_or_create(tmp_path, DIM, "model-a").names == ["x"]
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_or_create(tmp_path, DIM, "model-b")
    with pytest.raises(CheckpointError, match="32-d"):
        load_or_create(tmp_path, 32, "model-a")
    assert len(load_or_create(tmp_path / "new", DIM, "model-b")) == 0


def test_metadata_is_readable_json(tmp_path: Path) -> None:
    gallery = Gallery(DIM, "abc", model="mobilefacenet from ckpt.pt")
    gallery.add("alice", np.ones((2, DIM)))
    gallery.save(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    assert meta["model"] == {
        "fingerprint": "abc",
        "embedding_size": DIM,
        "description": "mobilefacenet from ckpt.pt",
    }
    assert meta["people"] == {"alice": 2} and meta["index"]["type"] == "flat"


def test_interrupted_save_keeps_the_previous_gallery(tmp_path: Path) -> None:
    gallery = Gallery(DIM, "fp")
    gallery.add("alice", np.ones(DIM))
    gallery.save(tmp_path)
    # a crash after writing the new data file but before the metadata switch
    (tmp_path / "gallery-000099.npz").write_bytes(b"partial")
    assert Gallery.load(tmp_path).names == ["alice"]


def test_damaged_or_missing_galleries(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="enroll first"):
        Gallery.load(tmp_path)
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(FormatError, match="not a faceforge gallery"):
        Gallery.load(tmp_path)
    gallery = Gallery(DIM, "fp")
    gallery.add("alice", np.ones(DIM))
    gallery.save(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    meta["people"]["bob"] = 1
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="does not match"):
        Gallery.load(tmp_path)


def test_bad_input() -> None:
    gallery = Gallery(DIM, "fp")
    with pytest.raises(DataError, match="embeddings"):
        gallery.add("x", np.ones((2, DIM + 1)))
    with pytest.raises(DataError, match="not in the gallery"):
        gallery.remove("nobody")
    with pytest.raises(DataError, match="query"):
        gallery.search(np.ones(DIM + 1))
    assert gallery.search(np.ones(DIM)) == [[]]
    ivf = Gallery(DIM, "fp", index_type="ivf", nlist=8)
    ivf.add("x", np.ones(DIM))
    with pytest.raises(DataError, match="IVF"):
        ivf.search(np.ones(DIM))


def test_data_without_its_gallery_json_is_refused_not_replaced(tmp_path: Path) -> None:
    """Enrolling into a folder whose gallery.json was lost started a new gallery, and its
    first save deleted the old data file."""
    gallery = Gallery(DIM, "fp")
    gallery.add("ann", people()["person00"])
    gallery.save(tmp_path)
    (tmp_path / METADATA_FILE).unlink()
    data_file = next(tmp_path.glob("gallery-*.npz"))
    for open_it in (lambda: load_or_create(tmp_path, DIM, "fp"), lambda: Gallery.load(tmp_path)):
        with pytest.raises(FormatError, match=r"holds gallery data \(gallery-0+1\.npz\) but no"):
            open_it()
    assert data_file.exists()


def test_an_existing_gallery_keeps_its_index_and_mode_and_says_so(tmp_path: Path) -> None:
    """--index hnsw --mode all on an existing flat, mean gallery was ignored in silence."""
    with edit_gallery(tmp_path, DIM, "fp", index_type="flat", mode="mean") as gallery:
        gallery.add("ann", people()["person00"])
    with edit_gallery(tmp_path, DIM, "fp", index_type=None, mode=None) as gallery:
        gallery.add("bob", people()["person01"])  # left out: the gallery's own
    refused = pytest.raises(ConfigError, match=r"keeps index_type 'flat', not 'hnsw': leave the")
    with refused, edit_gallery(tmp_path, DIM, "fp", index_type="hnsw", mode=None):
        pass
    loaded = Gallery.load(tmp_path)
    assert (loaded.index_type, loaded.mode, loaded.names) == ("flat", "mean", ["ann", "bob"])
