"""Human and machine readable reports of verification results: table lines, JSON, ROC plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.evaluation.verification import VerificationResult
from faceforge.files import atomic_write_bytes


def _percent(value: float, digits: int) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}"


def format_result(name: str, result: VerificationResult) -> str:
    """One line in the seeds' style, e.g.
    ``LFW average acc: 99.3167 +- 0.30 @ threshold 1.42, XNorm 22.1, VR@FAR=1e-3 98.90 +- 0.61
    (FAR 0.0010), TAR@FAR=1e-4 95.10, AUC 0.9991, EER 0.0083`` (accuracies in percent)."""
    parts = [
        f"{name} average acc: {_percent(result.accuracy, 4)} +- "
        f"{_percent(result.accuracy_std, 2)} @ threshold {result.best_threshold:.2f}"
    ]
    if result.xnorm is not None:
        parts.append(f"XNorm {result.xnorm:.1f}")
    parts.append(
        f"VR@FAR=1e-3 {_percent(result.val, 2)} +- {_percent(result.val_std, 2)} "
        f"(FAR {result.far:.4f})"
    )
    if 1e-4 in result.tar_at_far:
        parts.append(f"TAR@FAR=1e-4 {_percent(result.tar_at_far[1e-4], 2)}")
    parts.append(f"AUC {result.auc:.4f}, EER {result.eer:.4f}")
    return ", ".join(parts)


def results_to_json(
    results: Mapping[str, VerificationResult], meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{"meta": ..., "sets": {name: result.to_dict()}}``, JSON-serialisable."""
    return {
        "meta": dict(meta or {}),
        "sets": {name: result.to_dict() for name, result in results.items()},
    }


def write_json(
    path: str | Path,
    results: Mapping[str, VerificationResult],
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write :func:`results_to_json` to ``path`` atomically (``nan`` is written as ``null``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(results_to_json(results, meta), indent=2) + "\n").encode())


def plot_roc(path: str | Path, results: Mapping[str, VerificationResult]) -> None:
    """ROC curves (TAR against FAR on a log axis), one per set, saved as an image (PNG).

    Uses the all-pairs ROC of each result; FAR = 0 points cannot be shown on a log axis and
    are dropped. Renders off-screen without touching matplotlib's global backend.
    """
    from faceforge.evaluation.report_figures import roc_figure, save_figure

    save_figure(roc_figure(results), path)
