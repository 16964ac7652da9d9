"""IJB-B / IJB-C template-based 1:1 verification and 1:N identification, as insightface
reports them (``recognition/arcface_torch/eval_ijbc.py`` and ``_evaluation_/ijb/ijb_1n.py``).

Whittaker et al., "IARPA Janus Benchmark-B Face Dataset", CVPRW 2017; Maze et al.,
"IARPA Janus Benchmark - C", ICB 2018. The order of operations is the protocol:

1. image feature = embedding of the aligned face + embedding of its mirror image, left
   unnormalised (the feature norm weights good faces up), optionally L2-normalised, and
   optionally multiplied by the detector's faceness score (insightface's default: both on
   and normalisation off, "N1D1F2");
2. features averaged within a media (the frames of one video), summed across medias;
3. template feature L2-normalised; a pair scores the inner product of its templates.

1:1 TAR is read at the ROC point whose FAR is nearest each target, exactly as insightface's
table (ROC with collinear points dropped, ties to the larger TAR); the linearly interpolated
TAR is given beside it. 1:N uses the gallery G1 + G2 (IJB-B: S1 + S2) against the mixed
probes: rank-k is the share of probes whose mated gallery template is among the k most
similar, and TPIR at FPIR f counts probes whose mated score beats the ``ceil(f * probes)``-th
highest non-mated score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceforge.core.vectors import finite_embeddings, l2_normalize
from faceforge.errors import DataError
from faceforge.evaluation.roc import roc_curve

#: template feature values gathered at a time: scoring IJB-C's 15.7M pairs of 512-d templates
#: at once would take 2 x 64 GB, in blocks it takes 2 x 8 MB
BLOCK_VALUES = 1 << 20
FAR_TARGETS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FPIR_TARGETS: tuple[float, ...] = (1e-2, 1e-1)
RANKS: tuple[int, ...] = (1, 5, 10)


@dataclass
class TemplateVerification:
    """1:1 results: TAR at each FAR (nearest ROC point, and interpolated) and all scores."""

    tar_at_far: dict[float, float]
    interpolated: dict[float, float]
    scores: np.ndarray
    labels: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "tar_at_far": {f"{k:g}": v for k, v in self.tar_at_far.items()},
            "tar_at_far_interpolated": {f"{k:g}": v for k, v in self.interpolated.items()},
            "num_pairs": len(self.labels),
            "num_genuine": int(self.labels.sum()),
        }


@dataclass
class TemplateIdentification:
    """1:N results over template features."""

    rank_accuracy: dict[int, float]
    tpir_at_fpir: dict[float, float]
    num_probes: int
    num_gallery: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank_accuracy": {str(k): v for k, v in self.rank_accuracy.items()},
            "tpir_at_fpir": {f"{k:g}": v for k, v in self.tpir_at_fpir.items()},
            "num_probes": self.num_probes,
            "num_gallery": self.num_gallery,
        }


def image_features(
    features: np.ndarray,
    faceness: np.ndarray | None = None,
    *,
    normalise: bool = False,
) -> np.ndarray:
    """Per-image features (original + flipped, summed) weighted as the protocol mode asks:
    ``normalise`` removes the feature norm, ``faceness`` multiplies by the detector score."""
    features = finite_embeddings(features, "image features").astype(np.float64)
    if normalise:
        features = l2_normalize(features)
    if faceness is not None:
        faceness = np.asarray(faceness, np.float64)
        if faceness.shape != (len(features),):
            raise DataError(f"{len(features)} features but {faceness.shape} faceness scores")
        features = features * faceness[:, None]
    return features


def template_features(
    features: np.ndarray, template_ids: np.ndarray, media_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted template ids, L2-normalised template features)``: media means summed per
    template (an all-zero template stays zero)."""
    template_ids, media_ids = np.asarray(template_ids), np.asarray(media_ids)
    if not len(features) == len(template_ids) == len(media_ids):
        raise DataError(
            f"{len(features)} features, {len(template_ids)} template ids and "
            f"{len(media_ids)} media ids: one of each per image"
        )
    keys = np.stack([template_ids, media_ids], axis=1)
    medias, media_of_image = np.unique(keys, axis=0, return_inverse=True)
    media_of_image = media_of_image.reshape(-1)
    sums = np.zeros((len(medias), features.shape[1]))
    np.add.at(sums, media_of_image, features)
    means = sums / np.bincount(media_of_image)[:, None]
    templates, template_of_media = np.unique(medias[:, 0], return_inverse=True)
    pooled = np.zeros((len(templates), features.shape[1]))
    np.add.at(pooled, template_of_media.reshape(-1), means)
    return templates, l2_normalize(pooled)


