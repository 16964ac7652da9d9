"""Pictures of embeddings: a 2-D map of identities, and an animation of 2-D features over
training (the figures of Wen et al. 2016, "A Discriminative Feature Learning Approach for
Deep Face Recognition", https://ydwen.github.io/papers/WenECCV16.pdf, where softmax spreads
classes into radial spokes and center loss pulls each into a tight cluster).

Projections (:data:`PROJECTIONS`): ``pca`` (numpy, on the L2-normalised embeddings) and
``tsne`` (scikit-learn's, when installed). Figures are drawn on matplotlib's Agg canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.core.vectors import l2_normalize
from faceforge.errors import ConfigError, DataError
from faceforge.evaluation.report_figures import literal_text, new_figure, save_figure
from faceforge.registry import Registry


def pca_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates on the two principal axes of the L2-normalised embeddings, each
    axis signed so that its largest coordinate is positive (a stable picture)."""
    centred = l2_normalize(np.asarray(embeddings, np.float64))
    centred = centred - centred.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    points = centred @ axes[:2].T
    if points.shape[1] < 2:
        points = np.hstack([points, np.zeros((len(points), 2 - points.shape[1]))])
    signs = np.sign(points[np.abs(points).argmax(axis=0), [0, 1]])
    return points * np.where(signs == 0, 1, signs)


def tsne_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE map (scikit-learn, cosine distances) of the embeddings."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ConfigError(
            "the t-SNE projection needs scikit-learn (pip install scikit-learn); "
            "or use the pca projection"
        ) from None
    embeddings = np.asarray(embeddings, np.float64)
    perplexity = float(min(30, max(2, (len(embeddings) - 1) // 3)))
    tsne = TSNE(2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed)
    return tsne.fit_transform(embeddings)


#: projection name -> function of (embeddings (N, D), seed) giving (N, 2) points
PROJECTIONS: Registry[np.ndarray] = Registry.of("projection", {"pca": pca_2d, "tsne": tsne_2d})


def project_2d(embeddings: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """The (N, 2) map of ``embeddings`` by the :data:`PROJECTIONS` entry ``method``."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or len(embeddings) < 3:
        raise DataError(f"need at least 3 embeddings (N, D) to project, got {embeddings.shape}")
    return PROJECTIONS.get(method, field="--method")(embeddings, seed)


def choose_images(
    labels: np.ndarray, identities: int, per_identity: int, seed: int = 0
) -> list[np.ndarray]:
    """Dataset indices of up to ``per_identity`` images of each of ``identities`` classes
    drawn at random among those with 2+ images (fewer classes when there are not as many)."""
    if identities < 1 or per_identity < 1:
        raise DataError(
            f"--identities and --per-identity must be >= 1, got {identities}, {per_identity}"
        )
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= 2]
    if len(eligible) == 0:
        raise DataError("no identity has two or more images to show together")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, min(identities, len(eligible)), replace=False))
    picks = []
    for label in chosen:
        members = np.flatnonzero(labels == label)
        picks.append(np.sort(rng.choice(members, min(per_identity, len(members)), replace=False)))
    return picks


def _colours(count: int) -> Any:
    """``count`` distinct colours: the qualitative palettes up to 20, then evenly spaced hues
    (tab20 resampled past its 20 colours repeats them)."""
    from matplotlib import colormaps

    if count > 20:
        return colormaps["hsv"].resampled(count + 1)  # hsv wraps: one more keeps ends apart
    return colormaps["tab10" if count <= 10 else "tab20"].resampled(max(count, 1))


def _scatter(axes: Any, points: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> None:
    colours = _colours(len(names))
    for k, name in enumerate(names):
        mine = labels == k
        axes.scatter(points[mine, 0], points[mine, 1], s=14, color=colours(k), label=name)


def scatter_figure(
    points: np.ndarray, labels: np.ndarray, names: Sequence[str], title: str, axis: str = ""
) -> Any:
    """A scatter plot of ``points`` (N, 2) coloured by ``labels`` (0..len(names)-1); the
    axes are called ``axis 1`` and ``axis 2``."""
    figure = new_figure(7.5, 6, layout="constrained")
    axes = figure.add_subplot()
    _scatter(axes, points, np.asarray(labels), names)
    axes.set_title(title)
    axes.set_xlabel(f"{axis} 1".strip())
    axes.set_ylabel(f"{axis} 2".strip())
    axes.set_aspect("equal", adjustable="datalim")
    axes.grid(True, alpha=0.3)
    if len(names) <= 20:
        figure.legend(loc="outside right upper", fontsize=8, markerscale=1.5)
    return figure


def plot_embeddings(
    path: str | Path,
    embeddings: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    method: str = "pca",
    title: str = "",
    seed: int = 0,
) -> Path:
    """Project ``embeddings`` to 2-D by ``method`` and save the scatter plot (PNG)."""
    points = project_2d(embeddings, method, seed)
    heading = title or f"{len(names)} identities, {len(points)} faces ({method})"
    axis = {"pca": "principal axis", "tsne": "t-SNE axis"}.get(method, method)
    save_figure(scatter_figure(points, labels, names, heading, axis), path)
    return Path(path)


def write_feature_animation(
    path: str | Path,
    snapshots: Sequence[tuple[int, np.ndarray]],
    labels: np.ndarray,
    names: Sequence[str],
    fps: float = 4.0,
) -> Path:
    """A GIF of 2-D features over training: one frame per ``(step, features (N, 2))``, on
    fixed axes that hold every frame, so movement between frames is real movement."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    if not snapshots or any(np.shape(f)[1:] != (2,) for _, f in snapshots):
        raise DataError("the animation needs snapshots of 2-D features (N, 2)")
    labels = np.asarray(labels)
    every = np.concatenate([features for _, features in snapshots])
    low, high = every.min(axis=0), every.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-6)
    figure = new_figure(6, 6, layout="constrained")
    axes = figure.add_subplot()

    def draw(frame: int) -> list[Any]:
        step, features = snapshots[frame]
        axes.clear()
        _scatter(axes, np.asarray(features), labels, names)
        axes.set_xlim(low[0] - pad[0], high[0] + pad[0])
        axes.set_ylim(low[1] - pad[1], high[1] + pad[1])
        axes.set_title(f"2-D features at step {step}")
        axes.set_xlabel("feature 1")
        axes.set_ylabel("feature 2")
        if len(names) <= 10:
            axes.legend(loc="upper left", fontsize=7)
        axes.grid(True, alpha=0.3)
        literal_text(figure)
        return list(axes.collections)

    animation = FuncAnimation(figure, draw, frames=len(snapshots), blit=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    animation.save(str(path), writer=PillowWriter(fps=fps))
    return path
