"""The training curve figure: one colour per series, evaluation points marked, one legend."""

from __future__ import annotations

import cv2
import numpy as np
from matplotlib.colors import to_rgb

from faceforge.train.curves import (
    ACCURACY_COLOURS,
    LOSS_COLOUR,
    plot_training_curves,
    training_curves_figure,
)

HISTORY = [
    *({"step": float(s), "loss": 10.0 - s / 50, "lr": 0.1} for s in range(0, 201, 20)),
    {"step": 100.0, "a/accuracy": 0.7, "b/accuracy": 0.6},
    {"step": 200.0, "a/accuracy": 0.8, "b/accuracy": 0.75},
]


def test_every_series_has_its_own_colour_and_marked_points() -> None:
    figure = training_curves_figure(HISTORY)
    loss_axes, accuracy_axes = figure.axes
    (loss,) = loss_axes.get_lines()
    assert loss.get_color() == LOSS_COLOUR and len(loss.get_xdata()) == 11
    points = accuracy_axes.collections  # one scatter per set: the evaluations, marked
    colours = [tuple(p.get_facecolor()[0][:3]) for p in points]
    assert colours == [to_rgb(c) for c in ACCURACY_COLOURS[:2]]
    assert to_rgb(LOSS_COLOUR) not in colours
    assert [p.get_offsets().tolist() for p in points] == [
        [[100, 70], [200, 80]],
        [[100, 60], [200, 75]],
    ]
    guides = accuracy_axes.get_lines()  # joined only by faint dotted guides
    assert [g.get_linestyle() for g in guides] == [":", ":"]
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "train loss",
        "a/accuracy (eval)",
        "b/accuracy (eval)",
    ]


def test_the_png_is_written_and_shows_each_colour(tmp_path) -> None:
    path = plot_training_curves(HISTORY, tmp_path / "sub" / "curves.png")
    image = cv2.imread(str(path))[:, :, ::-1].astype(int)
    for colour in (LOSS_COLOUR, *ACCURACY_COLOURS[:2]):
        rgb = np.array(to_rgb(colour)) * 255
        assert (np.abs(image - rgb).max(axis=2) < 8).sum() > 20, colour


def test_a_run_without_evaluations_still_plots() -> None:
    figure = training_curves_figure(HISTORY[:3])
    assert len(figure.axes[0].get_lines()) == 1 and not figure.axes[1].collections
