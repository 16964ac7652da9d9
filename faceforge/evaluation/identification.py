"""1:N identification: closed-set CMC, open-set TPIR@FPIR and a MegaFace-style distractor run.

All scores are cosine similarities (inner products of L2-normalised float32 embeddings).

* :func:`identify` searches probes in a gallery: rank-k identification rates (CMC) over the
  probes whose identity is enrolled, and TPIR at FPIR targets using the probes whose
  identity is not (open-set, NIST FRVT style: a mated probe counts when its rank-1 identity is
  right *and* its score is above the threshold that lets through at most ``FPIR`` of the
  non-mated probes).
* :func:`megaface` follows the MegaFace challenge 1 protocol (Kemelmacher-Shlizerman et al.,
  2016, https://arxiv.org/abs/1512.00596): for every probe identity, each of its images in turn
  is the gallery mate, hidden among N distractors, and every other image of the identity is a
  probe; rank-k counts the probes whose mate beats all but k-1 distractors. Verification
  pairs: all same-identity probe pairs (genuine) against all probe x distractor pairs
  (impostor), reporting TAR at FAR = 1e-6. Distractors are streamed in chunks through a FAISS
  exact inner-product index and only each probe's top-k distractor scores are kept, so a
  million 512-d distractors (memory-mapped ``.npy``) need well under a few GB. The numbers are
  exact: k covers the ranks and ``FAR x probes x distractors + 1`` scores per probe, which
  contain the global top impostor scores that fix the FAR threshold (keep FAR small: the
  kept scores grow with it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.core.vectors import finite_embeddings, l2_normalize
from faceforge.errors import DataError

RANKS: tuple[int, ...] = (1, 5, 10)
FPIR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
MEGAFACE_FAR_TARGETS: tuple[float, ...] = (1e-6,)
#: cap on the per-probe top-k scores kept (probes x k float32), about 1 GB
MAX_KEPT_SCORES = 1 << 28


# ------------------------------------------------------------------------- gallery / probe


@dataclass
class IdentificationResult:
    """Closed-set CMC over mated probes and open-set TPIR@FPIR (empty without non-mated)."""

    num_mated: int
    num_non_mated: int
    cmc: dict[int, float]
    tpir_at_fpir: dict[float, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_mated": self.num_mated,
            "num_non_mated": self.num_non_mated,
            "cmc": {str(k): v for k, v in self.cmc.items()},
            "tpir_at_fpir": {f"{k:g}": v for k, v in self.tpir_at_fpir.items()},
        }


def threshold_at_rate(impostor_scores: np.ndarray, rate: float, total: int | None = None) -> float:
    """Score threshold ``t`` such that at most ``floor(rate * total)`` impostor scores are
    ``> t`` (accept when ``score > t``); ``-inf`` when every impostor may pass.

    ``impostor_scores`` may be just the highest scores of a larger population of ``total``.
    """
    total = len(impostor_scores) if total is None else total
    allowed = math.floor(rate * total * (1 + 1e-12))  # guard against 1e-3 * 1000 = 0.999..
    if allowed >= len(impostor_scores):
        return -math.inf
    return float(np.partition(impostor_scores, -(allowed + 1))[-(allowed + 1)])


def identify(
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    probes: np.ndarray,
    probe_ids: np.ndarray,
    *,
    ranks: tuple[int, ...] = RANKS,
    fpir_targets: tuple[float, ...] = FPIR_TARGETS,
    chunk: int = 4096,
) -> IdentificationResult:
    """Search ``probes`` in ``gallery`` (raw embeddings with identity labels).

    An identity's score is its best-matching gallery image; the rank of a mated probe is
    the number of identities scoring at least as high as its own: a tie counts against it,
    as in :func:`megaface`, so an all-zero probe (every score 0) finds no one.
    """
    gallery = finite_embeddings(gallery, "gallery")
    probes = finite_embeddings(probes, "probes")
    gallery_ids, probe_ids = np.asarray(gallery_ids), np.asarray(probe_ids)
    if len(gallery) != len(gallery_ids) or len(probes) != len(probe_ids):
        raise DataError("each embedding needs exactly one identity label")
    if len(gallery) == 0:
        raise DataError("the gallery is empty")
    order = np.argsort(gallery_ids, kind="stable")
    identities, starts = np.unique(gallery_ids[order], return_index=True)
    gallery = l2_normalize(gallery, np.float32)[order]
    probes = l2_normalize(probes, np.float32)
    position = np.searchsorted(identities, probe_ids)
    mated = (position < len(identities)) & (
        identities[np.minimum(position, len(identities) - 1)] == probe_ids
    )

    rank = np.zeros(len(probes), np.int64)
    top_score = np.zeros(len(probes), np.float32)
    for lo in range(0, len(probes), chunk):
        scores = np.maximum.reduceat(probes[lo : lo + chunk] @ gallery.T, starts, axis=1)
        top_score[lo : lo + chunk] = scores.max(1)
        own = scores[
            np.arange(len(scores)), np.minimum(position[lo : lo + chunk], len(identities) - 1)
        ]
        rank[lo : lo + chunk] = (scores >= own[:, None]).sum(1)

    cmc = {r: float(np.mean(rank[mated] <= r)) if mated.any() else math.nan for r in ranks}
    tpir: dict[float, float] = {}
    if (~mated).any() and mated.any():
        correct = rank[mated] == 1  # found first, ties counting against it as in the CMC
        for target in fpir_targets:
            t = threshold_at_rate(top_score[~mated], target)
            tpir[target] = float(np.mean(correct & (top_score[mated] > t)))
    return IdentificationResult(int(mated.sum()), int((~mated).sum()), cmc, tpir)


# --------------------------------------------------------------------------- distractors


def open_npy(path: str | Path) -> np.ndarray:
    """Memory-map a ``.npy`` array (pickled object arrays are refused); DataError if unreadable."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


