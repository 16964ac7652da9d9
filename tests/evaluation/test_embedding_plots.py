"""2-D maps of embeddings (PCA against an independent eigen-decomposition, t-SNE when
scikit-learn is there) and the training animation's GIF."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from faceforge.errors import ConfigError, DataError
from faceforge.evaluation.embedding_plots import (
    choose_images,
    pca_2d,
    plot_embeddings,
    project_2d,
    write_feature_animation,
)

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 32))
    labels = np.repeat(np.arange(4), 10)
    return centres[labels] + 0.1 * rng.normal(size=(40, 32)), labels


def test_pca_keeps_the_two_largest_variances() -> None:
    embeddings, _ = clusters()
    points = pca_2d(embeddings)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(np.cov(unit.T, bias=True))[::-1]
    np.testing.assert_allclose(points.var(axis=0), eigenvalues[:2], rtol=1e-9)
    np.testing.assert_allclose(points.mean(axis=0), 0, atol=1e-12)
    assert abs(points[:, 0] @ points[:, 1]) < 1e-9  # uncorrelated axes
    assert (points[np.abs(points).argmax(axis=0), [0, 1]] > 0).all()  # the sign convention
    np.testing.assert_allclose(pca_2d(-embeddings), pca_2d(-embeddings))


def test_projection_choices_and_sizes() -> None:
    embeddings, _ = clusters()
    with pytest.raises(ConfigError, match="unknown projection --method='umap'"):
        project_2d(embeddings, "umap")
    with pytest.raises(DataError, match="at least 3 embeddings"):
        project_2d(embeddings[:2])


@pytest.mark.skipif(HAS_SKLEARN, reason="scikit-learn is installed: t-SNE runs")
def test_tsne_without_scikit_learn_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match="pip install scikit-learn"):
        project_2d(clusters()[0], "tsne")


@pytest.mark.skipif(not HAS_SKLEARN, reason="t-SNE needs scikit-learn, not installed")
def test_tsne_separates_clusters() -> None:
    embeddings, labels = clusters()
    points = project_2d(embeddings, "tsne")
    centres = np.stack([points[labels == k].mean(0) for k in range(4)])
    spread = max(np.abs(points[labels == k] - centres[k]).max() for k in range(4))
    assert np.linalg.norm(centres[0] - centres[1]) > spread


def test_choose_images_is_seeded_and_skips_single_images() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    picks = choose_images(labels, identities=3, per_identity=2, seed=1)
    assert len(picks) == 3 and all(len(p) == 2 for p in picks)
    assert all(len(set(labels[p])) == 1 and labels[p[0]] != 1 for p in picks)
    assert [p.tolist() for p in picks] == [p.tolist() for p in choose_images(labels, 3, 2, 1)]
    with pytest.raises(DataError, match="no identity has two or more images"):
        choose_images(np.arange(5), 2, 2)


def test_plot_and_animation_files_open(tmp_path) -> None:
    embeddings, labels = clusters()
    names = ["id0", "cost_$5_and_$10", "set_$x^$", "id3"]  # folder names: never formulas
    png = plot_embeddings(tmp_path / "map.png", embeddings, labels, names)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 300
    snapshots = [(step, pca_2d(embeddings) * (1 + step)) for step in (0, 5, 10)]
    gif = write_feature_animation(tmp_path / "movie.gif", snapshots, labels, names)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 3
        frames = []
        for k in range(3):
            image.seek(k)
            frames.append(np.asarray(image.convert("RGB")))
    assert not np.array_equal(frames[0], frames[2])
    with pytest.raises(DataError, match="2-D features"):
        write_feature_animation(tmp_path / "bad.gif", [(0, embeddings)], labels, names)


@pytest.mark.parametrize("count", [4, 12, 30])
def test_every_identity_gets_its_own_colour(count: int) -> None:
    """tab20 resampled to 30 repeated its 20 colours: ten pairs of clusters looked alike."""
    from faceforge.evaluation.embedding_plots import _colours

    colours = _colours(count)
    assert len({colours(k) for k in range(count)}) == count
