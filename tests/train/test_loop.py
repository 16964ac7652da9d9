"""The training loop on tiny synthetic data: steps, exact resume, NaN guard, evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from faceforge.config import Config, load_config
from faceforge.core.checkpoint import load_backbone, load_checkpoint
from faceforge.data.synthetic import SyntheticFaces
from faceforge.errors import CheckpointError, TrainingError
from faceforge.train.loop import Trainer


def tiny_config(tmp_path: Path, *extra: str) -> Config:
    return load_config(
        None,
        [
            "data.synthetic.num_identities=4",
            "data.synthetic.images_per_identity=4",
            "model.embedding_size=64",
            "head.scale=16",
            "head.margin=0.2",
            "train.batch_size=4",
            "train.max_steps=4",
            "train.log_every=1",
            "train.progress=false",
            "train.tensorboard=false",
            "augment.hflip=0.5",
            "augment.cutout_prob=0.5",
            f"train.output_dir={tmp_path}",
            *extra,
        ],
    )


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.backbone.state_dict().items()}


def test_two_steps_change_the_weights_and_write_checkpoints(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path, "train.max_steps=2"), log=lambda _: None)
    before = weights(trainer)
    summary = trainer.fit()
    assert summary.steps == 2
    assert torch.isfinite(torch.tensor(summary.final_loss))
    changed = [k for k, v in weights(trainer).items() if not torch.equal(v, before[k])]
    assert any("weight" in k for k in changed)
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["step"] == 2 and payload["config"]["train"]["max_steps"] == 2
    assert (tmp_path / "config.yaml").is_file()
    assert load_backbone(tmp_path / "last.pt").config.model.embedding_size == 64


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = Trainer(tiny_config(tmp_path / "a"), log=lambda _: None)
    straight.fit()
    # the same 4-step run interrupted after 2 steps (mid-epoch), then resumed
    interrupted = Trainer(tiny_config(tmp_path / "b"), log=lambda _: None)
    batches = iter(interrupted._loader(epoch=0, start_sample=0))
    interrupted.train_step(next(batches))
    interrupted.train_step(next(batches))
    interrupted.save("last.pt")
    continued = Trainer(tiny_config(tmp_path / "b"), log=lambda _: None)
    continued.resume(tmp_path / "b" / "last.pt")
    assert continued.step == 2
    continued.fit()
    for module in ("backbone", "head", "loss"):
        expected = getattr(straight, module).state_dict()
        for key, value in getattr(continued, module).state_dict().items():
            assert torch.equal(value, expected[key]), f"{module}.{key}"
    assert continued.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_resume_refuses_another_architecture(tmp_path: Path) -> None:
    Trainer(tiny_config(tmp_path, "train.max_steps=1"), log=lambda _: None).fit()
    other = Trainer(tiny_config(tmp_path / "x", "model.embedding_size=32"), log=lambda _: None)
    with pytest.raises(CheckpointError, match="model.embedding_size=64"):
        other.resume(tmp_path / "last.pt")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path, "train.max_steps=1"), log=lambda _: None)
    trainer.fit()
    good = (tmp_path / "last.pt").read_bytes()
    broken = Trainer(tiny_config(tmp_path, "train.max_steps=3"), log=lambda _: None)
    broken.resume(tmp_path / "last.pt")
    with torch.no_grad():
        next(broken.head.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 1; the last good checkpoint"):
        broken.fit()
    assert (tmp_path / "last.pt").read_bytes() == good


def test_evaluation_and_best_checkpoint(tmp_path: Path) -> None:
    vset = SyntheticFaces(9).verification_set(num_identities=10, num_pairs=20)
    cfg = tiny_config(tmp_path, "train.max_steps=2", "eval.every=1", "eval.batch_size=8")
    trainer = Trainer(cfg, [vset], log=lambda _: None)
    summary = trainer.fit()
    assert set(summary.results) == {"synthetic"}
    accuracies = [h["synthetic/accuracy"] for h in summary.history if "synthetic/accuracy" in h]
    assert len(accuracies) == 2  # after step 1 and at the end
    assert summary.best_accuracy == max(accuracies)
    stored = load_checkpoint(tmp_path / "best.pt")["metrics"]["synthetic"]
    assert 0.0 <= stored["accuracy"] <= 1.0 and "best_threshold" in stored
