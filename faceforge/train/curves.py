"""Loss / accuracy curves of a run as a PNG (matplotlib's Agg canvas, no global pyplot state).

The training loss is a line on the left axis; each verification set's accuracy is a series
of marked evaluation points on the right axis, in its own colour, joined only by a faint
dotted guide (an evaluation is a measurement at one step, not a curve). One legend names
every series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceforge.evaluation.report_figures import new_figure, save_figure

LOSS_COLOUR = "tab:blue"
#: accuracy series colours, none of them the loss's
ACCURACY_COLOURS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def plot_training_curves(history: list[dict[str, float]], path: str | Path) -> Path:
    """Save :func:`training_curves_figure` of ``history`` to ``path`` (PNG)."""
    save_figure(training_curves_figure(history), path)
    return Path(path)


def training_curves_figure(history: list[dict[str, float]]) -> Any:
    """Training loss (left axis) and every ``<set>/accuracy`` (right axis) against step."""
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    accuracy_keys = sorted({k for h in history for k in h if k.endswith("/accuracy")})
    figure = new_figure(7, 4.4, layout="constrained")
    ax_loss = figure.add_subplot()
    handles = []
    if losses:
        steps, values = zip(*losses, strict=True)
        handles += ax_loss.plot(steps, values, color=LOSS_COLOUR, label="train loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss", color=LOSS_COLOUR)
    ax_loss.tick_params(axis="y", colors=LOSS_COLOUR)
    ax_loss.grid(True, alpha=0.3)
    ax_acc = ax_loss.twinx()
    for index, key in enumerate(accuracy_keys):
        colour = ACCURACY_COLOURS[index % len(ACCURACY_COLOURS)]
        points = [(h["step"], 100 * h[key]) for h in history if key in h]
        steps, values = zip(*points, strict=True)
        ax_acc.plot(steps, values, color=colour, linestyle=":", linewidth=1, alpha=0.6)
        handles.append(
            ax_acc.scatter(steps, values, color=colour, marker="o", zorder=3, label=f"{key} (eval)")
        )
        ax_acc.annotate(
            f"{values[-1]:.1f}",
            (steps[-1], values[-1]),
            xytext=(-4, 6),
            ha="right",
            textcoords="offset points",
            color=colour,
            fontsize=8,
        )
    ax_acc.set_ylabel("verification accuracy (%)")
    ax_acc.margins(y=0.15)
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    return figure
