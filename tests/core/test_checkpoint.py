"""Checkpoints: atomic writes, safe loading, and rebuilding the backbone alone."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from faceforge.config import config_to_dict, load_config
from faceforge.core.checkpoint import load_backbone, load_checkpoint, save_checkpoint
from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError
from faceforge.models import build_backbone


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "ck" / "a.pt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 2
    assert os.listdir(path.parent) == ["a.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"step": 2, "bad": Unsaveable()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.pt"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_refuses_code_and_foreign_files(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"kind": "faceforge-checkpoint", "x": _Exploit()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    foreign = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a faceforge checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "t.pt"
    save_checkpoint(truncated, {"step": 1})
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot load"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_alone_rebuilds_the_backbone(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.embedding_size=128"])
    torch.manual_seed(0)
    model = build_backbone("mobilefacenet", embedding_size=128).eval()
    pre = Preprocess(mean=(0.4, 0.5, 0.6))
    save_checkpoint(
        tmp_path / "m.pt",
        {
            "backbone": model.state_dict(),
            "config": config_to_dict(cfg),
            "preprocess": pre.to_dict(),
            "metrics": {"synthetic": {"accuracy": 0.9}},
        },
    )
    loaded = load_backbone(tmp_path / "m.pt")
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded.backbone(x), model(x))
    assert not loaded.backbone.training
    assert loaded.config == cfg and loaded.preprocess == pre
    assert loaded.metrics["synthetic"]["accuracy"] == 0.9


def test_wrong_weights_are_reported(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.embedding_size=128"])
    model = build_backbone("mobilefacenet", embedding_size=512)
    save_checkpoint(
        tmp_path / "m.pt", {"backbone": model.state_dict(), "config": config_to_dict(cfg)}
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_backbone(tmp_path / "m.pt")
