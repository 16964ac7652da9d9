"""Loss / accuracy curves of a run as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_training_curves(history: list[dict[str, float]], path: str | Path) -> Path:
    """Training loss (left axis) and every ``<set>/accuracy`` (right axis) against step."""
    path = Path(path)
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    accuracy_keys = sorted({k for h in history for k in h if k.endswith("/accuracy")})
    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=110)
    if losses:
        steps, values = zip(*losses, strict=True)
        ax_loss.plot(steps, values, color="tab:blue", label="train loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss", color="tab:blue")
    ax_acc = ax_loss.twinx()
    for key in accuracy_keys:
        points = [(h["step"], 100 * h[key]) for h in history if key in h]
        steps, values = zip(*points, strict=True)
        ax_acc.plot(steps, values, marker="o", label=key)
    ax_acc.set_ylabel("verification accuracy (%)")
    if accuracy_keys:
        ax_acc.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
