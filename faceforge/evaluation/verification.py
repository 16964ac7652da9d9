"""1:1 verification metrics computed exactly as insightface/facenet report them, plus ROC figures.

The accuracy protocol is the one behind every published LFW / CFP-FP / AgeDB-30 number
(insightface ``recognition/arcface_torch/eval/verification.py``, itself from facenet):

* embeddings are L2-normalised and compared by squared Euclidean distance (0..4);
* a pair is predicted "same" when ``distance < threshold`` (strictly);
* the pairs are cut into ``folds`` contiguous folds (no shuffling; the first ``N % folds``
  folds get one extra pair, as scikit-learn's ``KFold``); for each fold the threshold from
  ``0, 0.01, ..., 3.99`` with the highest accuracy on the *other* folds (first maximum) is
  applied to the fold; the reported accuracy is the mean (and population std) over folds.
* VR@FAR=1e-3 ("val"): per fold, the threshold reaching FAR = 1e-3 on the other folds is
  interpolated on the grid ``0, 0.001, ..., 3.999`` and the fold's validation rate (TAR) and
  FAR at that threshold are averaged. See :func:`threshold_at_far` for how the interpolation
  avoids insightface's crash on repeated FAR values.

Beyond the protocol, ROC figures over all pairs at once (no folds): ``auc``, ``eer`` and
``tar_at_far`` for FAR targets 1e-1 .. 1e-6, see :mod:`faceforge.evaluation.roc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceforge.core.vectors import finite_embeddings, l2_normalize
from faceforge.errors import DataError
from faceforge.evaluation.calibration import thresholds_at_far
from faceforge.evaluation.roc import equal_error_rate, roc_auc, roc_curve, tar_at_far

#: Accuracy thresholds on the squared distance (insightface ``np.arange(0, 4, 0.01)``).
ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
#: Finer grid used to find the VR@FAR threshold (insightface ``np.arange(0, 4, 0.001)``).
VAL_THRESHOLDS = np.arange(0, 4, 0.001)
#: FAR of the insightface/facenet "validation rate".
VAL_FAR_TARGET = 1e-3
#: FAR targets of the all-pairs TAR@FAR table.
FAR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@dataclass
class VerificationResult:
    """Everything :func:`evaluate` measures on one set of pairs.

    ``accuracy`` .. ``far`` follow the insightface 10-fold protocol; ``auc``, ``eer``,
    ``tar_at_far`` and the ROC arrays ``fpr``/``tpr``/``thresholds`` use all pairs at once
    (``nan`` when the pairs lack either same or different examples). ``grid_tpr``/``grid_fpr``
    are insightface's own ROC: per-fold rates on :data:`ACCURACY_THRESHOLDS`, averaged.
    """

    num_pairs: int
    accuracy: float
    accuracy_std: float
    fold_accuracies: np.ndarray
    #: mean of the per-fold best thresholds (squared distance of normalised embeddings)
    best_threshold: float
    fold_thresholds: np.ndarray
    val: float
    val_std: float
    far: float
    auc: float
    eer: float
    tar_at_far: dict[float, float]
    #: squared-distance threshold at each measurable FAR target (the model's calibration)
    far_thresholds: dict[float, float]
    fpr: np.ndarray
    tpr: np.ndarray
    #: accept a pair when its squared distance is <= thresholds[i]; thresholds[0] is -inf
    thresholds: np.ndarray
    grid_tpr: np.ndarray
    grid_fpr: np.ndarray
    #: mean embedding norm before normalisation (set by :func:`evaluate_embeddings`)
    xnorm: float | None = None
    #: squared distance of every pair (what the thresholds apply to), for reports
    distances: np.ndarray | None = None
    #: what makes these numbers less meaningful than they look (e.g. one-class folds)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, include_roc: bool = False) -> dict[str, Any]:
        """Plain-Python summary for JSON (``nan`` becomes ``None``); ROC arrays on request."""
        out: dict[str, Any] = {
            "num_pairs": self.num_pairs,
            "accuracy": _plain(self.accuracy),
            "accuracy_std": _plain(self.accuracy_std),
            "fold_accuracies": [_plain(a) for a in self.fold_accuracies],
            "best_threshold": _plain(self.best_threshold),
            "fold_thresholds": [_plain(t) for t in self.fold_thresholds],
            "val": _plain(self.val),
            "val_std": _plain(self.val_std),
            "far": _plain(self.far),
            "auc": _plain(self.auc),
            "eer": _plain(self.eer),
            "tar_at_far": {f"{k:g}": _plain(v) for k, v in self.tar_at_far.items()},
            "far_thresholds": {f"{k:g}": v for k, v in self.far_thresholds.items()},
            "xnorm": _plain(self.xnorm),
            "warnings": list(self.warnings),
            **self.extra,
        }
        if include_roc:
            out["roc"] = {
                "fpr": self.fpr.tolist(),
                "tpr": self.tpr.tolist(),
                "thresholds": [_plain(t) for t in self.thresholds],
            }
        return out


def _plain(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def xnorm(*embeddings: np.ndarray) -> float:
    """Mean L2 norm of the raw (unnormalised) embedding rows of all arrays given.

    insightface's "XNorm": with flip TTA it averages over the plain and the mirrored views
    separately, so pass both arrays.
    """
    norms = [np.linalg.norm(np.asarray(e, dtype=np.float64), axis=1) for e in embeddings]
    return float(np.concatenate(norms).mean())


def squared_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance (0..4) between the L2-normalised rows of two arrays."""
    diff = l2_normalize(emb1) - l2_normalize(emb2)
    return np.sum(np.square(diff), 1)


