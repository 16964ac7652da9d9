"""FAISS indexes for galleries, by name: ``flat`` (exact), ``ivf`` (inverted lists), ``hnsw``
(graph), ``pq`` (compressed scan, exact re-rank). All search by inner product, which is cosine
similarity for unit vectors.

Vectors keep the gallery's ids: an IVF index stores them in its lists, the others are wrapped
in an ``IndexIDMap2`` (see :data:`OWN_IDS`). Flat and IVF indexes delete in place, HNSW and PQ
cannot (see :data:`APPEND_ONLY`). IVF and PQ learn from the vectors they are built on
(:data:`TRAINED`).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from faceforge.core.vectors import l2_normalize
from faceforge.errors import DataError, FormatError, first_line
from faceforge.registry import Registry


@dataclass(frozen=True)
class IndexSettings:
    """Tuning of the approximate indexes (``flat`` has none)."""

    #: IVF list count; 0 picks about sqrt(number of vectors) when the index is built
    nlist: int = 0
    #: IVF lists visited per query (more: slower, closer to exact)
    nprobe: int = 8
    #: HNSW neighbours per node
    hnsw_m: int = 32
    #: PQ: candidates per requested match re-ranked by exact similarity
    rerank: int = 8


def flat_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """Exact search: every query is compared with every vector."""
    return faiss.IndexFlatIP(vectors.shape[1])


def hnsw_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """Approximate search on a navigable small-world graph (fast, cannot delete)."""
    return faiss.IndexHNSWFlat(vectors.shape[1], settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)


def ivf_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """Approximate search in the ``nprobe`` nearest of ``nlist`` k-means cells, trained on
    ``vectors`` (DataError when there are fewer vectors than cells)."""
    dim = vectors.shape[1]
    nlist = settings.nlist or max(1, int(np.sqrt(len(vectors))))
    if len(vectors) < nlist:
        raise DataError(
            f"an IVF index with {nlist} lists needs at least {nlist} enrolled vectors, "
            f"the gallery has {len(vectors)}; use the flat index or fewer lists"
        )
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.nprobe = min(settings.nprobe, nlist)
    return index


#: PQ training set size: at most this many vectors, topped up with random directions
PQ_TRAINING = (256, 65536)


def pq_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """Every vector compressed to 4 bits per 8 dimensions (product quantisation scanned with
    SIMD, "fast scan": Andre et al., https://arxiv.org/abs/1812.09162), the best
    ``rerank * k`` candidates of a search re-ranked by exact similarity to the stored vectors.

    Unlike IVF it visits every vector, so its recall does not depend on how clustered the
    gallery is; the codebooks are trained on a sample (a small gallery's is topped up with
    random unit vectors, and is re-ranked almost exhaustively anyway).
    """
    dim = vectors.shape[1]
    parts = next(m for m in range(max(dim // 8, 1), 0, -1) if dim % m == 0)
    index = faiss.IndexRefineFlat(faiss.IndexPQFastScan(dim, parts, 4, faiss.METRIC_INNER_PRODUCT))
    index.k_factor = settings.rerank
    least, most = PQ_TRAINING
    rng = np.random.default_rng(0)
    sample = vectors[rng.choice(len(vectors), min(len(vectors), most), replace=False)]
    if len(sample) < least:
        extra = rng.standard_normal((least - len(sample), dim)).astype(np.float32)
        sample = np.concatenate([sample, l2_normalize(extra, np.float32)])
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


#: gallery index type -> builder of an empty (trained when needed) index for these vectors
INDEX_TYPES: Registry[faiss.Index] = Registry.of(
    "gallery index type",
    {"flat": flat_index, "ivf": ivf_index, "hnsw": hnsw_index, "pq": pq_index},
)

#: the FAISS class each index type's builder makes (checked when a stored index is read)
INDEX_CLASSES = {
    "flat": faiss.IndexFlatIP,
    "ivf": faiss.IndexIVFFlat,
    "hnsw": faiss.IndexHNSWFlat,
    "pq": faiss.IndexRefineFlat,
}

#: index types that keep the gallery's ids in their own lists. Not in an ``IndexIDMap2``: its
#: removals compact the id map, but an IVF's lists keep the positions they were added at, so
#: after one removal every later vector answered with its neighbour's id
OWN_IDS = frozenset({"ivf"})
#: index types that cannot delete vectors: rebuilt from the stored embeddings after a removal
APPEND_ONLY = frozenset({"hnsw", "pq"})
#: index types trained on the vectors they are built on (see :func:`needs_retraining`)
TRAINED = frozenset({"ivf", "pq"})
#: a trained index is rebuilt once the gallery has grown this many times since training
RETRAIN_GROWTH = 4


def needs_retraining(index_type: str, trained_on: int, size: int) -> bool:
    """Whether a ``index_type`` index trained on ``trained_on`` vectors should be rebuilt now
    that the gallery holds ``size``: a gallery that started small outgrows what its index
    learnt (IVF cells, PQ codebooks), until the training sample is full."""
    return (
        index_type in TRAINED
        and trained_on < PQ_TRAINING[1]
        and size >= RETRAIN_GROWTH * max(trained_on, 1)
    )


def build_index(
    index_type: str, vectors: np.ndarray, ids: np.ndarray, settings: IndexSettings
) -> faiss.Index:
    """An :data:`INDEX_TYPES` index holding (N, D) float32 ``vectors`` as ``ids``."""
    index = INDEX_TYPES.get(index_type, field="--index")(vectors, settings)
    if index_type not in OWN_IDS:
        index = faiss.IndexIDMap2(index)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def list_count(index: faiss.Index) -> int | None:
    """The number of IVF lists of ``index`` (``None`` for other index types)."""
    ivf = faiss.try_extract_index_ivf(index)
    return None if ivf is None else int(ivf.nlist)


def apply_settings(index: faiss.Index, settings: IndexSettings) -> None:
    """Set the search-time knobs of a (deserialised) index from ``settings``."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(settings.nprobe, ivf.nlist)
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexRefineFlat):
        inner.k_factor = settings.rerank


