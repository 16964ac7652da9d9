"""Train a run while photographing its 2-D features: the animation of Wen et al.'s
softmax-versus-center-loss figures (:func:`~faceforge.evaluation.embedding_plots.
write_feature_animation`), for any recipe whose model has a 2-D embedding.

The same faces (a few training identities) are embedded before the first step and every
``every`` steps after it, so the frames show how each loss moves the classes apart: compare
a recipe with ``loss.center_weight=0`` against one with center loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.config import Config
from faceforge.core.embedder import Embedder
from faceforge.data.images import fit_image
from faceforge.errors import ConfigError
from faceforge.evaluation.embedding_plots import choose_images
from faceforge.train.build import TrainingRun
from faceforge.train.engine import Counts, train_one_epoch
from faceforge.train.main import setup
from faceforge.train.runs import release


@dataclass
class FeatureMovie:
    """``(step, features (N, 2))`` snapshots of the same faces; ``labels`` index ``names``."""

    snapshots: list[tuple[int, np.ndarray]]
    labels: np.ndarray
    names: list[str]


def _probe_faces(
    run: TrainingRun, identities: int, per_identity: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Un-augmented training images of a few identities at the model's input size, their
    labels (0..k-1) and the classes' names."""
    reader = run.dataset.reader
    picks = choose_images(reader.labels, identities, per_identity, seed=run.cfg.train.seed)
    size = run.preprocess.input_size
    faces = [fit_image(reader.load(int(i)), size, "center-crop", str(i)) for p in picks for i in p]
    labels = np.repeat(np.arange(len(picks)), [len(p) for p in picks])
    names = [f"class {int(reader.labels[p[0]])}" for p in picks]
    return np.stack(faces), labels, names


def record_feature_movie(
    cfg: Config,
    *,
    every: int,
    identities: int = 10,
    per_identity: int = 20,
    log: Callable[[str], None] = print,
) -> FeatureMovie:
    """Train ``cfg`` (writing nothing: ``train.output_dir`` is only checked) and snapshot the
    2-D features of the probe faces every ``every`` steps."""
    if cfg.model.embedding_size != 2:
        raise ConfigError(
            f"the feature animation plots the embedding itself: set model.embedding_size=2 "
            f"(got {cfg.model.embedding_size})"
        )
    if every < 1:
        raise ConfigError(f"--every must be >= 1 step, got {every}")
    run, state = setup(cfg, log=log, overwrite=True)
    faces, labels, names = _probe_faces(run, identities, per_identity)

    def features() -> np.ndarray:
        embedder = Embedder.from_backbone(  # unfolded: too short-lived to pay for tracing
            run.backbone, run.preprocess, device=run.device, precision="fp32", fold_bn=False
        )
        return embedder.embed_raw(faces)

    snapshots = [(0, features())]
    counts = Counts()
    run.model.train()
    try:
        while state.step < run.total_steps:
            for _ in train_one_epoch(run, state, state.step // run.steps_per_epoch, counts):
                if state.step % every == 0 or state.step == run.total_steps:
                    snapshots.append((state.step, features()))
    finally:
        release(Path(run.cfg.train.output_dir))  # the claim setup made: nothing was written
    return FeatureMovie(snapshots, labels, names)
