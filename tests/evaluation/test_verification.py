"""Verification metrics against an independent insightface-style reimplementation and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceforge.errors import DataError
from faceforge.evaluation.roc import roc_curve
from faceforge.evaluation.verification import (
    ACCURACY_THRESHOLDS,
    evaluate,
    evaluate_embeddings,
    threshold_at_far,
    xnorm,
)

# ---------------------------------------------------------------------------------------------
# Reference: the facenet/insightface protocol written out threshold by threshold, fold by fold
# (loops over thresholds and pairs, plain Python arithmetic), independent of faceforge's
# sort-and-count implementation.


def _ref_normalize(rows):
    out = []
    for row in rows:
        norm = math.sqrt(sum(float(v) * float(v) for v in row))
        out.append([float(v) / norm for v in row])
    return np.array(out)


def _ref_kfold(n, k):
    """Contiguous folds: the first n % k folds hold one extra pair (sklearn KFold sizes)."""
    folds, start = [], 0
    for i in range(k):
        size = n // k + (1 if i < n % k else 0)
        test = list(range(start, start + size))
        train = [j for j in range(n) if j < start or j >= start + size]
        folds.append((np.array(train if k > 1 else test), np.array(test)))
        start += size
    return folds


def _ref_accuracy(threshold, dist, actual):
    predict = dist < threshold
    tp = int(np.sum(predict & actual))
    fp = int(np.sum(predict & ~actual))
    tn = int(np.sum(~predict & ~actual))
    fn = int(np.sum(~predict & actual))
    tpr = 0 if tp + fn == 0 else tp / (tp + fn)
    fpr = 0 if fp + tn == 0 else fp / (fp + tn)
    return tpr, fpr, (tp + tn) / dist.size


def _ref_val_far(threshold, dist, actual):
    predict = dist < threshold
    return (
        int(np.sum(predict & actual)) / int(np.sum(actual)),
        int(np.sum(predict & ~actual)) / int(np.sum(~actual)),
    )


def _ref_threshold_for_far(far_train, thresholds, target):
    """Scan upwards for the first grid point above the target and interpolate from the one
    before it (the documented rule for FAR curves with plateaus)."""
    if max(far_train) < target:
        return 0.0
    for j in range(len(far_train)):
        if far_train[j] > target:
            lo = j - 1
            if far_train[lo] == target:
                return thresholds[lo]
            frac = (target - far_train[lo]) / (far_train[j] - far_train[lo])
            return thresholds[lo] + frac * (thresholds[j] - thresholds[lo])
    return thresholds[-1]


def reference_evaluate(emb1, emb2, issame, nfolds):
    e1, e2 = _ref_normalize(emb1), _ref_normalize(emb2)
    dist = np.array(
        [
            sum((a - b) ** 2 for a, b in zip(r1, r2, strict=True))
            for r1, r2 in zip(e1, e2, strict=True)
        ]
    )
    thresholds = np.arange(0, 4, 0.01)
    accuracy, best = [], []
    tprs, fprs = [], []
    for train, test in _ref_kfold(len(dist), nfolds):
        acc_train = [_ref_accuracy(t, dist[train], issame[train])[2] for t in thresholds]
        best_idx = 0
        for i, acc in enumerate(acc_train):
            if acc > acc_train[best_idx]:
                best_idx = i
        rates = [_ref_accuracy(t, dist[test], issame[test]) for t in thresholds]
        tprs.append([r[0] for r in rates])
        fprs.append([r[1] for r in rates])
        accuracy.append(_ref_accuracy(thresholds[best_idx], dist[test], issame[test])[2])
        best.append(thresholds[best_idx])
    val_thresholds = np.arange(0, 4, 0.001)
    vals, fars = [], []
    for train, test in _ref_kfold(len(dist), nfolds):
        far_train = [_ref_val_far(t, dist[train], issame[train])[1] for t in val_thresholds]
        threshold = _ref_threshold_for_far(far_train, val_thresholds, 1e-3)
        v, f = _ref_val_far(threshold, dist[test], issame[test])
        vals.append(v)
        fars.append(f)
    return {
        "accuracy": np.mean(accuracy),
        "accuracy_std": np.std(accuracy),
        "fold_accuracies": np.array(accuracy),
        "best_threshold": np.mean(best),
        "val": np.mean(vals),
        "val_std": np.std(vals),
        "far": np.mean(fars),
        "tpr": np.mean(tprs, 0),
        "fpr": np.mean(fprs, 0),
        "dist": dist,
    }


def _noisy_pairs(n, dim=16, noise=1.2, seed=0):
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    emb1 = rng.normal(size=(n, dim)) * rng.uniform(0.5, 30, size=(n, 1))  # raw, unnormalised
    partner = emb1 + noise * np.linalg.norm(emb1, axis=1, keepdims=True) / 4 * rng.normal(
        size=(n, dim)
    )
    emb2 = np.where(issame[:, None], partner, rng.normal(size=(n, dim)) * 5)
    return emb1, emb2, issame


@pytest.mark.parametrize(("n", "folds"), [(1203, 10), (600, 10), (257, 3), (200, 1)])
def test_matches_insightface_protocol_reference(n, folds):
    emb1, emb2, issame = _noisy_pairs(n, seed=n)
    ours = evaluate(emb1, emb2, issame, folds=folds)
    ref = reference_evaluate(emb1, emb2, issame, folds)
    assert 0.6 < ref["accuracy"] < 0.97  # the case is not trivially separable
    for key in ("accuracy", "accuracy_std", "best_threshold", "val", "val_std", "far"):
        assert abs(getattr(ours, key) - ref[key]) <= 1e-9, key
    np.testing.assert_allclose(ours.fold_accuracies, ref["fold_accuracies"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.grid_tpr, ref["tpr"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.grid_fpr, ref["fpr"], rtol=0, atol=1e-12)


def _pairs_at_distances(distances):
    """Embedding pairs (2-d unit vectors) whose squared distances are exactly ``distances``."""
    cos = 1 - np.asarray(distances, dtype=np.float64) / 2
    emb1 = np.tile([1.0, 0.0], (len(cos), 1))
    emb2 = np.stack([cos, np.sqrt(1 - cos**2)], axis=1)
    return emb1, emb2


def test_hand_computed_two_folds():
    # fold 0: same 0.5, diff 1.5004 | fold 1: same 1.0, diff 3.0004
    emb1, emb2 = _pairs_at_distances([0.5, 1.5004, 1.0, 3.0004])
    issame = np.array([True, False, True, False])
    r = evaluate(emb1, emb2, issame, folds=2)
    # fold 0 trains on fold 1: first best threshold 1.01, classifies fold 0 correctly
    # fold 1 trains on fold 0: first best threshold 0.51, rejects the same pair at 1.0
    np.testing.assert_allclose(r.fold_thresholds, [1.01, 0.51])
    np.testing.assert_array_equal(r.fold_accuracies, [1.0, 0.5])
    assert r.accuracy == 0.75
    assert r.accuracy_std == 0.25
    assert r.best_threshold == pytest.approx(0.76, abs=1e-12)
    # VR@FAR: fold 0's threshold is ~3.000001 (accepts both of its pairs), fold 1's ~1.500001
    assert r.val == 1.0 and r.val_std == 0.0
    assert r.far == 0.5
    # all-pairs ROC: the same pairs are all closer than the different ones
    assert r.auc == 1.0 and r.eer == 0.0
    assert all(v == 1.0 for v in r.tar_at_far.values())


def test_hand_computed_roc_with_overlap():
    dist = np.array([0.5, 1.0, 2.0, 3.0])
    issame = np.array([True, False, True, False])
    fpr, tpr, thresholds = roc_curve(dist, issame)
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(thresholds, [-np.inf, 0.5, 1.0, 2.0, 3.0])
    emb1, emb2 = _pairs_at_distances(dist)
    r = evaluate(emb1, emb2, issame, folds=2)
    assert r.auc == pytest.approx(0.75)  # 3 of the 4 (same, different) pairs are ordered right
    assert r.eer == pytest.approx(0.5)
    assert r.tar_at_far[1e-1] == pytest.approx(0.5)


def test_roc_ties_form_one_point_and_eer_interpolates():
    dist = np.array([1.0, 1.0, 1.0, 2.0])
    issame = np.array([True, True, False, False])
    fpr, tpr, thresholds = roc_curve(dist, issame)
    np.testing.assert_array_equal(thresholds, [-np.inf, 1.0, 2.0])
    np.testing.assert_array_equal(tpr, [0, 1, 1])
    np.testing.assert_array_equal(fpr, [0, 0.5, 1])
    emb1, emb2 = _pairs_at_distances(dist)
    r = evaluate(emb1, emb2, issame, folds=2)
    # FRR - FAR goes from 1 to -0.5 along the segment (0,0)-(0.5,1): equal at FAR = 1/3
    assert r.eer == pytest.approx(1 / 3)


def test_roc_drops_collinear_points_as_scikit_learn_does():
    """(FA, TA) counts (0,1) (0,2) (0,3) (1,3) (2,3): (0,2) and (1,3) lie on straight lines
    between their neighbours; the first and last points stay (the first although it is in
    line with the (0, 0) start, which scikit-learn adds after dropping)."""
    dist = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    issame = np.array([True, True, True, False, False])
    fpr, tpr, thresholds = roc_curve(dist, issame, drop_collinear=True)
    np.testing.assert_array_equal(fpr, [0, 0, 0, 1])
    np.testing.assert_array_equal(tpr, [0, 1 / 3, 1, 1])
    np.testing.assert_array_equal(thresholds, [-np.inf, 1.0, 3.0, 5.0])


def test_threshold_at_far_equals_scipy_slinear_without_repeats():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(3)
    far = np.sort(rng.random(50))
    far[0] = 0.0
    thresholds = np.linspace(0, 4, 50)
    for target in [1e-3, 0.2, 0.5, far[10], far[-1]]:
        expected = float(interpolate.interp1d(far, thresholds, kind="slinear")(target))
        assert threshold_at_far(far, thresholds, target) == pytest.approx(expected, abs=1e-12)


def test_threshold_at_far_with_plateaus():
    thresholds = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    far = np.array([0.0, 0.0, 0.0, 0.01, 0.01])
    # interpolates between the last zero (0.2) and the first 0.01 (0.3)
    assert threshold_at_far(far, thresholds, 1e-3) == pytest.approx(0.21)
    # exactly on a plateau: its highest threshold
    assert threshold_at_far(far, thresholds, 0.01) == 0.4
    # never reached: 0 as insightface
    assert threshold_at_far(far, thresholds, 0.5) == 0.0


def test_scale_invariance_and_flip_sum():
    emb1, emb2, issame = _noisy_pairs(300, seed=7)
    a = evaluate(emb1, emb2, issame)
    b = evaluate(emb1 * 3.0, emb2 * 0.01, issame)
    assert a.accuracy == b.accuracy and a.val == b.val and a.auc == b.auc
    interleaved = np.empty((600, emb1.shape[1]))
    interleaved[0::2], interleaved[1::2] = emb1, emb2
    mirrored = np.random.default_rng(1).normal(size=interleaved.shape)
    r = evaluate_embeddings(interleaved, issame, flipped=mirrored)
    summed = interleaved + mirrored
    expected = evaluate(summed[0::2], summed[1::2], issame)
    assert r.accuracy == expected.accuracy
    norms = np.r_[np.linalg.norm(interleaved, axis=1), np.linalg.norm(mirrored, axis=1)]
    assert r.xnorm == pytest.approx(norms.mean())
    assert xnorm(interleaved) == pytest.approx(np.linalg.norm(interleaved, axis=1).mean())


def test_single_class_gives_nan_roc_figures_but_accuracy():
    emb1, emb2 = _pairs_at_distances([0.2, 0.4, 0.6, 0.8])
    r = evaluate(emb1, emb2, np.ones(4, bool), folds=2)
    # fold 0 learns 0.81 from (0.6, 0.8) and accepts (0.2, 0.4); fold 1 learns 0.41 and fails
    np.testing.assert_array_equal(r.fold_accuracies, [1.0, 0.0])
    assert math.isnan(r.auc) and math.isnan(r.eer) and math.isnan(r.tar_at_far[1e-3])
    assert r.to_dict()["auc"] is None


def test_bad_input_raises():
    emb = np.zeros((4, 8))
    with pytest.raises(DataError, match="folds"):
        evaluate(emb, emb, np.ones(4, bool), folds=10)
    with pytest.raises(DataError, match="issame"):
        evaluate(emb, emb, np.ones(3, bool))
    with pytest.raises(DataError, match="equal shape"):
        evaluate(emb, np.zeros((4, 7)), np.ones(4, bool), folds=2)
    with pytest.raises(DataError, match="NaN"):
        evaluate(emb, np.full((4, 8), np.nan), np.ones(4, bool), folds=2)


def test_thresholds_grid_is_insightfaces():
    assert len(ACCURACY_THRESHOLDS) == 400
    assert ACCURACY_THRESHOLDS[0] == 0 and ACCURACY_THRESHOLDS[-1] == pytest.approx(3.99)


def test_folds_with_one_class_are_flagged() -> None:
    """A pair list sorted by label (LFW View 1's pairsDevTest.txt: all same, then all
    different) puts one class in each fold: the result says so."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = a + rng.normal(size=a.shape)
    sorted_labels = np.arange(200) < 100
    flagged = evaluate(a, b, sorted_labels, folds=10)
    assert len(flagged.warnings) == 1
    assert flagged.warnings[0].startswith("10 of 10 folds hold only")
    assert "shuffle the pairs (faceforge eval and pack-bin --shuffle-pairs)" in flagged.warnings[0]
    assert flagged.to_dict()["warnings"] == flagged.warnings
    interleaved = np.arange(200) % 2 == 0
    assert evaluate(a, b, interleaved, folds=10).warnings == []
    assert len(evaluate(a, b, sorted_labels, folds=2).warnings) == 1