def read_index(
    serialized: np.ndarray, index_type: str, dim: int, ids: np.ndarray
) -> faiss.Index | None:
    """Deserialise a stored gallery index, refusing (FormatError) one that is not an
    ``index_type`` index of ``dim``-d vectors holding exactly ``ids``. ``None`` for an IVF
    index in an ``IndexIDMap2`` (faceforge 0.3, see :data:`OWN_IDS`): it is rebuilt from the
    stored embeddings.

    FAISS allocates what a stored vector's size field declares before reading it; for the
    call its (process-wide) limit is lowered to the bytes given, so a damaged or hostile size
    cannot make it allocate more than the file holds.
    """
    previous = faiss.get_deserialization_vector_byte_limit()
    faiss.set_deserialization_vector_byte_limit(min(previous, 4 * serialized.nbytes + 4096))
    try:
        index = faiss.deserialize_index(serialized)
    except (RuntimeError, MemoryError) as exc:
        reason = first_line(exc)[:200]
        raise FormatError(f"the stored index cannot be read ({reason})") from None
    finally:
        faiss.set_deserialization_vector_byte_limit(previous)
    mapped = isinstance(index, faiss.IndexIDMap2)
    inner = faiss.downcast_index(index.index) if mapped else index
    if type(inner) is not INDEX_CLASSES[index_type] or index.d != dim:
        raise FormatError(f"the stored index is not the {dim}-d {index_type} index declared")
    if mapped == (index_type in OWN_IDS):
        if index_type in OWN_IDS:
            return None
        raise FormatError(f"the stored {index_type} index does not keep the gallery's ids")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise FormatError("the stored index does not rank by cosine similarity")
    held = faiss.vector_to_array(index.id_map) if mapped else _list_ids(index)
    if not np.array_equal(np.sort(held), np.sort(ids)):
        raise FormatError("the stored index does not hold the enrolled people's ids")
    return index


def _list_ids(ivf: faiss.IndexIVF) -> np.ndarray:
    """Every id stored in the inverted lists of ``ivf``."""
    lists = ivf.invlists
    sizes = [lists.list_size(i) for i in range(ivf.nlist)]
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), n).copy() for i, n in enumerate(sizes) if n]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
