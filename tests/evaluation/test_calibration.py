"""FAR calibration: the stored threshold at each FAR target accepts exactly the impostor
share the ROC reports, and targets the pairs cannot measure are left out."""

from __future__ import annotations

import numpy as np

from faceforge.evaluation.verification import FAR_TARGETS, evaluate


def test_threshold_at_far_accepts_at_most_that_share_of_impostors() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 16))
    same = np.arange(4000) % 2 == 0
    b = np.where(same[:, None], a + rng.normal(size=a.shape), rng.normal(size=a.shape))
    result = evaluate(a, b, same)
    dist = result.distances
    assert set(result.far_thresholds) == {1e-1, 1e-2, 1e-3}  # 2000 impostors: not 1e-4
    for far, t in result.far_thresholds.items():
        accepted_impostors = np.mean(dist[~same] < t)
        assert accepted_impostors <= far
        # the threshold is the best one: moving it past the next impostor breaks the target
        next_impostor = np.sort(dist[~same][dist[~same] >= t])[0]
        assert np.mean(dist[~same] <= next_impostor) > far
        assert np.mean(dist[same] < t) == result.tar_at_far[far]
    assert result.to_dict()["far_thresholds"]["0.001"] == result.far_thresholds[1e-3]


def test_no_impostors_no_calibration() -> None:
    a = np.random.default_rng(1).normal(size=(20, 8))
    result = evaluate(a, a + 0.01, np.ones(20, bool), folds=2)
    assert result.far_thresholds == {} and len(FAR_TARGETS) == 6
