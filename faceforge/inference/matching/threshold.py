"""Decision thresholds: from a model's stored evaluation to a cosine-similarity cut-off.

Evaluation stores ``best_threshold`` as a squared Euclidean distance between L2-normalised
embeddings (the insightface protocol). For unit vectors ``|a - b|^2 = 2 - 2 cos(a, b)``, so
the equivalent cosine threshold is ``1 - t / 2``; a pair is "same" when its cosine similarity
exceeds it (distance strictly below ``t``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceforge.errors import CheckpointError, ConfigError

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


def threshold_from_metrics(metrics: dict[str, Any], eval_set: str | None = None) -> Threshold:
    """The best 10-fold threshold stored for ``eval_set`` (default: the only set, or the first
    real one when a ``synthetic`` set sits beside real benchmarks)."""
    usable = {
        name: values
        for name, values in metrics.items()
        if isinstance(values, dict) and values.get("best_threshold") is not None
    }
    if not usable:
        raise CheckpointError(
            "the model stores no evaluation threshold; pass --threshold (a cosine similarity)"
        )
    if eval_set is None:
        real = [name for name in usable if name != SYNTHETIC_SET]
        eval_set = real[0] if real else next(iter(usable))
    if eval_set not in usable:
        raise CheckpointError(
            f"no stored threshold for evaluation set {eval_set!r}; available: {sorted(usable)}"
        )
    distance = float(usable[eval_set]["best_threshold"])
    return Threshold(
        cosine_from_squared_distance(distance),
        f"best 10-fold threshold on {eval_set} (squared distance {distance:.3f})",
        eval_set,
    )


def resolve_threshold(
    cosine: float | None, metrics: dict[str, Any], eval_set: str | None = None
) -> Threshold:
    """An explicit cosine threshold if given, else the one stored with the model."""
    if cosine is not None:
        if not -1.0 <= cosine <= 1.0:
            raise ConfigError(f"the threshold is a cosine similarity in [-1, 1], got {cosine}")
        return Threshold(float(cosine), "set explicitly")
    return threshold_from_metrics(metrics, eval_set)
