"""Gallery index types by name: what each builder makes, and the error for an unknown one."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from faceforge.errors import DataError, UnknownChoiceError
from faceforge.inference.matching.gallery import METADATA_FILE, Gallery
from faceforge.inference.matching.index import (
    INDEX_TYPES,
    PQ_TRAINING,
    IndexSettings,
    apply_settings,
    build_index,
    list_count,
    needs_retraining,
)


def unit_vectors(count: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_registered_index_types() -> None:
    assert INDEX_TYPES.names() == ["flat", "hnsw", "ivf", "pq"]


@pytest.mark.parametrize(
    ("index_type", "inner"),
    [
        ("flat", faiss.IndexFlatIP),
        ("hnsw", faiss.IndexHNSWFlat),
        ("ivf", faiss.IndexIVFFlat),
        ("pq", faiss.IndexRefineFlat),
    ],
)
def test_each_type_finds_a_stored_vector_under_its_id(index_type: str, inner: type) -> None:
    vectors = unit_vectors(64)
    ids = np.arange(100, 164, dtype=np.int64)
    index = build_index(index_type, vectors, ids, IndexSettings(nlist=4, nprobe=4, hnsw_m=8))
    mapped = faiss.downcast_index(index.index) if index_type != "ivf" else index  # own ids
    assert isinstance(mapped, inner) and index.ntotal == 64
    scores, found = index.search(vectors[10:11], 1)
    assert found[0, 0] == 110 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_ivf_list_count_and_search_depth() -> None:
    vectors = unit_vectors(100)
    ids = np.arange(100, dtype=np.int64)
    automatic = build_index("ivf", vectors, ids, IndexSettings(nprobe=64))
    assert list_count(automatic) == 10  # about sqrt(100)
    assert faiss.extract_index_ivf(automatic).nprobe == 10  # never more than the lists
    apply_settings(automatic, IndexSettings(nprobe=3))
    assert faiss.extract_index_ivf(automatic).nprobe == 3
    assert list_count(build_index("flat", vectors, ids, IndexSettings())) is None
    with pytest.raises(DataError, match="needs at least 200 enrolled vectors"):
        build_index("ivf", vectors, ids, IndexSettings(nlist=200))


def test_an_automatic_ivf_list_count_stays_automatic(tmp_path: Path) -> None:
    """Saved as automatic (0) beside the index of 7 lists it chose, and chosen anew when
    the grown gallery is retrained: a count fixed at the first search of a small gallery
    (1 list) would make every later search scan every vector."""
    gallery = Gallery(8, "fp", index_type="ivf", mode="all")
    gallery.add("someone", unit_vectors(49))
    gallery.save(tmp_path)
    assert json.loads((tmp_path / METADATA_FILE).read_text())["index"] == {
        "type": "ivf",
        "nlist": 0,
        "nprobe": 8,
        "hnsw_m": 32,
        "rerank": 8,
    }
    loaded = Gallery.load(tmp_path)
    assert loaded.settings == IndexSettings(nlist=0, nprobe=8, hnsw_m=32)
    assert list_count(loaded._index) == 7
    loaded.add("others", unit_vectors(400, seed=1))  # 449 >= 4 x 49: retrained at 21 lists
    loaded.search(unit_vectors(1))
    assert list_count(loaded._index) == 21


def test_unknown_index_type_lists_the_choices() -> None:
    message = "unknown gallery index type --index='annoy'; valid choices: flat, hnsw, ivf, pq"
    with pytest.raises(UnknownChoiceError, match=message):
        build_index("annoy", unit_vectors(4), np.arange(4), IndexSettings())
    with pytest.raises(UnknownChoiceError, match="index_type='annoy'; valid choices: flat,"):
        Gallery(8, "fp", index_type="annoy")


def test_pq_ranks_by_exact_similarity_after_the_compressed_scan() -> None:
    """Re-ranked scores are the exact inner products, and the top match of noisy queries
    (cosine about 0.6 to an enrolled vector, as a second photo) is exact search's."""
    vectors = unit_vectors(2000, dim=128, seed=1)
    queries = (0.6 * vectors[:50] + 0.8 * unit_vectors(50, dim=128, seed=3)).astype(np.float32)
    index = build_index("pq", vectors, np.arange(2000), IndexSettings(rerank=4))
    assert faiss.downcast_index(index.index).k_factor == 4
    scores, found = index.search(queries, 3)
    exact = queries @ vectors.T
    assert (found[:, 0] == exact.argmax(1)).all()
    np.testing.assert_allclose(scores, np.take_along_axis(exact, found, axis=1), atol=1e-5)
    apply_settings(index, IndexSettings(rerank=16))
    assert faiss.downcast_index(index.index).k_factor == 16


def test_a_trained_index_is_retrained_as_the_gallery_grows() -> None:
    gallery = Gallery(8, "fp", index_type="pq", mode="all")
    gallery.add("first", unit_vectors(3))
    gallery.search(unit_vectors(1))  # trained on 3 vectors (topped up with random ones)
    trained = gallery._index
    gallery.add("second", unit_vectors(8, seed=1))  # 11 < 4 x 3: kept, vectors appended
    assert gallery._index is trained and trained.ntotal == 11
    gallery.add("third", unit_vectors(1, seed=2))  # 12 = 4 x 3: rebuilt when next searched
    assert gallery._index is None
    assert gallery.search(unit_vectors(8, seed=1)[2:3], 1)[0][0].name == "second"
    assert needs_retraining("ivf", 100, 400) and not needs_retraining("flat", 100, 400)
    assert not needs_retraining("pq", PQ_TRAINING[1], 10 * PQ_TRAINING[1])
