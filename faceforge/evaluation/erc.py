"""Error-versus-reject curve (ERC) of a face quality score (Grother & Tabassi, 2007).

A pair's quality is the lower of its two faces'. The decision threshold is fixed once on all
pairs; then the lowest-quality pairs are rejected in growing fractions and the verification
error (false non-match rate by default, as quality papers plot it) is recomputed on the rest.
A useful quality score makes the curve fall.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceforge.errors import DataError

#: reject fractions of the curve
REJECT_FRACTIONS = tuple(np.round(np.linspace(0.0, 0.5, 11), 3))


def error_versus_reject(
    similarities: Sequence[float], same: Sequence[bool], quality: Sequence[float],
    threshold: float, fractions: Sequence[float] = REJECT_FRACTIONS, error: str = "fnmr",
) -> np.ndarray:  # fmt: skip
    """Errors after rejecting each fraction of lowest-quality pairs; ``error`` is ``fnmr``
    (genuine pairs below the threshold) or ``error`` (all misclassified pairs)."""
    sims = np.asarray(similarities, dtype=np.float64)
    same_arr = np.asarray(same, dtype=bool)
    order = np.argsort(np.asarray(quality, dtype=np.float64), kind="stable")
    if error not in ("fnmr", "error"):
        raise DataError(f"ERC error must be fnmr or error, got {error!r}")
    if error == "fnmr" and not same_arr.any():
        raise DataError("an FNMR error-versus-reject curve needs genuine pairs")
    wrong = (sims > threshold) != same_arr  # accepted above it, as every decision
    curve = []
    for fraction in fractions:
        kept = order[round(fraction * len(order)) :]
        counted = kept[same_arr[kept]] if error == "fnmr" else kept
        curve.append(float(wrong[counted].mean()) if len(counted) else 0.0)
    return np.asarray(curve)


def plot_erc(
    curves: dict[str, np.ndarray], path: str | Path, fractions: Sequence[float] = REJECT_FRACTIONS
) -> Path:
    """Save the curves (one per quality score) as a PNG."""
    from faceforge.evaluation.report_figures import new_figure, save_figure

    figure = new_figure(5, 3.5, layout="tight")
    axes = figure.add_subplot()
    for name, curve in curves.items():
        axes.plot(fractions, curve, marker="o", label=name)
    axes.set_xlabel("fraction of lowest-quality pairs rejected")
    axes.set_ylabel("verification error (FNMR)")
    axes.set_title("error versus reject")
    axes.grid(alpha=0.3)
    axes.legend()
    save_figure(figure, path)
    return Path(path)