class NpyFolder:
    """Distractor embeddings stored as ``.npy`` files (each (n, D) float) in a folder,
    memory-mapped and yielded file by file in name order (no pickles are loaded)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.files = sorted(self.folder.glob("*.npy")) if self.folder.is_dir() else []
        if not self.files:
            raise DataError(f"{self.folder}: no .npy embedding files found")
        shapes = [open_npy(f).shape for f in self.files]
        if any(len(s) != 2 or s[1] != shapes[0][1] for s in shapes):
            raise DataError(f"{self.folder}: every .npy must hold (n, D) embeddings of one size")
        self.count = sum(s[0] for s in shapes)
        self.dim = shapes[0][1]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.files:
            yield open_npy(path)


def _chunks(source: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    for block in source:
        for lo in range(0, len(block), size):
            yield block[lo : lo + size]


class _TopK:
    """Running top-``k`` scores per probe (descending after :meth:`result`)."""

    def __init__(self, num_probes: int, k: int) -> None:
        self.k = k
        self.scores = np.full((num_probes, 0), -np.inf, np.float32)

    def merge(self, scores: np.ndarray) -> None:
        both = np.concatenate([self.scores, scores], axis=1)
        if both.shape[1] > self.k:
            both = -np.partition(-both, self.k - 1, axis=1)[:, : self.k]
        self.scores = both

    def result(self) -> np.ndarray:
        return -np.sort(-self.scores, axis=1)


@dataclass
class MegaFaceResult:
    """Rank-k identification with distractors and probe-vs-distractor verification."""

    num_probes: int
    num_identities: int
    num_distractors: int
    #: probe/mate pairs evaluated (ordered pairs of two images of one identity)
    num_searches: int
    rank_accuracy: dict[int, float]
    tar_at_far: dict[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_probes": self.num_probes,
            "num_identities": self.num_identities,
            "num_distractors": self.num_distractors,
            "num_searches": self.num_searches,
            "rank_accuracy": {str(k): v for k, v in self.rank_accuracy.items()},
            "tar_at_far": {f"{k:g}": v for k, v in self.tar_at_far.items()},
        }


def megaface(
    probes: np.ndarray,
    probe_ids: np.ndarray,
    distractors: np.ndarray | NpyFolder | Iterable[np.ndarray],
    *,
    num_distractors: int | None = None,
    ranks: tuple[int, ...] = RANKS,
    far_targets: tuple[float, ...] = MEGAFACE_FAR_TARGETS,
    chunk_size: int = 65536,
) -> MegaFaceResult:
    """MegaFace-style identification and verification (see the module docstring).

    ``distractors`` is an (N, D) array (a ``np.load(..., mmap_mode="r")`` memory map is
    fine), an :class:`NpyFolder`, or any iterable of (n, D) blocks with ``num_distractors``
    giving their total (needed up front to size the kept top-k for TAR@FAR). Identities with a
    single probe image take part in verification only as impostor probes.
    """
    probe_ids = np.asarray(probe_ids)
    if len(probes) != len(probe_ids) or len(probes) == 0:
        raise DataError("need a non-empty probe set with one identity label per embedding")
    if num_distractors is None:
        if not isinstance(distractors, (np.ndarray, NpyFolder)):
            raise DataError("pass num_distractors when the distractors are a stream of blocks")
        num_distractors = len(distractors)
    x = l2_normalize(finite_embeddings(probes, "probes"), np.float32)
    num_impostor = len(x) * num_distractors
    keep = _scores_to_keep(len(x), num_distractors, ranks, far_targets)
    source = [distractors] if isinstance(distractors, np.ndarray) else distractors
    distractor_top = _top_distractor_scores(x, source, keep, num_distractors, chunk_size)
    same = probe_ids[:, None] == probe_ids[None, :]
    np.fill_diagonal(same, False)
    probe_index, mate_index = np.nonzero(same)
    genuine = np.einsum("ij,ij->i", x[probe_index], x[mate_index])
    pair_scores = genuine[probe_index < mate_index]  # each unordered genuine pair once
    return MegaFaceResult(
        num_probes=len(x),
        num_identities=len(np.unique(probe_ids)),
        num_distractors=num_distractors,
        num_searches=len(genuine),
        rank_accuracy=_rank_accuracy(genuine, distractor_top, probe_index, ranks),
        tar_at_far=_tar_at_far(pair_scores, distractor_top, num_impostor, far_targets),
    )


def _scores_to_keep(
    num_probes: int, num_distractors: int, ranks: tuple[int, ...], far_targets: tuple[float, ...]
) -> int:
    """How many top distractor scores per probe rank-k and TAR@FAR need: the global
    top-(FAR * impostors + 1) scores are among each probe's own top that many."""
    num_impostor = num_probes * num_distractors
    keep = max([*ranks, *(math.floor(f * num_impostor * (1 + 1e-12)) + 1 for f in far_targets)])
    keep = min(keep, num_distractors)
    if num_probes * keep > MAX_KEPT_SCORES:
        raise DataError(
            f"TAR at FAR {min(far_targets):g}..{max(far_targets):g} over {num_impostor} impostor "
            f"pairs needs the top {keep} scores of each of {num_probes} probes, too many to keep; "
            "use a smaller FAR target, fewer probes or fewer distractors"
        )
    return keep