def fold_slices(num_pairs: int, folds: int) -> list[np.ndarray]:
    """Test indices of each contiguous fold (scikit-learn ``KFold(shuffle=False)`` sizes)."""
    if not 1 <= folds <= num_pairs:
        raise DataError(
            f"cannot split {num_pairs} pairs into {folds} folds: "
            f"use between 1 and {num_pairs} folds (folds=...), or more pairs"
        )
    return np.array_split(np.arange(num_pairs), folds)


def threshold_at_far(far: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """Distance threshold at which the false accept rate reaches ``target``.

    ``far[i]`` is the FAR at ``thresholds[i]`` (both non-decreasing). The rule: take ``i``, the
    last grid point with ``far[i] <= target``; when ``far[i] < target < far[i + 1]`` return the
    linear interpolation between ``thresholds[i]`` and ``thresholds[i + 1]``, otherwise
    ``thresholds[i]``. When FAR never reaches ``target`` the threshold is 0, as insightface does.

    Where ``far`` has no repeated values this is exactly insightface's
    ``interp1d(far, thresholds, kind="slinear")(target)``; with repeats (FAR is 0 over all
    low thresholds, so nearly always) SciPy refuses to build that interpolant, while this rule
    interpolates between the two neighbouring grid points around the target and picks the
    highest threshold of a plateau that sits exactly on the target.
    """
    far = np.asarray(far, dtype=np.float64)
    if far.max() < target:
        return 0.0
    i = int(np.searchsorted(far, target, side="right")) - 1
    if i < 0:
        return float(thresholds[0])
    if i == len(far) - 1 or far[i] == target:
        return float(thresholds[i])
    t0, t1 = float(thresholds[i]), float(thresholds[i + 1])
    return t0 + (target - far[i]) * (t1 - t0) / (far[i + 1] - far[i])


@dataclass
class _FoldCounts:
    """Per-fold counts of accepted (``distance < threshold``) same/different pairs."""

    accepted_same: np.ndarray  # (folds, thresholds)
    accepted_diff: np.ndarray
    num_same: np.ndarray  # (folds,)
    num_diff: np.ndarray

    @classmethod
    def count(
        cls, dist: np.ndarray, issame: np.ndarray, slices: list[np.ndarray], grid: np.ndarray
    ) -> _FoldCounts:
        same, diff, n_same, n_diff = [], [], [], []
        for idx in slices:
            d, s = dist[idx], issame[idx]
            same.append(np.searchsorted(np.sort(d[s]), grid, side="left"))
            diff.append(np.searchsorted(np.sort(d[~s]), grid, side="left"))
            n_same.append(np.count_nonzero(s))
            n_diff.append(np.count_nonzero(~s))
        return cls(np.array(same), np.array(diff), np.array(n_same), np.array(n_diff))

    def train(self, k: int, num_folds: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Counts on every fold except ``k`` (on all pairs when there is a single fold)."""
        if num_folds == 1:
            return self.accepted_same[0], self.accepted_diff[0], self.num_same[0], self.num_diff[0]
        return (
            self.accepted_same.sum(0) - self.accepted_same[k],
            self.accepted_diff.sum(0) - self.accepted_diff[k],
            int(self.num_same.sum() - self.num_same[k]),
            int(self.num_diff.sum() - self.num_diff[k]),
        )


def _rate(count: np.ndarray, total: int) -> np.ndarray:
    """``count / total``, 0 when ``total`` is 0 (insightface's convention for empty classes)."""
    return count / total if total else np.zeros(np.shape(count))


def one_class_folds(issame: np.ndarray, slices: list[np.ndarray]) -> int:
    """How many folds hold only 'same' or only 'different' pairs."""
    return sum(bool(issame[index].all() or not issame[index].any()) for index in slices)


def fold_warnings(issame: np.ndarray, slices: list[np.ndarray]) -> list[str]:
    """A warning when some folds hold only one class: their accuracy then measures nothing
    but the class balance, and the spread over folds means little. This is what a pair list
    sorted by label (e.g. LFW View 1's pairsDevTest.txt) gives."""
    one_class = one_class_folds(issame, slices)
    if not one_class:
        return []
    return [
        f"{one_class} of {len(slices)} folds hold only 'same' or only 'different' "
        "pairs, so the accuracy and its +- mean little (the pair list is probably sorted by "
        "label): shuffle the pairs (faceforge eval and pack-bin --shuffle-pairs), or use the "
        "official LFW View 2 pairs.txt (10 balanced folds)"
    ]


def collapse_warnings(dist: np.ndarray) -> list[str]:
    """A warning when no threshold of the accuracy grid falls between the smallest and the
    largest pair distance: every threshold then accepts all pairs or none, and the accuracy
    only counts the larger class (50.00 +- 0.00 @ 0.00 on balanced pairs). The embeddings
    point (almost) the same way: in a model early in training, evaluated with BatchNorm
    running statistics that still hold mostly their initial values."""
    low, high = np.searchsorted(ACCURACY_THRESHOLDS, [dist.min(), dist.max()], side="right")
    if low != high:
        return []
    return [
        f"all {len(dist)} pair distances lie within {dist.max() - dist.min():.1e} of each "
        "other, between two thresholds of the 0.01 grid: the embeddings have collapsed to "
        "one direction, so the accuracy only counts the larger class (normal in the first "
        "steps of training, while BatchNorm's running statistics catch up)"
    ]


def _check_pairs(emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray) -> np.ndarray:
    issame = np.asarray(issame)
    if issame.dtype != np.bool_:
        issame = issame.astype(bool)
    finite_embeddings(emb1, "first images of the pairs")
    finite_embeddings(emb2, "second images of the pairs")
    if emb1.shape != emb2.shape:
        raise DataError(
            f"embeddings must be two (N, D) arrays of equal shape, got {emb1.shape} "
            f"and {emb2.shape}"
        )
    if issame.shape != (emb1.shape[0],):
        raise DataError(f"{emb1.shape[0]} pairs of embeddings but issame has {issame.shape}")
    return issame


def _accuracy_folds(
    counts: _FoldCounts, slices: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per fold, the accuracy at the threshold that is best on the other folds (first
    maximum) and that threshold; with the TPR and FPR over the grid, averaged over folds."""
    folds = len(slices)
    fold_acc, fold_thr = np.zeros(folds), np.zeros(folds)
    grid_tpr = np.zeros((folds, len(ACCURACY_THRESHOLDS)))
    grid_fpr = np.zeros_like(grid_tpr)
    for k, idx in enumerate(slices):
        tp, fp, _, n_diff = counts.train(k, folds)
        best = int(np.argmax(tp + (n_diff - fp)))  # correct decisions; ties -> first maximum
        correct = counts.accepted_same[k, best] + counts.num_diff[k] - counts.accepted_diff[k, best]
        fold_acc[k] = float(correct) / len(idx)
        fold_thr[k] = ACCURACY_THRESHOLDS[best]
        grid_tpr[k] = _rate(counts.accepted_same[k], counts.num_same[k])
        grid_fpr[k] = _rate(counts.accepted_diff[k], counts.num_diff[k])
    return fold_acc, fold_thr, grid_tpr.mean(0), grid_fpr.mean(0)


def _validation_folds(
    dist: np.ndarray, issame: np.ndarray, slices: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per fold, the validation rate (TAR) and FAR at the threshold that reaches
    FAR = 1e-3 on the other folds (insightface's VR@FAR)."""
    counts = _FoldCounts.count(dist, issame, slices, VAL_THRESHOLDS)
    fold_val, fold_far = np.zeros(len(slices)), np.zeros(len(slices))
    for k, idx in enumerate(slices):
        _, fp, _, n_diff = counts.train(k, len(slices))
        threshold = threshold_at_far(_rate(fp, n_diff), VAL_THRESHOLDS, VAL_FAR_TARGET)
        accepted, same = dist[idx] < threshold, issame[idx]
        fold_val[k] = _rate(np.count_nonzero(accepted & same), counts.num_same[k])
        fold_far[k] = _rate(np.count_nonzero(accepted & ~same), counts.num_diff[k])
    return fold_val, fold_far


def evaluate(
    emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray, folds: int = 10
) -> VerificationResult:
    """Verification metrics of pairs ``(emb1[i], emb2[i])`` labelled ``issame[i]``.

    Embeddings are raw model outputs (they are L2-normalised here). See the module docstring
    for the exact protocol; the numbers equal insightface's on the same embeddings.

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(600, 64))
    >>> same = np.arange(600) % 2 == 0
    >>> b = np.where(same[:, None], a + 0.5 * rng.normal(size=a.shape), rng.normal(size=a.shape))
    >>> result = evaluate(a, b, same)
    >>> round(result.accuracy, 4), result.auc
    (0.9983, 1.0)
    """
    emb1, emb2 = np.asarray(emb1), np.asarray(emb2)
    issame = _check_pairs(emb1, emb2, issame)
    dist = squared_distances(emb1, emb2)
    slices = fold_slices(len(dist), folds)

    counts = _FoldCounts.count(dist, issame, slices, ACCURACY_THRESHOLDS)
    fold_acc, fold_thr, grid_tpr, grid_fpr = _accuracy_folds(counts, slices)
    fold_val, fold_far = _validation_folds(dist, issame, slices)
    fpr, tpr, thresholds = roc_curve(dist, issame)
    return VerificationResult(
        num_pairs=len(dist),
        accuracy=float(np.mean(fold_acc)),
        accuracy_std=float(np.std(fold_acc)),
        fold_accuracies=fold_acc,
        best_threshold=float(np.mean(fold_thr)),
        fold_thresholds=fold_thr,
        val=float(np.mean(fold_val)),
        val_std=float(np.std(fold_val)),
        far=float(np.mean(fold_far)),
        auc=roc_auc(fpr, tpr),
        eer=equal_error_rate(fpr, tpr),
        tar_at_far={target: tar_at_far(fpr, tpr, target) for target in FAR_TARGETS},
        far_thresholds=thresholds_at_far(fpr, thresholds, int((~issame).sum()), FAR_TARGETS),
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        grid_tpr=grid_tpr,
        grid_fpr=grid_fpr,
        distances=dist,
        warnings=fold_warnings(issame, slices) + collapse_warnings(dist),
    )


def evaluate_embeddings(
    embeddings: np.ndarray,
    issame: np.ndarray,
    *,
    flipped: np.ndarray | None = None,
    folds: int = 10,
) -> VerificationResult:
    """insightface's ``test``: pair ``i`` is rows ``2i`` and ``2i+1`` of ``embeddings``.

    With ``flipped`` (embeddings of the horizontally mirrored images) the two views are summed
    before normalisation ("Accuracy-Flip"); ``xnorm`` is the mean raw norm over every view.
    """
    embeddings = np.asarray(embeddings)
    views = [embeddings] if flipped is None else [embeddings, np.asarray(flipped)]
    if flipped is not None and views[1].shape != embeddings.shape:
        raise DataError(
            f"flipped embeddings {views[1].shape} do not match embeddings {embeddings.shape}"
        )
    combined = embeddings.astype(np.float64)
    if flipped is not None:
        combined = combined + views[1]
    result = evaluate(combined[0::2], combined[1::2], issame, folds=folds)
    result.xnorm = xnorm(*views)
    return result
