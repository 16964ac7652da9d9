"""The figures of a verification report, drawn off-screen (matplotlib's Agg canvas, never the
global pyplot state) and returned as PNG bytes or saved to a file.

Distances are the protocol's squared distances of L2-normalised embeddings (0..4): a pair is
accepted as "same" when its distance is below the threshold.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.evaluation.verification import VerificationResult

SAME_COLOUR, DIFFERENT_COLOUR, THRESHOLD_COLOUR = "tab:green", "tab:red", "black"


def new_figure(width: float = 6.0, height: float = 4.5, layout: str | None = None) -> Any:
    """A matplotlib Figure on its own Agg canvas (thread-safe, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def literal_text(figure: Any) -> None:
    """Show every text of ``figure`` as written: names come from files and folders, and a
    ``$`` pair in one (``cost_$5_and_$10``) was parsed as a formula and failed the drawing."""
    from matplotlib.text import Text

    for text in figure.findobj(Text):
        text.set_parse_math(False)


def png_bytes(figure: Any) -> bytes:
    """The figure encoded as PNG."""
    literal_text(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_figure(figure: Any, path: str | Path) -> None:
    """Save the figure (format from the suffix), creating the folder."""
    literal_text(figure)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def _log_rates(result: VerificationResult) -> tuple[np.ndarray, np.ndarray]:
    """ROC points that a log FAR axis can show (FAR > 0)."""
    shown = result.fpr > 0
    return result.fpr[shown], result.tpr[shown]


def roc_figure(results: Mapping[str, VerificationResult]) -> Any:
    """TAR against FAR on a log axis, one curve per set (FAR = 0 points cannot be shown)."""
    figure = new_figure(layout="tight")
    axes = figure.add_subplot()
    smallest = 1.0
    for name, result in results.items():
        fpr, tpr = _log_rates(result)
        if len(fpr):
            smallest = min(smallest, float(fpr.min()))
            label = f"{name} (AUC {result.auc:.4f})"
            axes.plot(fpr, tpr, label=label, drawstyle="steps-post")
    axes.set_xscale("log")
    axes.set_xlim(smallest, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("false accept rate (FAR)")
    axes.set_ylabel("true accept rate (TAR)")
    axes.set_title("verification ROC")
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right")
    return figure


def det_figure(results: Mapping[str, VerificationResult]) -> Any:
    """Detection error trade-off: false reject rate against false accept rate, both on log
    axes, one curve per set; the equal error rate is where a curve meets the diagonal."""
    figure = new_figure(layout="tight")
    axes = figure.add_subplot()
    floor = 1.0
    for name, result in results.items():
        fpr, tpr = _log_rates(result)
        frr = 1 - tpr
        shown = frr > 0
        if shown.any():
            floor = min(floor, float(fpr[shown].min()), float(frr[shown].min()))
            label = f"{name} (EER {100 * result.eer:.2f}%)"
            axes.plot(fpr[shown], frr[shown], label=label, drawstyle="steps-post")
    axes.plot([floor, 1], [floor, 1], color="grey", linestyle=":", linewidth=1, label="FAR = FRR")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(floor, 1.0)
    axes.set_ylim(floor, 1.0)
    axes.set_xlabel("false accept rate (FAR)")
    axes.set_ylabel("false reject rate (FRR)")
    axes.set_title("detection error trade-off (DET)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower left")
    return figure


def histogram_figure(name: str, result: VerificationResult, issame: np.ndarray) -> Any:
    """Distances of same and different pairs, with the accuracy threshold."""
    figure = new_figure(6.0, 3.6, layout="tight")
    axes = figure.add_subplot()
    distances = np.asarray(result.distances)
    bins = np.linspace(0, 4, 81)
    axes.hist(distances[issame], bins, alpha=0.6, color=SAME_COLOUR, label="same person")
    axes.hist(distances[~issame], bins, alpha=0.6, color=DIFFERENT_COLOUR, label="different")
    axes.axvline(
        result.best_threshold,
        color=THRESHOLD_COLOUR,
        linestyle="--",
        label=f"threshold {result.best_threshold:.2f}",
    )
    axes.set_xlabel("squared distance of the normalised embeddings (accept below the threshold)")
    axes.set_ylabel("pairs")
    axes.set_title(f"{name}: distance distributions")
    axes.legend(loc="upper right")
    return figure


def folds_figure(name: str, result: VerificationResult) -> Any:
    """Accuracy of every cross-validation fold, with the mean."""
    figure = new_figure(6.0, 2.8, layout="tight")
    axes = figure.add_subplot()
    accuracy = 100 * np.asarray(result.fold_accuracies)
    folds = np.arange(1, len(accuracy) + 1)
    axes.bar(folds, accuracy, color="tab:blue", alpha=0.8)
    axes.axhline(100 * result.accuracy, color="black", linestyle="--", label="mean")
    low = max(0.0, float(accuracy.min()) - 5)
    axes.set_ylim(low, 100)
    axes.set_xticks(folds)
    axes.set_xlabel("fold")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"{name}: accuracy per fold")
    axes.legend(loc="lower right")
    return figure