def _top_distractor_scores(
    x: np.ndarray,
    source: Iterable[np.ndarray] | NpyFolder,
    keep: int,
    num_distractors: int,
    chunk_size: int,
) -> np.ndarray:
    """(probes, keep) best cosine scores of each normalised probe against the distractors,
    descending, searched block by block with FAISS (never all distractors in memory)."""
    import faiss

    top = _TopK(len(x), keep)
    seen = 0
    for block in _chunks(source, chunk_size):
        block = l2_normalize(finite_embeddings(block, "distractors"), np.float32)
        if block.shape[1] != x.shape[1]:
            raise DataError(
                f"distractor embeddings have shape {block.shape}, probes are {x.shape[1]}-d"
            )
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(block)
        scores, _ = index.search(x, min(keep, len(block)))
        top.merge(scores)
        seen += len(block)
    if seen != num_distractors:
        raise DataError(f"expected {num_distractors} distractors, the stream held {seen}")
    return top.result()


def _rank_accuracy(
    genuine: np.ndarray, distractor_top: np.ndarray, probe_index: np.ndarray, ranks: tuple[int, ...]
) -> dict[int, float]:
    """Share of searches (probe ``probe_index[i]`` for its mate, score ``genuine[i]``) whose
    mate beats the probe's k-th best distractor."""
    accuracy = {}
    for r in ranks:
        if not len(genuine):
            accuracy[r] = math.nan
        elif r > distractor_top.shape[1]:
            accuracy[r] = 1.0
        else:
            accuracy[r] = float((genuine > distractor_top[probe_index, r - 1]).mean())
    return accuracy


def _tar_at_far(
    pair_scores: np.ndarray,
    distractor_top: np.ndarray,
    num_impostor: int,
    far_targets: tuple[float, ...],
) -> dict[float, float]:
    """Share of genuine pairs above the threshold that lets ``far`` of all probe-distractor
    pairs through (the kept top scores hold every impostor above it)."""
    tar = {}
    for target in far_targets:
        t = threshold_at_rate(distractor_top.ravel(), target, total=num_impostor)
        tar[target] = float(np.mean(pair_scores > t)) if len(pair_scores) else math.nan
    return tar
