"""FAR calibration: the decision threshold at each false accept rate target of the all-pairs
ROC, stored with a model so that a deployment can ask for "at most 1 impostor in 10,000"
instead of guessing a similarity cut-off (see :mod:`faceforge.inference.matching.threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def thresholds_at_far(
    fpr: np.ndarray, thresholds: np.ndarray, num_impostors: int, targets: Sequence[float]
) -> dict[float, float]:
    """Squared-distance threshold ``t`` per FAR target, for the arrays of
    :func:`~faceforge.evaluation.roc.roc_curve`.

    For each target the ROC point with the highest TAR among those with FAR <= target (the
    point TAR@FAR reports) is turned into a strict cut-off, ``distance < t`` accepting exactly
    that point's pairs: ``t`` lies midway to the next distinct distance. Targets below
    ``1 / num_impostors`` are left out, as these pairs cannot measure them.

    >>> fpr, thresholds = np.array([0, 0, 0.5, 1]), np.array([-np.inf, 0.2, 0.6, 1.0])
    >>> thresholds_at_far(fpr, thresholds, 2, (0.5, 0.1))
    {0.5: 0.8}
    """
    if num_impostors == 0 or np.isnan(fpr).any():
        return {}
    out = {}
    for target in targets:
        if target * num_impostors < 1:
            continue
        i = int(np.flatnonzero(fpr <= target)[-1])  # FAR and TAR never fall along the ROC
        upper = float(thresholds[i + 1])
        out[target] = upper if i == 0 else (float(thresholds[i]) + upper) / 2
    return out
