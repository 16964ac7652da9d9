"""The ROC over all pairs at once (no folds) and the figures read from it: AUC, EER, TAR@FAR.

One curve serves 1:1 verification (squared distances, smaller = same) and IJB templates
(similarities, larger = same: pass their negatives), so both count pairs the same way.
"""

from __future__ import annotations

import numpy as np


def roc_curve(
    dist: np.ndarray, issame: np.ndarray, *, drop_collinear: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC over all pairs: accept a pair when ``dist <= thresholds[i]``.

    Returns ``(fpr, tpr, thresholds)`` with one point per distinct distance plus the
    starting point (0, 0) at threshold ``-inf``; rates are ``nan`` for a class with no pairs.
    ``drop_collinear`` leaves out the points on a straight line between their neighbours
    (scikit-learn's ``drop_intermediate``: the curve insightface reads its IJB table from).
    """
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    order = np.argsort(dist, kind="stable")
    d, s = dist[order], issame[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(d)), len(d) - 1]
    tp, fp = np.cumsum(s)[last_of_run], np.cumsum(~s)[last_of_run]
    if drop_collinear and len(tp) > 2:
        kept = np.r_[True, np.logical_or(np.diff(fp, 2), np.diff(tp, 2)), True]
        last_of_run, tp, fp = last_of_run[kept], tp[kept], fp[kept]
    n_same, n_diff = int(s.sum()), int((~s).sum())
    tpr = np.r_[0, tp] / n_same if n_same else np.full(len(tp) + 1, np.nan)
    fpr = np.r_[0, fp] / n_diff if n_diff else np.full(len(fp) + 1, np.nan)
    return fpr, tpr, np.r_[-np.inf, d[last_of_run]]


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC (trapezoidal rule over the points of :func:`roc_curve`)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Error rate where FAR equals FRR (1 - TAR), linearly interpolated between the two ROC
    points on either side of the crossing."""
    gap = (1 - tpr) - fpr  # decreases from 1 at (0, 0) to -1 at (1, 1)
    if np.isnan(gap).any():
        return float("nan")
    j = int(np.argmax(gap <= 0))
    if gap[j] == 0 or j == 0:
        return float(fpr[j])
    alpha = gap[j - 1] / (gap[j - 1] - gap[j])
    return float(fpr[j - 1] + alpha * (fpr[j] - fpr[j - 1]))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TAR among ROC points whose FAR is <= ``target`` (no interpolation).

    With fewer than ``1 / target`` different-identity pairs the only eligible points have
    FAR = 0, so the figure is the TAR at zero false accepts.
    """
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(tpr[fpr <= target].max())
