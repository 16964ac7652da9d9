"""Decision thresholds: from a model's stored evaluation to a cosine-similarity cut-off.

Evaluation stores ``best_threshold`` as a squared Euclidean distance between L2-normalised
embeddings (the insightface protocol). For unit vectors ``|a - b|^2 = 2 - 2 cos(a, b)``, so
the equivalent cosine threshold is ``1 - t / 2``; a pair is "same" when its cosine similarity
exceeds it (distance strictly below ``t``).

Evaluation also stores ``far_thresholds``, the distance threshold at each false accept rate
the pairs could measure (1e-1 .. 1e-6, see :mod:`faceforge.evaluation.calibration`); a
:class:`FarCalibration` turns a target FAR into a cosine threshold by interpolating in
log-FAR between those points, and tells the FAR an explicit threshold corresponds to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from faceforge.errors import CheckpointError, ConfigError, DataError

#: the evaluation set of the demo's synthetic faces (see :mod:`faceforge.data.synthetic`)
SYNTHETIC_SET = "synthetic"


def cosine_from_squared_distance(threshold: float) -> float:
    """Cosine threshold equivalent to a squared-distance threshold on unit vectors."""
    return 1.0 - threshold / 2.0


@dataclass(frozen=True)
class Threshold:
    """A cosine-similarity threshold and where it came from (printed with every decision)."""

    cosine: float
    source: str
    #: the evaluation set the threshold was tuned on (``None``: set explicitly)
    eval_set: str | None = None
    #: the false accept rate it was chosen for or corresponds to (``None``: not calibrated)
    far: float | None = None

    def accepts(self, similarity: float) -> bool:
        return similarity > self.cosine

    @property
    def warning(self) -> str | None:
        """Why this threshold should not be trusted on real photos, if it should not."""
        if self.eval_set != SYNTHETIC_SET:
            return None
        return (
            "the decision threshold was tuned on the demo's synthetic faces and does not carry "
            "over to real photos; pass --threshold or evaluate the model on a real benchmark "
            "(faceforge eval --bin lfw.bin)"
        )


def _stored(metrics: dict[str, Any], key: str, eval_set: str | None) -> tuple[str, Any] | None:
    """``(set, value)`` of ``key`` stored for ``eval_set`` (default: the only set, or the first
    real one when a ``synthetic`` set sits beside real benchmarks); ``None`` when no set has
    it, CheckpointError when the named set does not."""
    usable = {
        name: values[key]
        for name, values in metrics.items()
        if isinstance(values, dict) and values.get(key) not in (None, {})
    }
    if not usable:
        return None
    if eval_set is None:
        real = [name for name in usable if name != SYNTHETIC_SET]
        eval_set = real[0] if real else next(iter(usable))
    if eval_set not in usable:
        raise CheckpointError(
            f"no stored {key} for evaluation set {eval_set!r}; available: {sorted(usable)}"
        )
    return eval_set, usable[eval_set]


def threshold_from_metrics(metrics: dict[str, Any], eval_set: str | None = None) -> Threshold:
    """The best 10-fold threshold stored for ``eval_set`` (default: the only set, or the first
    real one when a ``synthetic`` set sits beside real benchmarks)."""
    stored = _stored(metrics, "best_threshold", eval_set)
    if stored is None:
        raise CheckpointError(
            "the model stores no evaluation threshold; pass --threshold (a cosine similarity)"
        )
    eval_set, distance = stored[0], float(stored[1])
    return Threshold(
        cosine_from_squared_distance(distance),
        f"best 10-fold threshold on {eval_set} (squared distance {distance:.3f})",
        eval_set,
    )


@dataclass(frozen=True)
class FarCalibration:
    """Cosine thresholds at the false accept rates an evaluation measured (``fars``
    increasing, ``cosines`` not increasing), interpolated linearly in log10(FAR)."""

    eval_set: str
    fars: tuple[float, ...]
    cosines: tuple[float, ...]

    @classmethod
    def from_metrics(
        cls, metrics: dict[str, Any], eval_set: str | None = None
    ) -> FarCalibration | None:
        """The calibration stored for ``eval_set`` (chosen as for the best threshold), or
        ``None`` when the model's evaluation stored none (older checkpoints, no impostors)."""
        stored = _stored(metrics, "far_thresholds", eval_set)
        if stored is None:
            return None
        points = sorted((float(far), float(t)) for far, t in stored[1].items())
        fars = tuple(far for far, _ in points)
        return cls(stored[0], fars, tuple(cosine_from_squared_distance(t) for _, t in points))

    @property
    def range_text(self) -> str:
        return f"{self.fars[0]:g} .. {self.fars[-1]:g} (measured on {self.eval_set})"

    def threshold(self, far: float) -> Threshold:
        """The cosine threshold at target ``far`` (DataError outside the calibrated range:
        the evaluation had too few impostor pairs to measure it)."""
        if not self.fars[0] <= far <= self.fars[-1]:
            raise DataError(
                f"far {far:g} is outside the model's calibrated range {self.range_text}; "
                "choose a FAR in that range or send an explicit threshold"
            )
        cosine = float(np.interp(np.log10(far), np.log10(self.fars), self.cosines))
        return Threshold(
            cosine, f"FAR {far:g} by the calibration on {self.eval_set}", self.eval_set, far
        )

    def far_at(self, cosine: float) -> float | None:
        """The FAR a cosine threshold corresponds to, ``None`` outside the calibrated range."""
        if not self.cosines[-1] <= cosine <= self.cosines[0]:
            return None
        log_far = np.interp(cosine, self.cosines[::-1], np.log10(self.fars)[::-1])
        return float(10.0**log_far)


def threshold_for(
    metrics: dict[str, Any],
    far: float | None,
    cosine: float | None,
    default: Callable[[], Threshold],
    eval_set: str | None = None,
) -> Threshold:
    """The threshold a request asks for: at target ``far`` by the model's calibration, an
    explicit ``cosine``, else ``default()``; a cosine threshold carries the FAR it
    corresponds to when the model is calibrated. DataError for a FAR the model cannot honour.
    """
    if far is not None and cosine is not None:
        raise DataError("give either far or threshold, not both")
    calibration = FarCalibration.from_metrics(metrics, eval_set)
    if far is not None:
        if not 0.0 < far < 1.0:
            raise DataError(f"far is a false accept rate in (0, 1), got {far:g}")
        if calibration is None:
            raise DataError(
                "this model stores no FAR calibration (evaluate it with a current faceforge "
                "to add one); send an explicit threshold instead of far"
            )
        return calibration.threshold(far)
    chosen = resolve_threshold(cosine, metrics, eval_set) if cosine is not None else default()
    if calibration is None or chosen.far is not None:
        return chosen
    return replace(chosen, far=calibration.far_at(chosen.cosine))


def resolve_threshold(
    cosine: float | None, metrics: dict[str, Any], eval_set: str | None = None
) -> Threshold:
    """An explicit cosine threshold if given, else the one stored with the model."""
    if cosine is not None:
        if not -1.0 <= cosine <= 1.0:
            raise ConfigError(f"the threshold is a cosine similarity in [-1, 1], got {cosine}")
        return Threshold(float(cosine), "set explicitly")
    return threshold_from_metrics(metrics, eval_set)