def test_collapsed_embeddings_are_flagged_not_just_scored_50_percent() -> None:
    """A model in its first training steps (BatchNorm running statistics still near their
    initial values) maps every face to almost the same direction: all distances fall
    between two grid thresholds, so the protocol can only answer 'all different'."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=16)
    a, b = (common + 1e-6 * rng.normal(size=(200, 16)) for _ in range(2))
    issame = np.arange(200) % 2 == 0
    collapsed = evaluate(a, b, issame, folds=10)
    assert (collapsed.accuracy, collapsed.accuracy_std, collapsed.best_threshold) == (0.5, 0, 0)
    assert len(collapsed.warnings) == 1
    assert collapsed.warnings[0].startswith("all 200 pair distances lie within")
    assert "collapsed to one direction" in collapsed.warnings[0]
    spread = rng.normal(size=(200, 16))
    assert evaluate(spread, spread + rng.normal(size=(200, 16)), issame).warnings == []


def test_too_few_pairs_for_the_folds_names_the_way_out() -> None:
    emb = np.eye(4, 8)
    with pytest.raises(DataError, match=r"cannot split 4 pairs into 10 folds: use between 1 and 4"):
        evaluate(emb, emb, np.array([True, False, True, False]))
    assert evaluate(emb, emb, np.array([True, False, True, False]), folds=2).accuracy == 0.5
