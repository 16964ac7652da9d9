"""The 2-D feature animation of a training run: snapshots of the same faces every K steps,
and the ``faceforge visualize`` commands that write the GIF and the embedding map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceforge.cli import main
from faceforge.config import load_config
from faceforge.data.synthetic import SyntheticFaces
from faceforge.errors import ConfigError
from faceforge.train.feature_movie import record_feature_movie

TINY = [
    "data.synthetic.num_identities=3",
    "data.synthetic.images_per_identity=4",
    "head.scale=16",
    "head.margin=0.2",
    "train.batch_size=4",
    "train.max_steps=2",
    "train.amp=fp32",
    "train.progress=false",
    "train.tensorboard=false",
    "optim.warmup_steps=0",
]


def test_snapshots_of_the_same_faces_every_k_steps(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "model.embedding_size=2", f"train.output_dir={tmp_path}"])
    movie = record_feature_movie(cfg, every=1, identities=3, per_identity=3, log=lambda _: None)
    assert [step for step, _ in movie.snapshots] == [0, 1, 2]
    assert all(features.shape == (9, 2) for _, features in movie.snapshots)
    assert movie.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert movie.names == ["class 0", "class 1", "class 2"]
    first, last = movie.snapshots[0][1], movie.snapshots[-1][1]
    assert np.isfinite(last).all() and not np.allclose(first, last)  # training moved them
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # nothing written


def test_only_a_two_dimensional_embedding_is_animated(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "model.embedding_size=8", f"train.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="set model.embedding_size=2 \\(got 8\\)"):
        record_feature_movie(cfg, every=2)


def test_visualize_training_writes_the_gif(tmp_path: Path, capsys) -> None:
    out = tmp_path / "features.gif"
    argv = ["visualize", "training", "-o", str(out), "--every", "2", "--identities", "2"]
    assert main([*argv, "--per-identity", "2", "--no-progress", *TINY]) == 0
    with Image.open(out) as image:
        assert image.format == "GIF" and image.n_frames == 2  # steps 0 and 2
    assert f"wrote {out}: 2 frames up to step 2" in capsys.readouterr().out


def test_visualize_embeddings_writes_the_map(tmp_path: Path, tiny_checkpoint: Path) -> None:
    faces = SyntheticFaces(3)
    for person in range(4):
        (tmp_path / "set" / f"p{person}").mkdir(parents=True)
        for k in range(3):
            image = faces.render(person, k)
            Image.fromarray(image).save(tmp_path / "set" / f"p{person}" / f"{k}.png")
    out = tmp_path / "map.png"
    argv = ["visualize", "embeddings", str(tmp_path / "set"), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "-o", str(out), "--identities", "3", "--precision", "fp32"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_outputs_are_checked_first(tmp_path: Path, capsys) -> None:
    assert main(["visualize", "training", "-o", str(tmp_path / "x.png"), *TINY]) == 2
    assert "expected a file name ending in .gif" in capsys.readouterr().err
