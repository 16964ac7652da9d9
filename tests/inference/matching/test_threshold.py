"""Thresholds: squared L2 distance on unit vectors <-> cosine, and which stored one is used."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.errors import CheckpointError, ConfigError
from faceforge.inference.matching.threshold import (
    cosine_from_squared_distance,
    resolve_threshold,
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
