"""Thresholds: squared L2 distance on unit vectors <-> cosine, and which stored one is used."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.errors import CheckpointError, ConfigError, DataError
from faceforge.inference.matching.threshold import (
    FarCalibration,
    cosine_from_squared_distance,
    resolve_threshold,
    threshold_for,
    threshold_from_metrics,
)


def test_conversion_matches_the_distance_decision() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 500, 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    distance = ((a - b) ** 2).sum(axis=1)
    cosine = (a * b).sum(axis=1)
    for t in (0.5, 1.0, 1.3, 2.0):
        assert ((distance < t) == (cosine > cosine_from_squared_distance(t))).all()


def test_stored_threshold_selection() -> None:
    metrics = {
        "synthetic": {"accuracy": 0.9, "best_threshold": 1.2},
        "lfw": {"accuracy": 0.99, "best_threshold": 1.4},
    }
    assert threshold_from_metrics(metrics).cosine == pytest.approx(0.3)  # real set preferred
    chosen = threshold_from_metrics(metrics, "synthetic")
    assert chosen.cosine == pytest.approx(0.4) and "synthetic" in chosen.source
    assert threshold_from_metrics({"synthetic": {"best_threshold": 1.0}}).cosine == 0.5
    with pytest.raises(CheckpointError, match="available"):
        threshold_from_metrics(metrics, "agedb")
    with pytest.raises(CheckpointError, match="--threshold"):
        threshold_from_metrics({})


def test_explicit_threshold_wins() -> None:
    chosen = resolve_threshold(0.25, {"lfw": {"best_threshold": 1.0}})
    assert chosen.cosine == 0.25 and chosen.accepts(0.26) and not chosen.accepts(0.25)
    with pytest.raises(ConfigError, match="cosine"):
        resolve_threshold(1.5, {})


def test_only_a_synthetic_threshold_carries_a_warning() -> None:
    metrics = {"synthetic": {"best_threshold": 1.2}, "lfw": {"best_threshold": 1.4}}
    synthetic = threshold_from_metrics(metrics, "synthetic")
    assert synthetic.eval_set == "synthetic"
    assert "does not carry over to real photos" in synthetic.warning
    assert "--threshold" in synthetic.warning
    assert threshold_from_metrics(metrics).warning is None  # lfw
    assert resolve_threshold(0.3, metrics).warning is None


#: distance thresholds at FARs 1e-1 .. 1e-4: cosines 0.4, 0.5, 0.6, 0.7
CALIBRATED = {
    "lfw": {
        "best_threshold": 1.0,
        "far_thresholds": {"0.1": 1.2, "0.01": 1.0, "0.001": 0.8, "1e-04": 0.6},
    }
}


def test_far_calibration_interpolates_in_log_far() -> None:
    calibration = FarCalibration.from_metrics(CALIBRATED)
    assert calibration.threshold(1e-3).cosine == pytest.approx(0.6)
    halfway = calibration.threshold(10**-3.5)
    assert halfway.cosine == pytest.approx(0.65) and halfway.far == pytest.approx(10**-3.5)
    assert calibration.far_at(0.65) == pytest.approx(10**-3.5)
    assert calibration.far_at(0.8) is None
    with pytest.raises(DataError, match=r"outside the model's calibrated range 0.0001 \.\. 0.1"):
        calibration.threshold(1e-6)
    assert FarCalibration.from_metrics({"lfw": {"best_threshold": 1.0}}) is None


def test_threshold_for_a_request() -> None:
    default = lambda: threshold_from_metrics(CALIBRATED)  # noqa: E731
    assert threshold_for(CALIBRATED, 1e-2, None, default).cosine == pytest.approx(0.5)
    chosen = threshold_for(CALIBRATED, None, None, default)  # best accuracy: cosine 0.5
    assert chosen.cosine == pytest.approx(0.5) and chosen.far == pytest.approx(1e-2)
    explicit = threshold_for(CALIBRATED, None, 0.7, default)
    assert explicit.far == pytest.approx(1e-4) and explicit.source == "set explicitly"
    plain = {"lfw": {"best_threshold": 1.0}}
    assert threshold_for(plain, None, None, lambda: threshold_from_metrics(plain)).far is None
    with pytest.raises(DataError, match="no FAR calibration"):
        threshold_for(plain, 1e-3, None, default)
    with pytest.raises(DataError, match="not both"):
        threshold_for(CALIBRATED, 1e-3, 0.5, default)
    with pytest.raises(DataError, match=r"in \(0, 1\)"):
        threshold_for(CALIBRATED, 2.0, None, default)