def _block_rows(width: int) -> int:
    """Rows of ``width`` values that make a block of about :data:`BLOCK_VALUES`."""
    return max(1, BLOCK_VALUES // max(width, 1))


def _rows_of(templates: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    rows = np.searchsorted(templates, wanted)
    found = (rows < len(templates)) & (templates[np.minimum(rows, len(templates) - 1)] == wanted)
    if not found.all():
        raise DataError(f"{what} template {wanted[~found][0]} has no images")
    return rows


def tar_at_far(
    labels: np.ndarray, scores: np.ndarray, fars: tuple[float, ...] = FAR_TARGETS
) -> tuple[dict[float, float], dict[float, float]]:
    """TAR at the ROC point nearest each FAR (ties: the point with the higher threshold index,
    so the larger TAR) and the linearly interpolated TAR."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    if labels.shape != scores.shape or not (labels == 1).any() or not (labels == 0).any():
        raise DataError("TAR@FAR needs one score per pair and both genuine and impostor pairs")
    fpr, tpr, _ = roc_curve(-scores, labels == 1, drop_collinear=True)
    nearest, interpolated = {}, {}
    for far in fars:
        # the last index of the smallest distance: insightface searches the reversed curve
        index = len(fpr) - 1 - int(np.argmin(np.abs(fpr[::-1] - far)))
        nearest[far] = float(tpr[index])
        interpolated[far] = float(np.interp(far, fpr, tpr))
    return nearest, interpolated


def verify_templates(
    features: np.ndarray,
    faceness: np.ndarray | None,
    template_ids: np.ndarray,
    media_ids: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    *,
    normalise: bool = False,
    fars: tuple[float, ...] = FAR_TARGETS,
) -> TemplateVerification:
    """IJB 1:1 verification of template ``pairs`` (P, 2) with ``labels`` (1 same, 0 not) from
    per-image ``features`` (original + flipped embeddings, summed, unnormalised); pass
    ``faceness=None`` to leave detector scores out."""
    weighted = image_features(features, faceness, normalise=normalise)
    templates, pooled = template_features(weighted, template_ids, media_ids)
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) != len(labels):
        raise DataError(f"expected (P, 2) template pairs with P labels, got {pairs.shape}")
    scores = np.empty(len(pairs))
    step = _block_rows(pooled.shape[1])
    for start in range(0, len(pairs), step):
        block = pairs[start : start + step]
        first = pooled[_rows_of(templates, block[:, 0], "pair")]
        second = pooled[_rows_of(templates, block[:, 1], "pair")]
        scores[start : start + step] = np.einsum("ij,ij->i", first, second)
    nearest, interpolated = tar_at_far(labels, scores, fars)
    return TemplateVerification(nearest, interpolated, scores, np.asarray(labels))


def _subjects(templates: np.ndarray, subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique templates and the subject of each one's first row."""
    unique, first = np.unique(np.asarray(templates), return_index=True)
    return unique, np.asarray(subjects)[first]


def identify_templates(
    features: np.ndarray,
    faceness: np.ndarray | None,
    template_ids: np.ndarray,
    media_ids: np.ndarray,
    gallery: tuple[np.ndarray, np.ndarray],
    probes: tuple[np.ndarray, np.ndarray],
    *,
    normalise: bool = False,
    ranks: tuple[int, ...] = RANKS,
    fpir_targets: tuple[float, ...] = FPIR_TARGETS,
) -> TemplateIdentification:
    """IJB 1:N search of the ``probes`` templates in the ``gallery`` templates (each given
    as ``(template ids, subject ids)``); every probe subject has one gallery template."""
    weighted = image_features(features, faceness, normalise=normalise)
    templates, pooled = template_features(weighted, template_ids, media_ids)
    gallery_templates, gallery_subjects = _subjects(*gallery)
    probe_templates, probe_subjects = _subjects(*probes)
    mates = np.searchsorted(np.sort(gallery_subjects), probe_subjects)
    order = np.argsort(gallery_subjects, kind="stable")
    if len(np.unique(gallery_subjects)) != len(gallery_subjects) or not np.array_equal(
        gallery_subjects[order][np.minimum(mates, len(order) - 1)], probe_subjects
    ):
        raise DataError("every probe subject needs exactly one gallery template")
    mates = order[mates]
    gallery_features = pooled[_rows_of(templates, gallery_templates, "gallery")]
    probe_features = pooled[_rows_of(templates, probe_templates, "probe")]
    mate_ranks, mated, non_mated = _search_probes(
        probe_features, gallery_features, mates, fpir_targets
    )
    accuracy = {k: float(np.mean(mate_ranks <= k)) for k in ranks}
    tpir = {}
    for fpir in fpir_targets:
        threshold = non_mated[math.ceil(len(mated) * fpir) - 1]
        tpir[fpir] = float(np.mean(mated > threshold))
    return TemplateIdentification(accuracy, tpir, len(mated), len(gallery_templates))


def _search_probes(
    probes: np.ndarray, gallery: np.ndarray, mates: np.ndarray, fpir_targets: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rank of each mate, mated scores, highest non-mated scores in descending order)``:
    the similarity matrix in blocks of probes, keeping only as many non-mated scores as the
    largest FPIR reads (memory: one block plus the probes, not probes x gallery)."""
    if not all(0 < fpir <= 1 for fpir in fpir_targets):
        raise DataError(f"FPIR targets must be in (0, 1], got {fpir_targets}")
    kept = max((math.ceil(len(probes) * fpir) for fpir in fpir_targets), default=1)
    ranks, mated = np.empty(len(probes), np.int64), np.empty(len(probes))
    highest = np.empty(0)
    step = _block_rows(len(gallery))
    for start in range(0, len(probes), step):
        similarity = probes[start : start + step] @ gallery.T
        rows, block_mates = np.arange(len(similarity)), mates[start : start + step]
        scores = similarity[rows, block_mates]
        ranks[start : start + step] = (similarity >= scores[:, None]).sum(axis=1)  # ties miss
        mated[start : start + step] = scores
        similarity[rows, block_mates] = -np.inf
        highest = np.concatenate([highest, similarity.reshape(-1)])
        if len(highest) > kept:
            highest = np.partition(highest, len(highest) - kept)[len(highest) - kept :]
    return ranks, mated, np.sort(highest)[::-1]
