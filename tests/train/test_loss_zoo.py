"""Every new head trains from the quickstart recipe, its state round-trips through a
checkpoint and a resumed run; triplet fine-tuning starts from a trained backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from faceforge.core.checkpoint import Checkpoint
from faceforge.errors import ConfigError
from faceforge.train.main import fit, setup
from faceforge.train.recipe import load_recipe

NEW_HEADS = [
    "adaface",
    "curricularface",
    "magface",
    "subcenter_arcface",
    "elasticface",
    "elasticface_cos",
]
#: heads whose buffers change while training (EMAs, counters)
STATEFUL = ["adaface", "curricularface", "subcenter_arcface"]


def tiny(tmp_path: Path, *extra: str):
    """The quickstart recipe shrunk to a few CPU seconds."""
    return load_recipe(
        "quickstart",
        [
            "data.synthetic.num_identities=4",
            "data.synthetic.images_per_identity=4",
            "model.embedding_size=32",
            "train.batch_size=8",
            "train.max_steps=2",
            "train.amp=fp32",
            "train.channels_last=false",
            "train.progress=false",
            "train.tensorboard=false",
            "train.log_every=1",
            f"train.output_dir={tmp_path}",
            *extra,
        ],
    )


def quiet(cfg, resume: Path | None = None):
    return setup(cfg, resume, log=lambda _: None)


@pytest.mark.parametrize("head", NEW_HEADS)
def test_quickstart_trains_with_each_new_head(tmp_path: Path, head: str) -> None:
    summary = fit(*quiet(tiny(tmp_path, f"head.type={head}", "head.subcenter_drop_step=1")))
    assert summary.steps == 2 and torch.isfinite(torch.tensor(summary.final_loss))


def test_magface_adds_its_regularizer_to_the_loss(tmp_path: Path) -> None:
    run, _ = quiet(tiny(tmp_path, "head.type=magface"))
    embeddings = torch.randn(4, 32) * 5
    total, parts = run.model.criterion(embeddings, torch.tensor([0, 1, 2, 3]))
    assert set(parts) == {"ce", "regularizer"}
    torch.testing.assert_close(total.detach(), parts["ce"] + parts["regularizer"])


@pytest.mark.parametrize("head", ["adaface", "curricularface"])
def test_sharded_heads_train_with_partial_fc(tmp_path: Path, head: str) -> None:
    cfg = tiny(tmp_path, f"head.type={head}", "head.partial_fc=true", "head.sample_rate=0.5")
    assert fit(*quiet(cfg)).steps == 2


@pytest.mark.parametrize("head", ["magface", "subcenter_arcface", "elasticface", "none"])
def test_heads_that_cannot_shard_are_refused_at_load(tmp_path: Path, head: str) -> None:
    with pytest.raises(ConfigError, match="partial_fc"):
        tiny(tmp_path, f"head.type={head}", "head.partial_fc=true")


@pytest.mark.parametrize("head", STATEFUL)
def test_head_state_round_trips_through_checkpoint_and_resume(tmp_path: Path, head: str) -> None:
    run, state = quiet(tiny(tmp_path, f"head.type={head}"))
    fresh = {k: v.clone() for k, v in run.model.head.named_buffers()}
    fit(run, state)
    trained = dict(run.model.head.named_buffers())
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh)
    saved = Checkpoint.load(tmp_path / "last.pt").head
    for key, value in trained.items():
        assert torch.equal(saved[key], value), key
    resumed, _ = quiet(tiny(tmp_path / "resumed", f"head.type={head}"), tmp_path / "last.pt")
    for key, value in resumed.model.head.named_buffers():
        assert torch.equal(value, trained[key]), key


def test_triplet_fine_tune_starts_from_a_trained_backbone(tmp_path: Path) -> None:
    fit(*quiet(tiny(tmp_path / "base")))
    base = Checkpoint.load(tmp_path / "base" / "last.pt").backbone
    cfg = tiny(
        tmp_path / "tune",
        f"model.init_from={tmp_path / 'base' / 'last.pt'}",
        "head.type=none",
        "loss.triplet_weight=1.0",
        "loss.triplet_mining=semi_hard",
        "data.sampler=pk",
        "data.pk_images=4",
        "optim.lr=0.001",
    )
    run, state = quiet(cfg)
    for key, value in run.backbone.state_dict().items():
        assert torch.equal(value, base[key]), key
    batch = next(iter(run.loader(epoch=0)))
    assert all((batch.labels == label).sum() == 4 for label in batch.labels.unique())
    summary = fit(run, state)
    assert summary.steps == 2 and torch.isfinite(torch.tensor(summary.final_loss))


def test_triplet_alongside_the_margin_head_reports_both_parts(tmp_path: Path) -> None:
    run, _ = quiet(tiny(tmp_path, "loss.triplet_weight=0.5", "data.sampler=pk"))
    _, parts = run.model.criterion(torch.randn(8, 32), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert set(parts) == {"ce", "triplet"}


def test_fine_tune_refuses_another_architecture(tmp_path: Path) -> None:
    fit(*quiet(tiny(tmp_path / "base")))
    cfg = tiny(
        tmp_path / "tune",
        f"model.init_from={tmp_path / 'base' / 'last.pt'}",
        "model.embedding_size=16",
    )
    with pytest.raises(ConfigError, match="embedding_size"):
        quiet(cfg)


def test_head_none_needs_an_embedding_loss(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="triplet_weight"):
        quiet(tiny(tmp_path, "head.type=none"))


def test_the_subcenter_drop_step_counts_training_steps_not_accumulated_batches(tmp_path):
    """The head counts forward passes: with train.accumulate=2, step 3 is its 6th."""
    drops = ("head.type=subcenter_arcface", "head.subcenter_drop_step=3")
    run, _ = quiet(tiny(tmp_path, *drops, "train.accumulate=2", "train.batch_size=4"))
    assert run.model.head.drop_step == 6
